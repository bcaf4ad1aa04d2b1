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
    counting it would land in another class's cell, so it raises (reading the range back
    from the device: ``ConfusionMatrix`` defers that check to when it is read).
    """
    pred = pred.reshape(-1)
    if pred.numel():
        check_predictions(pred.amin(), pred.amax(), num_classes)
    return counts(pred, target, num_classes)


def counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The matrix without any host sync: no boolean indexing, no bincount (which reads its
    input's maximum back); pixels with a target or prediction out of range are not counted."""
    n = num_classes
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    valid = (target >= 0) & (target < n) & (pred >= 0) & (pred < n)
    index = torch.where(valid, target * n + pred, n * n)  # one spare bin for the uncounted
    bins = torch.zeros(n * n + 1, dtype=torch.long, device=index.device)
    bins.index_add_(0, index, torch.ones_like(index))
    return bins[:-1].reshape(n, n)


def check_predictions(low: torch.Tensor, high: torch.Tensor, num_classes: int) -> None:
    """Raise if the smallest or largest predicted class is outside 0..num_classes-1."""
    low, high = int(low), int(high)
    if low < 0 or high >= num_classes:
        raise ValueError(f"prediction class {low if low < 0 else high} is outside 0..{num_classes - 1}")


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
    """Accumulates pixel counts on the tensors' device; nothing reaches the host before the
    matrix is read, which is also when a prediction outside the classes raises."""

    def __init__(self, num_classes: int, device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
        self.low = torch.zeros((), dtype=torch.long, device=device)  # smallest and largest prediction
        self.high = torch.zeros((), dtype=torch.long, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = pred.to(self.counts.device)
        if pred.numel():
            self.low = torch.minimum(self.low, pred.amin().long())
            self.high = torch.maximum(self.high, pred.amax().long())
        self.counts += counts(pred, target.to(self.counts.device), self.num_classes)

    @property
    def matrix(self) -> torch.Tensor:
        check_predictions(self.low, self.high, self.num_classes)
        return self.counts

    def scores(self) -> SegmentationScores:
        return scores(self.matrix.cpu())
