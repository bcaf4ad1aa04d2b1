"""Segmentation scores from one confusion matrix over the whole validation set.

Averaging per-batch scores would weight a batch of small images like one of large ones
and make mIoU depend on the batch size; counting pixels into a single matrix and
scoring it once does neither. Void pixels (255) never enter the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) pixel counts, rows = truth, columns = prediction.

    Target values outside 0..num_classes-1 (void = 255) are not counted; a prediction
    outside that range is a bug upstream (a model with more classes than the data), and
    counting it would land in another class's cell, so it raises.
    """
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    if pred.numel() and bool(((pred < 0) | (pred >= num_classes)).any()):
        bad = pred[(pred < 0) | (pred >= num_classes)][0].item()
        raise ValueError(f"prediction class {bad} is outside 0..{num_classes - 1}")
    valid = (target >= 0) & (target < num_classes)
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


@dataclass
class SegmentationScores:
    """Scores of a confusion matrix; per-class values are NaN for a class that is absent
    from both truth and prediction (IoU) or from the truth (accuracy)."""

    pixel_acc: float
    mean_class_acc: float
    miou: float
    iou: list[float]
    class_acc: list[float]


def scores(matrix: torch.Tensor) -> SegmentationScores:
    """Pixel accuracy, mean class accuracy, per-class IoU and their mean over present classes."""
    m = matrix.double()
    hits = m.diagonal()
    truth = m.sum(1)
    union = truth + m.sum(0) - hits
    class_acc = hits / truth
    iou = hits / union
    total = m.sum()
    return SegmentationScores(
        pixel_acc=(hits.sum() / total).item() if total > 0 else float("nan"),
        mean_class_acc=class_acc.nanmean().item(),
        miou=iou.nanmean().item(),
        iou=iou.tolist(),
        class_acc=class_acc.tolist(),
    )


def background_only_miou(matrix: torch.Tensor) -> float:
    """The mIoU of predicting class 0 everywhere: the floor a trained model must clear."""
    truth = matrix.double().sum(1)
    present = (truth > 0).sum().item() + int(truth[0] == 0)
    return (truth[0] / truth.sum()).item() / present if truth.sum() > 0 else float("nan")


class ConfusionMatrix:
    """Accumulates pixel counts on the tensors' device; they reach the host only in ``scores``."""

    def __init__(self, num_classes: int, device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.matrix += confusion_matrix(pred, target, self.num_classes).to(self.matrix.device)

    def scores(self) -> SegmentationScores:
        return scores(self.matrix.cpu())
