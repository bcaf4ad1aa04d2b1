"""train-ssd: its config and spec, without torch; its code is cvtool.tasks.ssd."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cvtool import config as c
from cvtool.models.defaults import RATIOS, SIZES
from cvtool.tasks.registry import TaskSpec, register
from cvtool.tasks.specs import detect

BATCH = 32  # the book's batch size


@dataclass
class Data(detect.DetectionData):
    """A bananas, VOC, COCO or YOLO detection folder (data.format, docs/data.md); val is the validation split."""

    batch_size: int = c.opt(BATCH, "images per training step", ge=1)
    num_workers: int = c.opt(
        0, "DataLoader worker processes: they decode images when data.cache is off, and augment",
        ge=0)
    image_size: int = c.opt(256, "images are resized to image_size x image_size (TinySSD needs >= 64)", ge=64)
    flip: bool = c.opt(False, "augment: random horizontal flips, boxes moved along (off in the book)")


@dataclass
class Model:
    """TinySSD size."""

    num_classes: int | Literal["auto"] = c.opt(
        "auto", "object classes, background not counted; auto = one per class name the data holds", ge=1)
    width: float = c.opt(1.0, "channel multiplier: 1.0 = the book's 16-32-64-128; smaller trains faster", gt=0)
    anchor_sizes: list[list[float]] = c.opt(
        [list(s) for s in SIZES], "anchor sizes (fractions of the image) per feature map, five lists of one "
        "length; the book's start at 0.2, small objects want smaller ones", gt=0)
    anchor_ratios: list[float] = c.opt(list(RATIOS), "anchor width/height ratios (the book's 1, 2, 0.5)", gt=0)


@dataclass
class Loss:
    """The training objective. The defaults are the book's: per image, mean cross-entropy over
    every anchor + mean L1 over every offset (zero off the positives), averaged over the batch."""

    normalize: Literal["anchors", "positives"] = c.opt(
        "anchors", "anchors: the book's means over all anchors; positives: sums over the batch divided by its "
        "positive anchors (SSD's paper), so the box term is not drowned by thousands of background anchors")
    neg_ratio: float = c.opt(0.0, "hard-negative mining: only the N background anchors of highest loss per "
                             "positive count in the class loss; 0 = all of them (the book)", ge=0)
    focal_gamma: float = c.opt(0.0, "focal loss: cross-entropy x (1 - p)^gamma; 0 = plain cross-entropy", ge=0)
    box: Literal["l1", "smooth_l1"] = c.opt("l1", "offset loss: L1 (the book) or smooth L1 (beta 1/9)")
    box_weight: float = c.opt(1.0, "weight of the offset loss against the class loss", ge=0)
    iou_threshold: float = c.opt(0.5, "an anchor overlapping a box by at least this IoU is a positive (besides "
                                 "each box's best anchor)", gt=0, le=1)


@dataclass
class Detect:
    """Turning anchor scores into boxes (validation mAP, pictures, predict)."""

    nms_threshold: float = c.opt(0.5, "boxes of one class overlapping a better one by more IoU are dropped",
                                 ge=0, le=1)
    min_score: float = c.opt(0.01, "detections scoring less are discarded before NMS and mAP", ge=0, lt=1)
    max_detections: int = c.opt(100, "per image and class, best first, counted by mAP (COCO's maxDets)", ge=1)
    draw_threshold: float = c.opt(0.5, "score a box needs to be drawn in predictions.png (predict: --threshold)",
                                  ge=0, le=1)


@dataclass
class Optim(c.OptimConfig):
    lr: float = c.opt(0.2, "learning rate at reference_batch for the batch-MEAN loss: the book's 0.2 (its SSD "
                      "loop also takes the batch mean, l.mean().backward())", gt=0)
    reference_batch: int = c.opt(BATCH, "the batch optim.lr is meant for: the book's 32", ge=1)
    weight_decay: float = c.opt(5e-4, "L2 weight decay for the batch-MEAN loss: the book's 5e-4", ge=0)


@dataclass
class Train(c.TrainConfig):
    epochs: int = c.opt(20, "number of epochs", ge=1)


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    detect: Detect = field(default_factory=Detect)
    loss: Loss = field(default_factory=Loss)
    optim: Optim = field(default_factory=Optim)
    sched: c.SchedConfig = field(default_factory=c.SchedConfig)
    train: Train = field(default_factory=Train)
    log: c.LogConfig = field(default_factory=c.LogConfig)


CODE = "cvtool.tasks.ssd"
SPEC = register(TaskSpec(
    command="train-ssd",
    summary="Train TinySSD on the banana detection dataset, or your own (VOC, COCO, YOLO).",
    config=Config, build=f"{CODE}:build", build_model=f"{CODE}:build_model", predict=f"{CODE}:predict",
    predict_options=("threshold",),
    synth={"bananas": "cvtool.data.bananas_synth:synthesize"},
    family="detect",
))
