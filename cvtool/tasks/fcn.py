"""train-fcn: FCN semantic segmentation of Pascal VOC2012 (an ImageNet ResNet-18 underneath).

Defaults are the book's settings with two fixes: void pixels (255) are ignored by the loss
and every metric instead of counting as background, and validation scores whole images
(padded with void) instead of random crops, so the score is the same every time. The book
sums its loss over the batch; cvtool averages it over the non-void pixels, so the book's
lr 1e-3 becomes 1e-3 x 32 and its weight decay 1e-3 becomes 1e-3 / 32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cvtool import config as c
from cvtool.data import hub, voc
from cvtool.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from cvtool.data.voc import VOCSegmentation
from cvtool.engine.task import StepOutput, Task
from cvtool.models.fcn import FCN
from cvtool.tasks import segment
from cvtool.tasks.registry import TaskSpec, register

COLUMNS = ("train_loss", "train_pixel_acc", "val_loss", "val_pixel_acc", "val_mean_class_acc", "val_miou")

log = logging.getLogger(__name__)


@dataclass
class Data(c.DataConfig):
    """VOCdevkit/VOC2012: ImageSets/Segmentation/{train,val}.txt, JPEGImages, SegmentationClass."""

    root: str = c.opt("data/VOCdevkit", "VOCdevkit folder, or the VOC2012 folder inside it")
    batch_size: int = c.opt(32, "images per training and validation step", ge=1)
    num_workers: int = c.opt(4, "DataLoader worker processes (0 = load in the main process)", ge=0)
    crop_size: list[int] = c.opt([320, 480], "training crop [height, width] in pixels")
    small_images: Literal["pad", "drop"] = c.opt(
        "pad", "images smaller than the crop: pad with void, or drop them (the book: 1114 train / 1078 val remain)")
    val_crop: bool = c.opt(
        False, "score random crops like the book (varies run to run) instead of whole images padded with void")
    flip: bool = c.opt(False, "random horizontal flips for training (not in the book)")
    scale_range: list[float] = c.opt(
        [1.0, 1.0], "random zoom [min, max] before the training crop; [1, 1] = off (the book)")


@dataclass
class Model:
    """ResNet-18 features, a 1x1 class conv and a bilinear-initialised 32x transposed conv."""

    weights: str | None = c.opt("IMAGENET1K_V1", "backbone weights: torchvision name, a .pth state-dict file, or none")
    num_classes: int = c.opt(21, "classes including background (VOC: 21)", ge=2)
    width: int = c.opt(64, "channels of the first ResNet stage: 64 = ResNet-18 (pretrained weights need it); "
                           "smaller for quick CPU demos", ge=4)


@dataclass
class Optim(c.OptimConfig):
    """The book's SGD, rescaled for a loss averaged over the batch instead of summed."""

    lr: float = c.opt(0.032, "learning rate at reference_batch for the batch-mean loss: the book's 1e-3 on a "
                             "loss summed over 32 images is 1e-3 x 32", gt=0)
    reference_batch: int = c.opt(32, "the batch optim.lr is meant for: the book's 32", ge=1)
    weight_decay: float = c.opt(3.125e-5, "L2 weight decay: the book's 1e-3 divided by its batch of 32", ge=0)


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    optim: Optim = field(default_factory=Optim)
    sched: c.SchedConfig = field(default_factory=c.SchedConfig)
    train: c.TrainConfig = field(default_factory=c.TrainConfig)
    log: c.LogConfig = field(default_factory=c.LogConfig)


def class_names(num_classes: int) -> list[str]:
    return [voc.CLASSES[i] if i < len(voc.CLASSES) else f"class{i}" for i in range(num_classes)]


def labels(classes: list[str]) -> segment.Labels:
    """VOC's labelling: its palette (void 255 is cream) for the given class names."""
    return segment.Labels(names=list(classes), palette=voc.PALETTE, void=voc.VOID, background=0,
                          void_colour="cream")


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) on any device to ImageNet-normalized floats."""
    return normalize(images, IMAGENET_MEAN, IMAGENET_STD)


def forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model(to_input(images))


def train_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
    """Cross-entropy averaged over the batch's non-void pixels; void changes nothing."""
    return segment.train_step(model, batch, forward, voc.VOID)


def make_evaluate(classes: list[str]):
    """Scores from one confusion matrix over all validation pixels (void excluded)."""
    return segment.make_evaluate(labels(classes), forward)


def first_samples(data: VOCSegmentation) -> segment.Samples:
    """A split's first whole images and labels (no crop), for predictions.png."""

    def samples(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [tuple(t.as_subclass(torch.Tensor) for t in data.load(i)) for i in range(min(n, len(data)))]

    return samples


def build_model(cfg: Config) -> FCN:
    return FCN(cfg.model.num_classes, cfg.model.width)


def load_pretrained(model: FCN, weights: str | None) -> None:
    from cvtool.models.weights import is_none, pretrained

    if not is_none(weights):
        model.load_backbone(pretrained("resnet18", weights))


def crop_of(cfg: Config) -> tuple[int, int]:
    crop = cfg.data.crop_size
    if len(crop) != 2 or min(crop) < 1:
        raise c.ConfigError(f"data.crop_size must be [height, width] in pixels, got {crop}")
    return crop[0], crop[1]


def build(cfg: Config, rank_zero: bool = True) -> Task:
    from cvtool.models.weights import is_none

    d, m = cfg.data, cfg.model
    crop = crop_of(cfg)
    zoom = d.scale_range
    if len(zoom) != 2 or not 0 < zoom[0] <= zoom[1]:
        raise c.ConfigError(f"data.scale_range must be [min, max] with 0 < min <= max, got {zoom}")
    if m.width != 64 and not is_none(m.weights):
        raise c.ConfigError(f"model.width {m.width} does not fit pretrained ResNet-18 weights; "
                            f"use width 64 or model.weights: none")
    root = hub.ensure(Path(d.root), "voc2012", d.download, voc.LAYOUT)
    drop = crop if d.small_images == "drop" else None
    skip = d.on_bad_image == "skip"
    train = VOCSegmentation(root, "train", voc.train_transform(crop, flip=d.flip, scale_range=tuple(zoom)),
                            num_classes=m.num_classes, min_size=drop, skip_bad=skip)
    val = VOCSegmentation(root, "val", voc.random_crop(crop) if d.val_crop else None,
                          num_classes=m.num_classes, min_size=drop if d.val_crop else None, skip_bad=skip)
    for split in (train, val):
        if split.dropped and rank_zero:
            log.warning("%s: dropped %d of %d images smaller than the %dx%d crop (data.small_images: drop)",
                        split.split, split.dropped, split.dropped + len(split), *crop)
    model = build_model(cfg)
    load_pretrained(model, m.weights)
    classes = class_names(m.num_classes)
    finish = segment.make_finish(forward, labels(classes), first_samples(val))
    pictures = segment.make_pictures(forward, labels(classes), first_samples(val))
    return Task(
        name=SPEC.command, config=cfg, model=model, train_data=train, val_data=val,
        train_step=train_step, evaluate=make_evaluate(classes), columns=COLUMNS,
        best_metric="val_miou", best_mode="max", collate_fn=voc.pad_collate, finish=finish,
        pictures=pictures,
        metadata={"classes": classes, "dropped_small_images": {"train": train.dropped, "val": val.dropped},
                  "skipped_images": train.skipped + val.skipped},
    )


def predict(model: nn.Module, cfg: Config, metadata: dict[str, Any], paths: list[Path],
            device: torch.device, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Write ``<stem>_mask.png`` (VOC palette) and ``<stem>_overlay.png`` for each image into options["out"]."""
    classes = metadata.get("classes") or class_names(cfg.model.num_classes)
    return segment.predict(model, paths, device, options, labels(classes), forward, SPEC.command)


SPEC = register(TaskSpec(
    command="train-fcn",
    summary="Train an FCN for semantic segmentation on Pascal VOC2012.",
    config=Config, build=build, build_model=build_model, predict=predict,
    synth={"voc": voc.synthesize},
    # `cvtool eval`: the checkpoint holds every weight, so nothing pretrained is loaded.
    eval_settings={"model.weights": None},
    family="segment",
))
