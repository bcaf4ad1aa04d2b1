"""train-ssd: TinySSD on the banana detection dataset.

Defaults are the book's settings. Unlike the book's other chapters, its SSD loop
averages its per-image loss over the batch (``l.mean().backward()``), as cvtool does, so
its SGD lr 0.2 and weight decay 5e-4 carry over unchanged (docs/book.md). Without
augmentation an image's anchor targets depend only on its labels, so they are computed
once per split when the task is built rather than on every step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from cvtool import config as c
from cvtool.data import bananas
from cvtool.data.bananas import to_tensor
from cvtool.engine import eval_report
from cvtool.engine.task import StepOutput, Task
from cvtool.models.tinyssd import TinySSD
from cvtool.ops.boxes import multibox_detection, multibox_target
from cvtool.ops.detection_metrics import MeanAveragePrecision, bbox_mae_sum, class_error_sum
from cvtool.tasks import detect
from cvtool.tasks.detect import Detection, Detector, truths
from cvtool.tasks.specs.ssd import SPEC, Config, Detect, Loss

COLUMNS = ("train_loss", "train_class_err", "train_bbox_mae",
           "val_loss", "val_class_err", "val_bbox_mae", "val_map50", "val_map")


def build_model(cfg: Config) -> TinySSD:
    m = cfg.model
    if len(m.anchor_sizes) != 5 or len({len(s) for s in m.anchor_sizes}) != 1 or not m.anchor_sizes[0]:
        raise c.ConfigError(f"model.anchor_sizes must be five lists of one length (one per feature map), got "
                            f"{m.anchor_sizes}")
    return TinySSD(detect.class_total(cfg), m.width, m.anchor_sizes, m.anchor_ratios)


class WithTargets(Dataset):
    """A split with its anchor targets precomputed: adds bbox_offset (A*4,) and cls_labels (A,).

    About half the decoded image's bytes per image, so it is used only where the split's images
    are held in memory too (data.cache); otherwise each step computes its own batch's targets."""

    def __init__(self, data: Dataset, anchors: torch.Tensor, iou_threshold: float = 0.5, chunk: int = 256):
        self.data = data
        offsets, classes = [], []
        for start in range(0, len(data), chunk):  # type: ignore[arg-type]
            labels = data.padded(start, start + chunk)[0]  # type: ignore[attr-defined]
            off, _, cls = multibox_target(anchors, labels, iou_threshold)
            offsets.append(off)
            classes.append(cls.to(torch.int16))
        self.offsets = torch.cat(offsets)
        self.classes = torch.cat(classes)

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**self.data[i], "bbox_offset": self.offsets[i], "cls_labels": self.classes[i]}


def ssd_loss(cls_preds: torch.Tensor, cls_labels: torch.Tensor, bbox_preds: torch.Tensor,
             bbox_labels: torch.Tensor, bbox_masks: torch.Tensor) -> torch.Tensor:
    """The book's per-image loss (B,): mean cross-entropy over anchors + mean L1 of masked offsets."""
    batch, anchors, classes = cls_preds.shape
    cls = F.cross_entropy(cls_preds.float().reshape(-1, classes), cls_labels.reshape(-1), reduction="none")
    bbox = F.l1_loss(bbox_preds.float() * bbox_masks, bbox_labels * bbox_masks, reduction="none")
    return cls.reshape(batch, anchors).mean(dim=1) + bbox.mean(dim=1)


def _forward(model: nn.Module, batch: dict[str, torch.Tensor], iou_threshold: float = 0.5):
    """Predictions and their targets (cached ones when the batch carries them)."""
    anchors, cls_preds, bbox_preds = model(batch["image"].float())
    if "cls_labels" in batch:
        classes = batch["cls_labels"].long()
        offsets = batch["bbox_offset"]
        masks = (classes > 0).repeat_interleave(4, dim=1).to(offsets.dtype)
    else:
        offsets, masks, classes = multibox_target(anchors, batch["labels"], iou_threshold)
    return anchors, cls_preds, bbox_preds, offsets, masks, classes


def recipe_loss(cls_preds: torch.Tensor, cls_labels: torch.Tensor, bbox_preds: torch.Tensor,
                bbox_labels: torch.Tensor, bbox_masks: torch.Tensor, loss: Loss) -> torch.Tensor:
    """The batch's training loss under ``loss`` (a scalar); the defaults give the book's."""
    if loss == Loss():
        return ssd_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks).mean()
    logits = cls_preds.float()
    ce = F.cross_entropy(logits.flatten(0, 1), cls_labels.flatten(), reduction="none").reshape(cls_labels.shape)
    if loss.focal_gamma:
        p_true = torch.exp(-ce)
        ce = ce * (1 - p_true).pow(loss.focal_gamma)
    positive = cls_labels > 0
    if loss.neg_ratio:
        ranked = ce.detach().masked_fill(positive, -1.0)
        keep_neg = (positive.sum(1, keepdim=True) * loss.neg_ratio).clamp(min=1).long()
        rank = ranked.argsort(dim=1, descending=True).argsort(dim=1)
        ce = ce * (positive | (rank < keep_neg))
    diff = (bbox_preds.float() - bbox_labels) * bbox_masks
    box = F.smooth_l1_loss(diff, torch.zeros_like(diff), beta=1 / 9, reduction="none") if loss.box == "smooth_l1" \
        else diff.abs()
    if loss.normalize == "positives":
        return (ce.sum() + loss.box_weight * box.sum()) / positive.sum().clamp(min=1)
    return (ce.mean(dim=1) + loss.box_weight * box.mean(dim=1)).mean()


def make_train_step(loss: Loss):
    def train_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        _, cls_preds, bbox_preds, offsets, masks, classes = _forward(model, batch, loss.iou_threshold)
        return StepOutput(loss=recipe_loss(cls_preds, classes, bbox_preds, offsets, masks, loss),
                          count=classes.shape[0], stats={
                              "class_err": class_error_sum(cls_preds, classes),
                              "bbox_mae": bbox_mae_sum(bbox_preds, offsets, masks)})

    return train_step


train_step = make_train_step(Loss())


def decode(cls_preds: torch.Tensor, bbox_preds: torch.Tensor, anchors: torch.Tensor, d: Detect) -> torch.Tensor:
    """(B, A, 6) rows [class, score, x1, y1, x2, y2] (normalised), kept detections first."""
    probs = F.softmax(cls_preds.float(), dim=2).permute(0, 2, 1)
    return multibox_detection(probs, bbox_preds.float(), anchors, d.nms_threshold, d.min_score)


def to_detections(rows: torch.Tensor, sizes: Iterable[tuple[int, int]]) -> list[Detection]:
    """Each image's kept rows, boxes scaled from [0, 1] to its (width, height)."""
    found = []
    for r, (width, height) in zip(rows, sizes):
        kept = r[r[:, 0] >= 0]
        scale = torch.tensor([width, height, width, height], dtype=kept.dtype, device=kept.device)
        found.append(Detection(kept[:, 2:] * scale, kept[:, 1], kept[:, 0].long()))
    return found


def make_detector(d: Detect, image_size: int) -> Detector:
    """TinySSD on images of any size: resized to image_size (as in training), boxes in their pixels."""

    def detector(model: nn.Module, images: list[torch.Tensor], device: torch.device) -> list[Detection]:
        batch = torch.stack([_resized(image, image_size) for image in images]).to(device)
        anchors, cls_preds, bbox_preds = model(batch.float())
        return to_detections(decode(cls_preds, bbox_preds, anchors, d),
                             [(image.shape[-1], image.shape[-2]) for image in images])

    return detector


def _resized(image: torch.Tensor, size: int) -> torch.Tensor:
    """The same PIL bilinear resize the training images had."""
    if image.shape[-2:] == (size, size):
        return image
    return to_tensor(Image.fromarray(image.permute(1, 2, 0).numpy()), size)


def make_evaluate(cfg: Config):
    def evaluate(model: nn.Module, batches: Iterable, device: torch.device) -> dict[str, float]:
        """Loss, the book's anchor metrics and COCO mAP over the whole validation split."""
        loss = torch.zeros((), device=device)
        wrong = torch.zeros((), device=device)
        abs_err = torch.zeros((), device=device)
        images = anchor_count = offset_count = 0
        meter = MeanAveragePrecision(max_detections=cfg.detect.max_detections)
        for batch in batches:
            anchors, cls_preds, bbox_preds, offsets, masks, classes = _forward(model, batch, cfg.loss.iou_threshold)
            loss += ssd_loss(cls_preds, classes, bbox_preds, offsets, masks).sum()
            w, n = class_error_sum(cls_preds, classes)
            e, m = bbox_mae_sum(bbox_preds, offsets, masks)
            wrong, abs_err = wrong + w, abs_err + e
            anchor_count, offset_count, images = anchor_count + n, offset_count + m, images + classes.shape[0]
            found = to_detections(decode(cls_preds, bbox_preds, anchors, cfg.detect), [(1, 1)] * len(classes))
            detect.update_map(meter, found, truths(batch["labels"], difficult=batch.get("difficult")))
        if images == 0:
            return {}
        ap = meter.compute()
        eval_report.record("detections", meter)
        return {"val_loss": (loss / images).item(), "val_class_err": (wrong / anchor_count).item(),
                "val_bbox_mae": (abs_err / offset_count).item(), "val_map50": ap["map50"], "val_map": ap["map"],
                **detect.per_class_ap50(meter, list(cfg.data.classes))}

    return evaluate


# --------------------------------------------------------------------------- build, predict


def targets_for(data: Dataset, anchors: torch.Tensor, iou_threshold: float) -> Dataset:
    """The split with precomputed targets when they stay fixed (no augmentation) and it is cached."""
    if getattr(data, "augment", None) or getattr(data, "images", None) is None:
        return data
    return WithTargets(data, anchors, iou_threshold)


def build(cfg: Config, rank_zero: bool = True) -> Task:
    cfg, train, val, metadata = detect.prepare(cfg)
    d = cfg.data
    model = build_model(cfg)
    anchors = model.anchors_for(d.image_size, d.image_size)
    pictures = (make_detector(cfg.detect, d.image_size), detect.first_samples(val), list(d.classes), cfg.detect.draw_threshold)
    return Task(
        name=SPEC.command, config=cfg, model=model,
        train_data=targets_for(train, anchors, cfg.loss.iou_threshold),
        val_data=targets_for(val, anchors, cfg.loss.iou_threshold),
        train_step=make_train_step(cfg.loss), evaluate=make_evaluate(cfg), columns=COLUMNS,
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
    return detect.predict(make_detector(cfg.detect, size), model, paths, device, classes, threshold, out,
                          overwrite=bool(options.get("overwrite")))
