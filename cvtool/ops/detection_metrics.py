"""Detection metrics: COCO mean average precision, exactly as pycocotools computes it, and the book's anchor metrics.

AP follows COCOeval (bbox, all areas): per image and class, detections (at most
``max_detections``, best score first) greedily take the unmatched ground-truth box they
overlap most with IoU >= t (on a tie, the later box, as COCOeval does); precision is made
monotone and read at COCO's 101 recall points. Thresholds and recall points are numpy's
``linspace`` values, as in COCOeval, so a recall or IoU landing exactly on one counts the same.
Ground truth marked ``difficult`` (VOC) or ``iscrowd`` (COCO; the data layer carries both as
one flag) is handled like COCO's ignored boxes: a detection takes it only when no ordinary
box is left for it, and is then neither a hit nor a miss; such boxes are not in the recall
denominator. (COCOeval also lets several detections share one crowd region, measured by the
share of the detection inside it; here a crowd box is taken once, at plain IoU.) Classes without ordinary ground truth
are left out of the mean. A randomized test checks all this against pycocotools.

The book's class error and bbox MAE measure anchors instead, background included, so they
stay close to 0 even for a poor detector; AP is what says whether the boxes are found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from cvtool.ops.boxes import box_iou

COCO_IOU_THRESHOLDS = tuple(np.linspace(0.5, 0.95, 10).tolist())  # its 0.9 is 0.8999999999999999
RECALL_POINTS = torch.from_numpy(np.linspace(0.0, 1.0, 101))


def average_precision(scores: torch.Tensor, true_positive: torch.Tensor, num_gt: int,
                      ignored: torch.Tensor | None = None) -> torch.Tensor:
    """101-point interpolated AP of detections ``scores`` (D,) with hits ``true_positive`` (T, D).

    One AP per row of ``true_positive`` (one row per IoU threshold); NaN when num_gt is 0.
    Detections ``ignored`` (T, D) (those that took a difficult box) count neither way.
    """
    return precision_curve(scores, true_positive, num_gt, ignored).mean(dim=1)


def precision_curve(scores: torch.Tensor, true_positive: torch.Tensor, num_gt: int,
                    ignored: torch.Tensor | None = None) -> torch.Tensor:
    """(T, 101) interpolated precision at COCO's recall points: the curve AP is the mean of,
    so a plotted curve and its AP cannot disagree. NaN when num_gt is 0."""
    rows = true_positive.shape[0]
    if num_gt == 0:
        return torch.full((rows, len(RECALL_POINTS)), float("nan"), dtype=torch.float64)
    if scores.numel() == 0:
        return torch.zeros(rows, len(RECALL_POINTS), dtype=torch.float64)
    if ignored is None:
        ignored = torch.zeros_like(true_positive)
    order = torch.sort(scores, descending=True, stable=True).indices
    hit, skip = true_positive[:, order], ignored[:, order]
    tp = (hit & ~skip).to(torch.float64).cumsum(dim=1)
    fp = (~hit & ~skip).to(torch.float64).cumsum(dim=1)
    recall = tp / num_gt
    seen = tp + fp
    precision = torch.where(seen > 0, tp / seen.clamp(min=1), torch.zeros_like(tp))
    envelope = precision.flip(1).cummax(dim=1).values.flip(1)
    index = torch.searchsorted(recall.contiguous(), RECALL_POINTS.expand(rows, -1).contiguous())
    padded = torch.cat((envelope, torch.zeros(rows, 1, dtype=torch.float64)), dim=1)
    return padded.gather(1, index)


def match_detections(det_boxes: torch.Tensor, gt_boxes: torch.Tensor,
                     iou_thresholds: Sequence[float]) -> torch.Tensor:
    """Greedy COCO matching in one image and class: (T, D) bool, True where detection d is a hit."""
    return match(det_boxes, gt_boxes, iou_thresholds)[0]


def match(det_boxes: torch.Tensor, gt_boxes: torch.Tensor, iou_thresholds: Sequence[float],
          gt_difficult: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """COCOeval's greedy matching: (hits, ignored), each (T, D) bool.

    ``det_boxes`` must be sorted by descending score. For every threshold t independently,
    each detection takes, among the boxes not yet taken with IoU >= t, the ordinary one it
    overlaps most (the last such on a tie), or failing that a difficult one: then it is
    ``ignored`` rather than a hit.
    """
    thresholds = torch.tensor([min(t, 1 - 1e-10) for t in iou_thresholds], dtype=torch.float64)[:, None]
    hits = torch.zeros(len(thresholds), det_boxes.shape[0], dtype=torch.bool)
    ignored = torch.zeros_like(hits)
    if det_boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return hits, ignored
    difficult = torch.zeros(gt_boxes.shape[0], dtype=torch.bool) if gt_difficult is None else gt_difficult.bool()
    iou = box_iou(det_boxes.to(torch.float64), gt_boxes.to(torch.float64))  # (D, G)
    taken = torch.zeros(len(thresholds), gt_boxes.shape[0], dtype=torch.bool)
    rows, position = torch.arange(len(thresholds)), torch.arange(gt_boxes.shape[0])
    # Only detections that reach the lowest threshold with some box can take anything.
    for d in (iou >= thresholds.min()).any(dim=1).nonzero().flatten().tolist():
        free = ~taken & (iou[d] >= thresholds)  # (T, G)
        ordinary = free & ~difficult
        allowed = torch.where(ordinary.any(dim=1, keepdim=True), ordinary, free)
        value = torch.where(allowed, iou[d], torch.tensor(-1.0, dtype=torch.float64))
        best = value.max(dim=1, keepdim=True).values
        g = torch.where(allowed & (value == best), position, -1).max(dim=1).values  # the last best box
        took = g >= 0
        hits[:, d] = took & ~difficult[g.clamp(min=0)]
        ignored[:, d] = took & difficult[g.clamp(min=0)]
        taken[rows[took], g[took]] = True
    return hits, ignored


class MeanAveragePrecision:
    """Accumulates detections image by image; ``compute()`` gives map50, map75 and map.

    Boxes of an image are (N, 4) corner boxes in any one coordinate system shared by its
    detections and ground truth; labels are class indices. ``gt_difficult`` (N,) marks
    ground truth that is neither to be found nor to be held against a detection (VOC).
    """

    def __init__(self, iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS, max_detections: int = 100):
        self.iou_thresholds = tuple(iou_thresholds)
        self.max_detections = max_detections
        self.scores: dict[int, list[torch.Tensor]] = {}
        self.hits: dict[int, list[torch.Tensor]] = {}
        self.ignored: dict[int, list[torch.Tensor]] = {}
        self.num_gt: dict[int, int] = {}

    def update(self, det_boxes: torch.Tensor, det_scores: torch.Tensor, det_labels: torch.Tensor,
               gt_boxes: torch.Tensor, gt_labels: torch.Tensor, gt_difficult: torch.Tensor | None = None) -> None:
        det_boxes, det_scores, det_labels = (t.detach().cpu() for t in (det_boxes, det_scores, det_labels))
        gt_boxes, gt_labels = gt_boxes.detach().cpu(), gt_labels.detach().cpu()
        difficult = (torch.zeros(gt_labels.shape[0], dtype=torch.bool) if gt_difficult is None
                     else gt_difficult.detach().cpu().bool().reshape(-1))
        for c in torch.cat((det_labels, gt_labels)).long().unique().tolist():
            mine, theirs = det_labels == c, gt_labels == c
            scores = det_scores[mine].to(torch.float64)
            order = torch.sort(scores, descending=True, stable=True).indices[: self.max_detections]
            hits, ignored = match(det_boxes[mine][order], gt_boxes[theirs], self.iou_thresholds, difficult[theirs])
            self.num_gt[c] = self.num_gt.get(c, 0) + int((~difficult[theirs]).sum())
            self.scores.setdefault(c, []).append(scores[order])
            self.hits.setdefault(c, []).append(hits)
            self.ignored.setdefault(c, []).append(ignored)

    def per_class(self) -> dict[int, torch.Tensor]:
        """AP per IoU threshold (T,) for every class that has (ordinary) ground truth."""
        return {c: average_precision(torch.cat(self.scores[c]), torch.cat(self.hits[c], dim=1), n,
                                     torch.cat(self.ignored[c], dim=1))
                for c, n in sorted(self.num_gt.items()) if n > 0}

    def curves(self, iou: float = 0.5) -> dict[int, dict[str, torch.Tensor | float]]:
        """Per class with ground truth, at the IoU threshold ``iou`` (one of the meter's): the
        precision curve at COCO's 101 recall points, its AP (the curve's mean, as in
        ``per_class``), the highest recall any detection reaches and the ground-truth count."""
        near = [i for i, u in enumerate(self.iou_thresholds) if math.isclose(u, iou, abs_tol=1e-9)]
        if not near:
            raise ValueError(f"IoU {iou} is not one of the thresholds {self.iou_thresholds}")
        t = near[0]
        out: dict[int, dict[str, torch.Tensor | float]] = {}
        for c, n in sorted(self.num_gt.items()):
            if n == 0:
                continue
            hits = torch.cat(self.hits[c], dim=1)[t:t + 1]
            ignored = torch.cat(self.ignored[c], dim=1)[t:t + 1]
            curve = precision_curve(torch.cat(self.scores[c]), hits, n, ignored)[0]
            found = int((hits & ~ignored).sum())
            out[c] = {"precision": curve, "ap": float(curve.mean()), "max_recall": found / n, "num_gt": n}
        return out

    def compute(self) -> dict[str, float]:
        table = self.per_class()
        if not table:
            return {"map": float("nan"), "map50": float("nan"), "map75": float("nan")}
        ap = torch.stack(list(table.values())).mean(dim=0)  # (T,)
        out = {"map": float(ap.mean())}
        for name, t in (("map50", 0.5), ("map75", 0.75)):
            near = [i for i, u in enumerate(self.iou_thresholds) if math.isclose(u, t, abs_tol=1e-9)]
            if near:
                out[name] = float(ap[near[0]])
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
