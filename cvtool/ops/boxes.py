"""Box formats, anchors, target assignment, offsets and decoding for SSD-style detectors.

All boxes are normalised corner boxes (x1, y1, x2, y2) in [0, 1] unless a function says
otherwise. Every function works on any device and on whole batches at once; the only
Python loops run over the (few) ground-truth boxes of an image, never over anchors.
Format conversion, IoU and non-maximum suppression come from torchvision.ops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import batched_nms, box_convert, clip_boxes_to_image
from torchvision.ops import box_iou as _tv_box_iou

__all__ = [
    "box_corner_to_center",
    "box_center_to_corner",
    "multibox_prior",
    "box_iou",
    "assign_anchor_to_bbox",
    "offset_boxes",
    "offset_inverse",
    "decode_boxes",
    "multibox_target",
    "multibox_detection",
]


def box_corner_to_center(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) corner boxes (x1, y1, x2, y2) -> centre boxes (cx, cy, w, h)."""
    return box_convert(boxes, "xyxy", "cxcywh")


def box_center_to_corner(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre boxes (cx, cy, w, h) -> corner boxes (x1, y1, x2, y2)."""
    return box_convert(boxes, "cxcywh", "xyxy")


def multibox_prior(data: torch.Tensor, sizes: Sequence[float], ratios: Sequence[float]) -> torch.Tensor:
    """Anchors for every pixel of the feature map ``data`` (B, C, H, W): (1, H*W*(n+m-1), 4).

    Per pixel, in this order: (s_1, r_1), (s_i, r_1) for i > 1, then (s_1, r_j) for j > 1,
    so n sizes and m ratios give n + m - 1 anchors instead of n * m. An anchor of size s and
    ratio r is H*s*sqrt(r) pixels wide and H*s/sqrt(r) high (both scaled by the map height,
    as in the book; square maps are unaffected).
    """
    height, width = data.shape[-2:]
    device = data.device
    size = torch.as_tensor(list(sizes), dtype=torch.float32, device=device)
    ratio = torch.as_tensor(list(ratios), dtype=torch.float32, device=device)
    if size.numel() == 0 or ratio.numel() == 0:
        raise ValueError("multibox_prior needs at least one size and one ratio")
    anchor_size = torch.cat((size, size[:1].expand(ratio.numel() - 1)))
    anchor_ratio = torch.cat((ratio[:1].expand(size.numel()), ratio[1:]))
    w = anchor_size * anchor_ratio.sqrt() * height / width
    h = anchor_size / anchor_ratio.sqrt()
    cy = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    cx = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
    centres = torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 1, 2)  # (H*W, 1, 2)
    half = torch.stack((w, h), dim=-1)[None] / 2  # (1, k, 2)
    corners = torch.cat((centres - half, centres + half), dim=-1)  # (H*W, k, 4)
    return corners.reshape(1, -1, 4)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (N, 4) and (M, 4) corner boxes: (N, M)."""
    return _tv_box_iou(boxes1, boxes2)


def _assign(ground_truth: torch.Tensor, valid: torch.Tensor, anchors: torch.Tensor,
            iou_threshold: float) -> torch.Tensor:
    """Batched assignment: ground_truth (B, G, 4) with ``valid`` (B, G) -> (B, A) box index or -1."""
    batch, num_gt = valid.shape
    num_anchors = anchors.shape[0]
    if num_gt == 0:
        return torch.full((batch, num_anchors), -1, dtype=torch.long, device=anchors.device)
    iou = box_iou(anchors, ground_truth.reshape(-1, 4)).reshape(num_anchors, batch, num_gt)
    iou = iou.permute(1, 0, 2).masked_fill(~valid[:, None, :], -1.0)  # (B, A, G)
    best_iou, best_gt = iou.max(dim=2)
    assigned = torch.where(best_iou >= iou_threshold, best_gt, torch.full_like(best_gt, -1))
    # Greedy pass: each box claims its best remaining anchor, so every box gets one even
    # when no anchor reaches the threshold; the claimed anchor's row and the box's column
    # then leave the pool (set to -1). Masks, not indexing by the images that still have a
    # box left, so no step waits for the GPU to say how many those are.
    anchor_ids = torch.arange(num_anchors, device=iou.device)
    box_ids = torch.arange(num_gt, device=iou.device)
    work = iou
    for _ in range(num_gt):
        value, flat = work.reshape(batch, -1).max(dim=1)
        hit = (value >= 0)[:, None]
        anchor, box = flat // num_gt, flat % num_gt
        claimed = (anchor_ids == anchor[:, None]) & hit  # (B, A)
        taken = (box_ids == box[:, None]) & hit  # (B, G)
        assigned = torch.where(claimed, box[:, None], assigned)
        work = work.masked_fill(claimed[:, :, None] | taken[:, None, :], -1.0)
    return assigned


def assign_anchor_to_bbox(ground_truth: torch.Tensor, anchors: torch.Tensor,
                          iou_threshold: float = 0.5) -> torch.Tensor:
    """Index of the ground-truth box (G, 4) each anchor (A, 4) is assigned to, or -1: (A,) long.

    First each box greedily takes the anchor with the largest remaining IoU (that anchor
    and that box then leave the pool), then every other anchor takes its best box when
    their IoU reaches ``iou_threshold``.
    """
    valid = torch.ones(1, ground_truth.shape[0], dtype=torch.bool, device=ground_truth.device)
    return _assign(ground_truth[None], valid, anchors.reshape(-1, 4), iou_threshold)[0]


def offset_boxes(anchors: torch.Tensor, assigned_bb: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Regression targets of corner boxes relative to their anchors (broadcast over (..., 4)).

    (10 dx / w_a, 10 dy / h_a, 5 log(eps + w / w_a), 5 log(eps + h / h_a)) in centre form:
    the scales 10 and 5 are the usual SSD variances (0.1, 0.2) that bring offsets near unit size.
    """
    a = box_corner_to_center(anchors)
    b = box_corner_to_center(assigned_bb)
    xy = 10 * (b[..., :2] - a[..., :2]) / a[..., 2:]
    wh = 5 * torch.log(eps + b[..., 2:] / a[..., 2:])
    return torch.cat((xy, wh), dim=-1)


def offset_inverse(anchors: torch.Tensor, offset_preds: torch.Tensor) -> torch.Tensor:
    """Corner boxes from anchors and predicted offsets (the inverse of ``offset_boxes``)."""
    a = box_corner_to_center(anchors)
    xy = offset_preds[..., :2] * a[..., 2:] / 10 + a[..., :2]
    wh = torch.exp(offset_preds[..., 2:] / 5) * a[..., 2:]
    return box_center_to_corner(torch.cat((xy, wh), dim=-1))


def decode_boxes(anchors: torch.Tensor, offset_preds: torch.Tensor) -> torch.Tensor:
    """Predicted corner boxes clipped to the image, before NMS as torchvision's detectors do.

    The one place detections are clipped: ``cvtool predict``, the Python API, the pictures,
    evaluation and the exported graphs all decode through here, so no box runs outside its image.
    """
    return clip_boxes_to_image(offset_inverse(anchors, offset_preds), (1, 1))


def multibox_target(anchors: torch.Tensor, labels: torch.Tensor,
                    iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training targets for anchors (1, A, 4) from labels (B, max_objects, 5).

    Label rows are [class, x1, y1, x2, y2] (normalised); padding rows have class -1.
    Returns bbox_offset (B, A*4), bbox_mask (B, A*4) (1 on anchors assigned to a box) and
    class_labels (B, A) long, where 0 is background and object class k becomes k + 1.
    """
    anchors = anchors.reshape(-1, 4)
    batch = labels.shape[0]
    classes, gt = labels[..., 0], labels[..., 1:].to(anchors.dtype)
    assigned = _assign(gt, classes >= 0, anchors, iou_threshold)  # (B, A)
    positive = assigned >= 0
    index = assigned.clamp(min=0)
    boxes = torch.gather(gt, 1, index[..., None].expand(-1, -1, 4))
    class_labels = torch.where(positive, torch.gather(classes, 1, index).long() + 1,
                               torch.zeros_like(index))
    mask = positive[..., None].expand(-1, -1, 4)
    offsets = torch.where(mask, offset_boxes(anchors[None], boxes), torch.zeros_like(boxes))
    return offsets.reshape(batch, -1), mask.reshape(batch, -1).to(offsets.dtype), class_labels


def multibox_detection(cls_probs: torch.Tensor, offset_preds: torch.Tensor, anchors: torch.Tensor,
                       nms_threshold: float = 0.5, pos_threshold: float = 0.009999999) -> torch.Tensor:
    """Decode and suppress predictions: cls_probs (B, C+1, A), offset_preds (B, A*4) -> (B, A, 6).

    Rows are [class, score, x1, y1, x2, y2] with the score of the best object class. Kept
    detections come first by descending score; the rest (suppressed by NMS, or scoring
    below ``pos_threshold``) follow with class -1. NMS runs per image and per class
    (torchvision's batched_nms), which equals the book's class-agnostic NMS for one class.
    """
    cls_probs = cls_probs.float()
    batch, num_cls, num_anchors = cls_probs.shape
    boxes = decode_boxes(anchors.reshape(1, -1, 4).float(), offset_preds.float().reshape(batch, num_anchors, 4))
    score, cls = cls_probs[:, 1:, :].max(dim=1)  # (B, A)
    b, a = (score >= pos_threshold).nonzero(as_tuple=True)
    keep = batched_nms(boxes[b, a], score[b, a], b * num_cls + cls[b, a], nms_threshold)
    kept = torch.zeros_like(score, dtype=torch.bool)
    kept[b[keep], a[keep]] = True
    # Two stable sorts, by score and then kept first: exact, where sorting score + 2 * kept
    # in float32 would merge scores within ~1e-7 of each other near 1.
    by_score = torch.sort(score, dim=1, descending=True, stable=True).indices
    kept_first = torch.sort(kept.gather(1, by_score).to(torch.uint8), dim=1, descending=True, stable=True).indices
    order = by_score.gather(1, kept_first)
    cls_out = torch.where(kept, cls, torch.full_like(cls, -1)).to(score.dtype)
    rows = torch.cat((cls_out[..., None], score[..., None], boxes), dim=-1)
    return torch.gather(rows, 1, order[..., None].expand(-1, -1, 6))
