"""AP and mAP on cases small enough to work out by hand, and the book's anchor metrics."""

from __future__ import annotations

import math

import pytest
import torch

from cvtool.ops.detection_metrics import (
    COCO_IOU_THRESHOLDS,
    MeanAveragePrecision,
    average_precision,
    bbox_mae_sum,
    class_error_sum,
    match_detections,
)

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
FAR = torch.tensor([[50.0, 50.0, 60.0, 60.0]])


def run(dets, scores, labels, gts, gt_labels, **kwargs) -> dict[str, float]:
    meter = MeanAveragePrecision(**kwargs)
    meter.update(torch.tensor(dets).reshape(-1, 4), torch.tensor(scores), torch.tensor(labels),
                 torch.tensor(gts).reshape(-1, 4), torch.tensor(gt_labels))
    return meter.compute()


def test_perfect_detection_scores_one():
    assert run([[0, 0, 10, 10]], [0.9], [0], [[0, 0, 10, 10]], [0]) == {"map": 1.0, "map50": 1.0, "map75": 1.0}


def test_false_positive_ranked_first_halves_precision():
    # ranks: FP (p=0, r=0) then TP (p=1/2, r=1): the envelope is 1/2 at every recall point
    out = run([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0], [[0, 0, 10, 10]], [0])
    assert out["map50"] == pytest.approx(0.5)


def test_false_positive_ranked_last_costs_nothing():
    out = run([[50, 50, 60, 60], [0, 0, 10, 10]], [0.1, 0.8], [0, 0], [[0, 0, 10, 10]], [0])
    assert out["map50"] == pytest.approx(1.0)


def test_half_recall_uses_101_point_interpolation():
    # one of two boxes found with precision 1: recall points 0, .01, ..., .5 (51 of 101) score 1
    out = run([[0, 0, 10, 10]], [0.9], [0], [[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])
    assert out["map50"] == pytest.approx(51 / 101)


def test_duplicate_detection_is_a_false_positive():
    hits = match_detections(torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 9.5]]), GT, [0.5])
    assert hits.tolist() == [[True, False]]
    ap = average_precision(torch.tensor([0.9, 0.8]), hits, num_gt=1)
    assert ap.tolist() == [1.0]


def test_iou_thresholds_average_for_coco_map():
    # IoU 0.72: a hit at 0.5, 0.55, 0.6, 0.65, 0.7 and a miss at 0.75 ... 0.95
    out = run([[0, 0, 10, 7.2]], [0.9], [0], [[0, 0, 10, 10]], [0])
    assert out["map50"] == 1.0 and out["map75"] == 0.0
    assert out["map"] == pytest.approx(0.5)
    assert len(COCO_IOU_THRESHOLDS) == 10


def test_greedy_matching_takes_the_best_unmatched_box():
    gts = torch.tensor([[0.0, 0, 10, 10], [6.0, 0, 16, 10]])
    # the first detection overlaps box 0 by IoU 1/3 and box 1 by 9/11: it takes box 1, so the
    # second one (IoU 9/11 with box 1, 3/17 with box 0) is left without a box at threshold 0.3
    dets = torch.tensor([[5.0, 0, 15, 10], [7.0, 0, 17, 10]])
    assert match_detections(dets, gts, [0.3]).tolist() == [[True, False]]
    assert match_detections(dets, gts, [0.1]).tolist() == [[True, True]]
    assert match_detections(dets, gts, [0.5, 0.9]).tolist() == [[True, False], [False, False]]


def test_mean_over_classes_skips_classes_without_ground_truth():
    meter = MeanAveragePrecision()
    # class 0 found perfectly, class 1 missed (AP 0), class 2 only has a false detection
    meter.update(torch.cat((GT, FAR, GT)), torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 2]),
                 torch.cat((GT, GT)), torch.tensor([0, 1]))
    out = meter.compute()
    assert out["map50"] == pytest.approx(0.5)
    assert sorted(meter.per_class()) == [0, 1]


def test_accumulates_over_images_with_max_detections():
    meter = MeanAveragePrecision(max_detections=1)
    # image 1: a miss outscores the hit, and max_detections=1 drops the hit
    meter.update(torch.cat((FAR, GT)), torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), GT, torch.tensor([0]))
    meter.update(GT, torch.tensor([0.5]), torch.tensor([0]), GT, torch.tensor([0]))
    # ranked: FP(0.9), TP(0.5) over 2 boxes -> recall 0.5 at precision 0.5
    assert meter.compute()["map50"] == pytest.approx(0.5 * 51 / 101)


def test_no_ground_truth_anywhere_gives_nan():
    out = run([[0, 0, 10, 10]], [0.9], [0], [], [])
    assert math.isnan(out["map50"])


def test_book_anchor_metrics():
    cls_preds = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]])  # argmax 0, 1, 0
    wrong, count = class_error_sum(cls_preds, torch.tensor([[0, 1, 1]]))
    assert (int(wrong), count) == (1, 3)
    preds, labels = torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[1.5, 2.0, 0.0, 0.0]])
    err, n = bbox_mae_sum(preds, labels, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    assert (float(err), n) == (0.5, 4)
