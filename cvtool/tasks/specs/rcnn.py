"""train-rcnn: its config and spec, without torch; its code is cvtool.tasks.rcnn."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cvtool import config as c
from cvtool.models.defaults import RCNN_ARCH
from cvtool.tasks.registry import TaskSpec, register
from cvtool.tasks.specs import detect

@dataclass
class Data(detect.DetectionData):
    """A bananas, VOC, COCO or YOLO detection folder (data.format, docs/data.md); val is the validation split."""

    batch_size: int = c.opt(8, "images per training step", ge=1)
    num_workers: int = c.opt(2, "DataLoader worker processes: they decode images when data.cache is off, "
                             "and augment", ge=0)
    image_size: int = c.opt(320, "images are resized to image_size x image_size and fed at that size", ge=32)
    flip: bool = c.opt(True, "augment: random horizontal flips, boxes moved along")


@dataclass
class Model:
    """torchvision's Faster R-CNN; the box predictor is replaced for num_classes + 1 outputs."""

    arch: str = c.opt(RCNN_ARCH, "fasterrcnn_mobilenet_v3_large_320_fpn | fasterrcnn_mobilenet_v3_large_fpn | "
                      "fasterrcnn_resnet50_fpn_v2")
    weights: str = c.opt("DEFAULT", "COCO weights for the whole model (a torchvision weight name), or none")
    weights_backbone: str = c.opt("none", "ImageNet backbone weights when model.weights is none, or none")
    trainable_backbone_layers: int | None = c.opt(
        None, "backbone stages trained from pretrained weights (null: torchvision's 3); from random init all train",
        ge=0)
    num_classes: int | Literal["auto"] = c.opt(
        "auto", "object classes, background not counted; auto = one per class name the data holds", ge=1)
    anchor_scale: float = c.opt(1.0, "multiplies the RPN's anchor sizes (32-512 px, made for 320-800 px "
                                "images); below 1 for small images and objects", gt=0)
    rpn_proposals: int | None = c.opt(
        None, "RPN proposals kept per training image before and after NMS (null: torchvision's 2000)", ge=1)
    rpn_proposals_test: int | None = c.opt(
        None, "RPN proposals kept per image at validation and predict (null: torchvision's, 150 for the 320 arch, "
        "else 1000)", ge=1)
    box_batch_size_per_image: int | None = c.opt(
        None, "RoIs sampled per training image for the box head (null: torchvision's 512)", ge=1)


@dataclass
class Detect:
    """The RoI head's post-processing (validation mAP, pictures, predict)."""

    nms_threshold: float = c.opt(0.5, "boxes of one class overlapping a better one by more IoU are dropped",
                                 ge=0, le=1)
    min_score: float = c.opt(0.01, "detections scoring less are discarded before NMS and mAP", ge=0, lt=1)
    max_detections: int = c.opt(100, "per image, best first, counted by mAP (COCO's maxDets)", ge=1)
    draw_threshold: float = c.opt(0.5, "score a box needs to be drawn in predictions.png (predict: --threshold)",
                                  ge=0, le=1)


@dataclass
class Optim(c.OptimConfig):
    lr: float = c.opt(0.01, "learning rate (torchvision's detection recipe: 0.02 for 16 images)", gt=0)
    momentum: float = c.opt(0.9, "SGD momentum", ge=0, lt=1)
    weight_decay: float = c.opt(1e-4, "L2 weight decay", ge=0)


@dataclass
class Sched(c.SchedConfig):
    name: Literal["none", "step", "cosine", "onecycle"] = c.opt("cosine", "learning-rate schedule")
    warmup_epochs: float = c.opt(0.5, "linear warm-up from lr/100, in epochs (fractions allowed)", ge=0)


@dataclass
class Train(c.TrainConfig):
    epochs: int = c.opt(10, "number of epochs", ge=1)
    grad_clip: float | None = c.opt(10.0, "clip the gradient norm (early RPN steps can spike); null = off", gt=0)


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    detect: Detect = field(default_factory=Detect)
    optim: Optim = field(default_factory=Optim)
    sched: Sched = field(default_factory=Sched)
    train: Train = field(default_factory=Train)


CODE = "cvtool.tasks.rcnn"
SPEC = register(TaskSpec(
    command="train-rcnn",
    summary="Train torchvision's Faster R-CNN on the banana detection dataset, or your own (VOC, COCO, YOLO).",
    config=Config, build=f"{CODE}:build", build_model=f"{CODE}:build_model", predict=f"{CODE}:predict",
    predict_options=("threshold",),
    synth={"voc-detection": "cvtool.data.voc_detection_synth:synthesize_voc_detection"},
    eval_settings={"model.weights": "none", "model.weights_backbone": "none"},
    family="detect",
))
