"""Detection metrics: COCO-style mean average precision and the book's anchor metrics.

AP follows the COCO evaluation: per image and class, detections (at most
``max_detections``, best score first) greedily take the unmatched ground-truth box they
overlap most with IoU >= t; precision is made monotone and read at the 101 recall points
0, 0.01, ..., 1. Classes without ground truth are left out of the mean. The book's class
error and bbox MAE measure anchors instead, background included, so they stay close to 0
even for a poor detector; AP is what says whether the boxes are found.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cvtool.ops.boxes import box_iou

COCO_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
RECALL_POINTS = torch.linspace(0, 1, 101, dtype=torch.float64)


def average_precision(scores: torch.Tensor, true_positive: torch.Tensor, num_gt: int) -> torch.Tensor:
    """101-point interpolated AP of detections ``scores`` (D,) with hits ``true_positive`` (T, D).

    One AP per row of ``true_positive`` (one row per IoU threshold); NaN when num_gt is 0.
    """
    rows = true_positive.shape[0]
    if num_gt == 0:
        return torch.full((rows,), float("nan"), dtype=torch.float64)
    if scores.numel() == 0:
        return torch.zeros(rows, dtype=torch.float64)
    order = torch.sort(scores, descending=True, stable=True).indices
    tp = true_positive[:, order].to(torch.float64).cumsum(dim=1)
    fp = (~true_positive[:, order]).to(torch.float64).cumsum(dim=1)
    recall = tp / num_gt
    precision = tp / (tp + fp)
    envelope = precision.flip(1).cummax(dim=1).values.flip(1)
    index = torch.searchsorted(recall.contiguous(), RECALL_POINTS.expand(rows, -1).contiguous())
    padded = torch.cat((envelope, torch.zeros(rows, 1, dtype=torch.float64)), dim=1)
    return padded.gather(1, index).mean(dim=1)


def match_detections(det_boxes: torch.Tensor, gt_boxes: torch.Tensor,
                     iou_thresholds: Sequence[float]) -> torch.Tensor:
    """Greedy COCO matching in one image and class: (T, D) bool, True where detection d is a hit.

    ``det_boxes`` must be sorted by descending score. Each detection takes the unmatched
    box it overlaps most among those with IoU >= t, independently for every threshold t.
    """
    thresholds = torch.as_tensor(list(iou_thresholds), dtype=torch.float64)[:, None]
    hits = torch.zeros(len(thresholds), det_boxes.shape[0], dtype=torch.bool)
    if det_boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return hits
    iou = box_iou(det_boxes.to(torch.float64), gt_boxes.to(torch.float64))  # (D, G)
    taken = torch.zeros(len(thresholds), gt_boxes.shape[0], dtype=torch.bool)
    columns = torch.arange(len(thresholds))
    # Only detections that reach the lowest threshold with some box can hit anything.
    for d in (iou >= thresholds.min()).any(dim=1).nonzero().flatten().tolist():
        candidates = torch.where(~taken & (iou[d] >= thresholds), iou[d], torch.tensor(-1.0, dtype=torch.float64))
        best, g = candidates.max(dim=1)
        hit = best >= 0
        hits[:, d] = hit
        taken[columns[hit], g[hit]] = True
    return hits


class MeanAveragePrecision:
    """Accumulates detections image by image; ``compute()`` gives map50, map75 and map.

    Boxes of an image are (N, 4) corner boxes in any one coordinate system shared by its
    detections and ground truth; labels are class indices.
    """

    def __init__(self, iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS, max_detections: int = 100):
        self.iou_thresholds = tuple(iou_thresholds)
        self.max_detections = max_detections
        self.scores: dict[int, list[torch.Tensor]] = {}
        self.hits: dict[int, list[torch.Tensor]] = {}
        self.num_gt: dict[int, int] = {}

    def update(self, det_boxes: torch.Tensor, det_scores: torch.Tensor, det_labels: torch.Tensor,
               gt_boxes: torch.Tensor, gt_labels: torch.Tensor) -> None:
        det_boxes, det_scores, det_labels = (t.detach().cpu() for t in (det_boxes, det_scores, det_labels))
        gt_boxes, gt_labels = gt_boxes.detach().cpu(), gt_labels.detach().cpu()
        for c in torch.cat((det_labels, gt_labels)).long().unique().tolist():
            gt = gt_boxes[gt_labels == c]
            mine = det_labels == c
            scores = det_scores[mine].to(torch.float64)
            order = torch.sort(scores, descending=True, stable=True).indices[: self.max_detections]
            self.num_gt[c] = self.num_gt.get(c, 0) + gt.shape[0]
            self.scores.setdefault(c, []).append(scores[order])
            self.hits.setdefault(c, []).append(match_detections(det_boxes[mine][order], gt, self.iou_thresholds))

    def per_class(self) -> dict[int, torch.Tensor]:
        """AP per IoU threshold (T,) for every class that has ground truth."""
        return {c: average_precision(torch.cat(self.scores[c]), torch.cat(self.hits[c], dim=1), n)
                for c, n in sorted(self.num_gt.items()) if n > 0}

    def compute(self) -> dict[str, float]:
        table = self.per_class()
        if not table:
            return {"map": float("nan"), "map50": float("nan"), "map75": float("nan")}
        ap = torch.stack(list(table.values())).mean(dim=0)  # (T,)
        out = {"map": float(ap.mean())}
        for name, t in (("map50", 0.5), ("map75", 0.75)):
            if t in self.iou_thresholds:
                out[name] = float(ap[self.iou_thresholds.index(t)])
        return out


def class_error_sum(cls_preds: torch.Tensor, cls_labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The book's class error as (wrong anchors, anchors): argmax over (B, A, C+1) vs (B, A)."""
    wrong = (cls_preds.argmax(dim=-1) != cls_labels).sum()
    return wrong, cls_labels.numel()


def bbox_mae_sum(bbox_preds: torch.Tensor, bbox_labels: torch.Tensor,
                 bbox_masks: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The book's bbox MAE as (sum of masked absolute offset errors, all offset entries)."""
    err = ((bbox_preds.float() - bbox_labels) * bbox_masks).abs().sum()
    return err, bbox_labels.numel()
