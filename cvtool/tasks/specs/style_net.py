"""train-style: its config and spec, without torch; its code is cvtool.tasks.style_net."""

from __future__ import annotations

from dataclasses import dataclass, field

from cvtool import config as c
from cvtool.tasks.registry import TaskSpec, register

@dataclass
class Data(c.DataConfig):
    """Content photos: any images anywhere under root (pytorch/examples: COCO 2014 train)."""

    root: str = c.opt("data/coco/train2014", "folder of content photos, read recursively")
    download: bool = c.opt(False, "no archive is known for content photos: point root at a folder of photos")
    batch_size: int = c.opt(4, "photos per training step", ge=1)
    num_workers: int = c.opt(2, "DataLoader worker processes (0 = load in the main process)", ge=0)
    image_size: int = c.opt(256, "training crops (shorter side resized, then a square crop) and validation "
                                 "centre crops, pixels", ge=16)
    val_count: int = c.opt(8, "photos held out (spread evenly over the sorted list), scored and drawn each epoch",
                           ge=1)


@dataclass
class Style:
    """The one style this network learns."""

    image: str = c.opt("", "the style image file (required)")
    size: int | None = c.opt(None, "the style image's longer side in pixels; null = as stored (pytorch/examples)",
                             ge=16)


@dataclass
class Model:
    """The transformer network and the loss network."""

    width: float = c.opt(1.0, "channel multiplier of the transformer (1 = 32/64/128 channels, as the paper)", gt=0)
    residual_blocks: int = c.opt(5, "residual blocks at the lowest resolution", ge=0)
    vgg_weights: str | None = c.opt("IMAGENET1K_V1", "loss network VGG-19: torchvision weight name, a .pth file, "
                                                     "or none (random features: for tests, no real style)")


@dataclass
class Loss:
    """Weights and VGG-19 layers of the perceptual loss (a conv index stands for its ReLU)."""

    content_weight: float = c.opt(1e5, "weight of the content loss (pytorch/examples: 1e5)", ge=0)
    style_weight: float = c.opt(1e10, "weight of the style loss (pytorch/examples: 1e10)", ge=0)
    tv_weight: float = c.opt(0.0, "weight of the total-variation loss (the paper: 1e-6..1e-4 on its scale; "
                                  "pytorch/examples: none)", ge=0)
    content_layers: list[int] = c.opt([7], "VGG-19 layers for content: 7 = relu2_2")
    style_layers: list[int] = c.opt([2, 7, 14, 23], "VGG-19 layers for style: relu1_2, relu2_2, relu3_3, relu4_3")


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    style: Style = field(default_factory=Style)
    model: Model = field(default_factory=Model)
    loss: Loss = field(default_factory=Loss)
    optim: c.OptimConfig = field(default_factory=lambda: c.OptimConfig(name="adam", lr=1e-3, reference_batch=4))
    sched: c.SchedConfig = field(default_factory=c.SchedConfig)
    train: c.TrainConfig = field(default_factory=lambda: c.TrainConfig(epochs=2))
    log: c.LogConfig = field(default_factory=c.LogConfig)


CODE = "cvtool.tasks.style_net"
SPEC = register(TaskSpec(
    command="train-style",
    summary="Train a feed-forward style network for one style image on a folder of photos.",
    config=Config, build=f"{CODE}:build", build_model=f"{CODE}:build_model", predict=f"{CODE}:predict",
    predict_options=("preserve_color", "smooth"), synth={"photos": "cvtool.data.photos_synth:synthesize"},
    family="style",
))
