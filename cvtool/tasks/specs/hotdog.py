"""finetune-hotdog: its config and spec, without torch; its code is cvtool.tasks.hotdog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cvtool import config as c
from cvtool.data import stats
from cvtool.tasks.registry import TaskSpec, register
from cvtool.tasks.specs import classify

@dataclass
class Data(c.DataConfig):
    """hotdog/{train,test}/{hotdog,not-hotdog}/*.png; test is the validation split."""

    root: str = c.opt("data/hotdog", "dataset folder holding train/ and test/")
    batch_size: int = c.opt(128, "images per training step", ge=1)
    num_workers: int = c.opt(4, "DataLoader worker processes (0 = load in the main process)", ge=0)
    image_size: int = c.opt(224, "training crop and test centre-crop size in pixels", ge=8)
    resize: int = c.opt(256, "test images are resized to resize x resize before the centre crop", ge=8)
    augment: bool = c.opt(True, "random resized crop + flip for training; false = train on the test view")
    mean: list[float] = c.opt(stats.IMAGENET_MEAN, "per-channel normalisation mean")
    std: list[float] = c.opt(stats.IMAGENET_STD, "per-channel normalisation std")


@dataclass
class Model:
    """The backbone and where its starting weights come from."""

    arch: Literal["resnet18", "resnet34"] = c.opt("resnet18", "torchvision backbone")
    weights: str | None = c.opt("IMAGENET1K_V1", "torchvision weight name, a .pth state-dict file, or none")
    num_classes: classify.NumClasses = c.opt("auto", classify.NUM_CLASSES_HELP + " (hotdog: 2 class folders)",
                                             ge=2)


@dataclass
class Finetune:
    """How the pretrained part is trained."""

    head_lr_mult: float = c.opt(10.0, "learning-rate multiplier of the new output layer", gt=0)
    freeze_backbone: bool = c.opt(False, "train only the output layer (frozen BatchNorm stays in eval mode)")


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    finetune: Finetune = field(default_factory=Finetune)
    loss: classify.Loss = field(default_factory=classify.Loss)
    optim: c.OptimConfig = field(default_factory=lambda: c.OptimConfig(lr=5e-5 * 128, reference_batch=128,
                                                                       weight_decay=1e-3 / 128))
    sched: c.SchedConfig = field(default_factory=c.SchedConfig)
    train: c.TrainConfig = field(default_factory=lambda: c.TrainConfig(epochs=5))
    log: c.LogConfig = field(default_factory=c.LogConfig)


CODE = "cvtool.tasks.hotdog"
SPEC = register(TaskSpec(
    command="finetune-hotdog",
    summary="Fine-tune an ImageNet ResNet-18 on the hotdog / not-hotdog folders.",
    config=Config, build=f"{CODE}:build", build_model=f"{CODE}:build_model", predict=f"{CODE}:predict",
    synth={"hotdog": "cvtool.data.hotdog:synthesize"},
    # `cvtool eval`: the checkpoint holds every weight, so nothing pretrained is loaded.
    eval_settings={"model.weights": None},
    family="classify",
))
