"""train-rcnn: torchvision's Faster R-CNN on the banana or VOC2012 detection data.

The same data, augmentation and COCO mAP as train-ssd, so the two detector families are
scored identically. Batches are stacked like train-ssd's and split into the lists of
images (float 0-1) and targets (pixel boxes, label k fed as k + 1: 0 is background)
torchvision's detection models take. Losses exist only in train mode, where the RPN and
the RoI head sample proposals at random, so validation reports mAP, not a loss (one more
forward pass per image and a random figure; see docs/rcnn.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from PIL import Image
from torch import nn
from torchvision.models.detection import FasterRCNN

from cvtool.data.bananas import to_tensor
from cvtool.engine import eval_report
from cvtool.engine.task import StepOutput, Task
from cvtool.models.rcnn import build_rcnn
from cvtool.ops.detection_metrics import MeanAveragePrecision
from cvtool.tasks import detect
from cvtool.tasks.detect import Detection, Detector, truths
from cvtool.tasks.specs.rcnn import SPEC, Config

LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
COLUMNS = ("train_loss", *(f"train_{k}" for k in LOSSES), "val_map50", "val_map")


def _model(cfg: Config, weights: str | None, weights_backbone: str | None) -> FasterRCNN:
    m, d = cfg.model, cfg.detect
    extra: dict[str, Any] = {}
    if m.rpn_proposals is not None:
        extra.update(rpn_pre_nms_top_n_train=m.rpn_proposals, rpn_post_nms_top_n_train=m.rpn_proposals)
    if m.rpn_proposals_test is not None:
        extra.update(rpn_pre_nms_top_n_test=m.rpn_proposals_test, rpn_post_nms_top_n_test=m.rpn_proposals_test)
    if m.box_batch_size_per_image is not None:
        extra["box_batch_size_per_image"] = m.box_batch_size_per_image
    return build_rcnn(m.arch, detect.class_total(cfg), weights=weights, weights_backbone=weights_backbone,
                      trainable_backbone_layers=m.trainable_backbone_layers, image_size=cfg.data.image_size,
                      anchor_scale=m.anchor_scale,
                      box_score_thresh=d.min_score, box_nms_thresh=d.nms_threshold,
                      box_detections_per_img=d.max_detections, **extra)


def build_model(cfg: Config) -> FasterRCNN:
    """The architecture alone, for a checkpoint to fill: no pretrained file is read.

    Pretrained backbones train with frozen batch norm, random ones with plain batch norm;
    in eval mode both compute the same, and the plain layer loads either's state.
    """
    return _model(cfg, None, None)


# --------------------------------------------------------------------------- step


def split(batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """A stacked batch as torchvision's lists: images in 0-1, targets with pixel boxes and labels + 1."""
    images = batch["image"]
    size = images.shape[-1]
    targets = [{"boxes": boxes.float(), "labels": labels + 1}
               for boxes, labels, _ in truths(batch["labels"], size)]
    return list(images.float().div(255)), targets


def train_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
    """The sum of Faster R-CNN's four losses (each a batch mean); each is reported too."""
    images, targets = split(batch)
    parts = model(images, targets)
    count = len(images)
    loss = sum(parts[k].float() for k in LOSSES)
    return StepOutput(loss=loss, count=count,  # type: ignore[arg-type]
                      stats={k: (parts[k].detach().float() * count, count) for k in LOSSES})


# --------------------------------------------------------------------------- detect, evaluate


def make_detector(image_size: int) -> Detector:
    """Faster R-CNN on images of any size: resized to image_size (as in training), boxes in their pixels."""

    def detector(model: nn.Module, images: list[torch.Tensor], device: torch.device) -> list[Detection]:
        batch = [_resized(image, image_size).to(device).float().div(255) for image in images]
        found = []
        for image, out in zip(images, model(batch)):
            height, width = image.shape[-2:]
            scale = torch.tensor([width, height, width, height], device=out["boxes"].device) / image_size
            found.append(Detection(out["boxes"].float() * scale, out["scores"].float(), out["labels"] - 1))
        return found

    return detector


def _resized(image: torch.Tensor, size: int) -> torch.Tensor:
    """The same PIL bilinear resize the training images had."""
    if image.shape[-2:] == (size, size):
        return image
    return to_tensor(Image.fromarray(image.cpu().permute(1, 2, 0).numpy()), size)


def make_evaluate(cfg: Config):
    detector = make_detector(cfg.data.image_size)

    def evaluate(model: nn.Module, batches: Iterable, device: torch.device) -> dict[str, float]:
        """COCO mAP@0.5 and mAP@[.5:.95] over the validation split (VOC's difficult boxes ignored)."""
        meter = MeanAveragePrecision(max_detections=cfg.detect.max_detections)
        images = 0
        for batch in batches:
            found = detector(model, list(batch["image"]), device)
            detect.update_map(meter, found, truths(batch["labels"], cfg.data.image_size, batch.get("difficult")))
            images += len(found)
        if images == 0:
            return {}
        ap = meter.compute()
        eval_report.record("detections", meter)
        return {"val_map50": ap["map50"], "val_map": ap["map"], **detect.per_class_ap50(meter, list(cfg.data.classes))}

    return evaluate


# --------------------------------------------------------------------------- build, predict


def build(cfg: Config, rank_zero: bool = True) -> Task:
    cfg, train, val, metadata = detect.prepare(cfg)
    d = cfg.data
    model = _model(cfg, cfg.model.weights, cfg.model.weights_backbone)
    pictures = (make_detector(d.image_size), detect.first_samples(val), list(d.classes), cfg.detect.draw_threshold)
    return Task(
        name=SPEC.command, config=cfg, model=model, train_data=train, val_data=val,
        train_step=train_step, evaluate=make_evaluate(cfg), columns=COLUMNS,
        best_metric="val_map50", best_mode="max",
        finish=detect.make_finish(*pictures), pictures=detect.make_pictures(*pictures),
        metadata=metadata,
    )


def predict(model: nn.Module, cfg: Config, metadata: dict[str, Any], paths: list[Path],
            device: torch.device, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Boxes scoring >= threshold in each image's own pixels; with ``out``, pictures of them."""
    threshold = detect.threshold_of(options, cfg.detect.draw_threshold)
    classes = list(metadata.get("classes") or cfg.data.classes)
    size = int(metadata.get("image_size") or cfg.data.image_size)
    out = Path(options["out"]) if options.get("out") is not None else None
    return detect.predict(make_detector(size), model, paths, device, classes, threshold, out)
