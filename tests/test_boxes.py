"""Box operations against the book's worked examples and their invariants."""

from __future__ import annotations

import math

import pytest
import torch

from cvtool.models.tinyssd import TinySSD
from cvtool.ops.boxes import (
    assign_anchor_to_bbox,
    box_center_to_corner,
    box_corner_to_center,
    box_iou,
    multibox_detection,
    multibox_prior,
    multibox_target,
    offset_boxes,
    offset_inverse,
)

GROUND_TRUTH = torch.tensor([[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]])
ANCHORS = torch.tensor([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                        [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]])


def random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 0.7
    wh = torch.rand(n, 2, generator=g) * 0.3 + 0.02
    return torch.cat((xy, xy + wh), dim=1)


def test_corner_center_round_trip():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 1.0, 2.0]])
    center = box_corner_to_center(boxes)
    assert center.tolist() == [[30.0, 60.0, 40.0, 80.0], [0.5, 1.0, 1.0, 2.0]]
    assert torch.equal(box_center_to_corner(center), boxes)


def test_multibox_prior_order_and_shape():
    sizes, ratios = [0.75, 0.5, 0.25], [1, 2, 0.5]
    anchors = multibox_prior(torch.zeros(1, 3, 4, 5), sizes, ratios)
    assert anchors.shape == (1, 4 * 5 * 5, 4)
    per_pixel = anchors.reshape(4, 5, 5, 4)
    # pixel (row 1, col 2): centre ((2 + .5) / 5, (1 + .5) / 4); H / W = 4 / 5 scales widths
    cx, cy = 0.5, 0.375
    expected = []
    for s, r in [(0.75, 1), (0.5, 1), (0.25, 1), (0.75, 2), (0.75, 0.5)]:
        w, h = s * math.sqrt(r) * 4 / 5, s / math.sqrt(r)
        expected.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    assert torch.allclose(per_pixel[1, 2], torch.tensor(expected), atol=1e-6)


def test_tinyssd_makes_5444_anchors_for_256_pixels():
    model = TinySSD(num_classes=1, width=0.25)
    anchors = model.anchors_for(256, 256)
    assert anchors.shape == (1, 5444, 4)
    assert model.feature_sizes(256, 256) == [(32, 32), (16, 16), (8, 8), (4, 4), (1, 1)]
    model.eval()
    with torch.no_grad():
        out_anchors, cls, bbox = model(torch.zeros(2, 3, 256, 256))
    assert torch.equal(out_anchors, anchors)
    assert cls.shape == (2, 5444, 2) and bbox.shape == (2, 5444 * 4)


def test_box_iou_values_and_symmetry():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 4.0, 5.0, 5.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 0.0], [1.0, 0.0]]))
    x, y = random_boxes(7, 1), random_boxes(5, 2)
    assert torch.allclose(box_iou(x, y), box_iou(y, x).T)


def test_book_worked_example_targets():
    offsets, mask, classes = multibox_target(ANCHORS[None], GROUND_TRUTH[None])
    assert classes.tolist() == [[0, 1, 2, 0, 2]]
    assert mask.tolist() == [[0.0] * 4 + [1.0] * 8 + [0.0] * 4 + [1.0] * 4]
    expected = torch.tensor([0, 0, 0, 0, 1.4, 10, 2.5940, 7.1754, -1.2, 0.26882, 1.6824, -1.5655,
                             0, 0, 0, 0, -0.57143, -1.0, 4.1723e-06, 0.62582])
    assert torch.allclose(offsets[0], expected, atol=1e-4)
    assert assign_anchor_to_bbox(GROUND_TRUTH[:, 1:], ANCHORS).tolist() == [-1, 0, 1, -1, 1]


def test_greedy_assignment_gives_every_box_an_anchor_below_threshold():
    # The box's best IoU is only 0.13 (anchor 1): the threshold alone would leave it unmatched.
    gt = torch.tensor([[0.0, 0.0, 0.3, 0.3]])
    anchors = torch.tensor([[0.5, 0.5, 0.9, 0.9], [0.1, 0.1, 0.6, 0.6], [0.0, 0.0, 0.1, 0.1]])
    assert assign_anchor_to_bbox(gt, anchors).tolist() == [-1, 0, -1]
    assert assign_anchor_to_bbox(gt, anchors, iou_threshold=0.1).tolist() == [-1, 0, 0]


def test_batched_targets_equal_per_image_targets_with_padding():
    anchors = multibox_prior(torch.zeros(1, 1, 4, 4), [0.3, 0.2], [1, 2, 0.5])
    first = torch.tensor([[0, 0.1, 0.1, 0.4, 0.5], [2, 0.5, 0.5, 0.9, 0.8], [-1, 0, 0, 0, 0]])
    second = torch.tensor([[1, 0.2, 0.6, 0.5, 0.95], [-1, 0, 0, 0, 0], [-1, 0, 0, 0, 0]])
    batched = multibox_target(anchors, torch.stack((first, second)))
    for i, labels in enumerate((first[:2], second[:1])):
        single = multibox_target(anchors, labels[None])
        for got, want in zip(batched, single):
            assert torch.equal(got[i], want[0])
    assert set(batched[2][1].unique().tolist()) == {0, 2}
    assert torch.isfinite(batched[0]).all()


def test_offset_round_trip():
    anchors, boxes = random_boxes(50, 3), random_boxes(50, 4)
    restored = offset_inverse(anchors, offset_boxes(anchors, boxes))
    assert torch.allclose(restored, boxes, atol=1e-5)


def test_book_worked_example_detection():
    anchors = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95],
                            [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]])
    cls_probs = torch.tensor([[0.0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])
    out = multibox_detection(cls_probs[None], torch.zeros(1, 16), anchors[None], nms_threshold=0.5)
    expected = torch.tensor([[0, 0.9, 0.1, 0.08, 0.52, 0.92], [1, 0.9, 0.55, 0.2, 0.9, 0.88],
                             [-1, 0.8, 0.08, 0.2, 0.56, 0.95], [-1, 0.7, 0.15, 0.3, 0.62, 0.91]])
    assert torch.allclose(out[0], expected)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_keeps_nothing_overlapping_above_threshold(threshold):
    g = torch.Generator().manual_seed(5)
    anchors = random_boxes(200, 6)[None]
    probs = torch.rand(2, 2, 200, generator=g).softmax(dim=1)
    offsets = torch.randn(2, 800, generator=g) * 0.5
    out = multibox_detection(probs, offsets, anchors, nms_threshold=threshold, pos_threshold=0.3)
    for image, p in zip(out, probs):
        kept = image[image[:, 0] >= 0]
        assert len(kept) > 1
        iou = box_iou(kept[:, 2:], kept[:, 2:]).fill_diagonal_(0)
        assert iou.max() <= threshold
        assert (kept[:, 1] >= 0.3).all()
        assert torch.equal(kept[:, 1], kept[:, 1].sort(descending=True).values)
        n = len(kept)
        assert (image[n:, 0] == -1).all()  # kept rows first, then the rest
        assert torch.allclose(image[:, 1].sort().values, p[1].sort().values)


def greedy_by_indexing(ground_truth, valid, anchors, iou_threshold):
    """The assignment as it was written first (boolean indexing, a host check per box): the reference."""
    batch, num_gt = valid.shape
    num_anchors = anchors.shape[0]
    iou = box_iou(anchors, ground_truth.reshape(-1, 4)).reshape(num_anchors, batch, num_gt)
    iou = iou.permute(1, 0, 2).masked_fill(~valid[:, None, :], -1.0)
    best_iou, best_gt = iou.max(dim=2)
    assigned = torch.where(best_iou >= iou_threshold, best_gt, torch.full_like(best_gt, -1))
    rows = torch.arange(batch)
    work = iou.clone()
    for _ in range(num_gt):
        value, flat = work.reshape(batch, -1).max(dim=1)
        hit = value >= 0
        if not bool(hit.any()):
            break
        b, flat = rows[hit], flat[hit]
        anchor, box = flat // num_gt, flat % num_gt
        assigned[b, anchor] = box
        work[b, anchor, :] = -1.0
        work[b, :, box] = -1.0
    return assigned


def random_labels(gen: torch.Generator, batch: int, max_objects: int) -> torch.Tensor:
    """(batch, max_objects, 5) labels with a random number of real boxes per image, padding last."""
    xy = torch.rand(batch, max_objects, 2, generator=gen) * 0.7
    wh = torch.rand(batch, max_objects, 2, generator=gen) * 0.5 + 0.05
    classes = torch.randint(0, 3, (batch, max_objects, 1), generator=gen).float()
    count = torch.randint(0, max_objects + 1, (batch, 1), generator=gen)
    classes[torch.arange(max_objects)[None, :] >= count] = -1
    return torch.cat((classes, xy, (xy + wh).clamp(max=1)), dim=-1)


@pytest.mark.parametrize("seed", range(6))
def test_targets_equal_the_indexing_reference_on_random_batches(seed):
    from cvtool.ops.boxes import _assign

    gen = torch.Generator().manual_seed(seed)
    anchors = TinySSD(1, 0.25).anchors_for(64, 64).reshape(-1, 4)
    labels = random_labels(gen, batch=5, max_objects=[1, 3, 6][seed % 3])
    gt, valid = labels[..., 1:], labels[..., 0] >= 0
    for threshold in (0.3, 0.5, 0.9):
        expected = greedy_by_indexing(gt, valid, anchors, threshold)
        assert torch.equal(_assign(gt, valid, anchors, threshold), expected)
    expected = greedy_by_indexing(gt, valid, anchors, 0.5)
    offsets, mask, classes = multibox_target(anchors[None], labels, iou_threshold=0.5)
    assert torch.equal(classes, torch.where(expected >= 0, labels[..., 0].gather(1, expected.clamp(min=0)).long() + 1,
                                            torch.zeros_like(expected)))
    assert mask.sum() == 4 * (expected >= 0).sum() and torch.isfinite(offsets).all()


def test_targets_need_no_value_on_the_host():
    """On the meta device any host read (bool(), .item(), boolean indexing) fails: a CPU stand-in
    for torch.cuda.set_sync_debug_mode("error") on the per-step target computation."""
    anchors = TinySSD(1, 0.25).anchors_for(64, 64).to("meta")
    labels = random_labels(torch.Generator().manual_seed(0), batch=4, max_objects=3).to("meta")
    offsets, mask, classes = multibox_target(anchors, labels)
    assert offsets.shape == mask.shape == (4, anchors.shape[1] * 4) and classes.shape == (4, anchors.shape[1])
