"""AP and mAP on cases small enough to work out by hand, and the book's anchor metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cvtool.ops.boxes import multibox_detection
from cvtool.ops.detection_metrics import (
    COCO_IOU_THRESHOLDS,
    RECALL_POINTS,
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
    meter.update(torch.as_tensor(dets).reshape(-1, 4), torch.as_tensor(scores), torch.as_tensor(labels),
                 torch.as_tensor(gts).reshape(-1, 4), torch.as_tensor(gt_labels))
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


def test_thresholds_and_recall_points_are_cocoevals_numpy_values():
    assert COCO_IOU_THRESHOLDS == tuple(np.linspace(0.5, 0.95, 10).tolist())
    assert RECALL_POINTS.tolist() == np.linspace(0.0, 1.0, 101).tolist()  # torch.linspace differs at 10 points
    # this pair's IoU computes to 0.8999999999999999: a hit at COCO's 0.9 threshold, which is that number
    det = torch.tensor([[0.0, 0.0, 0.9, 0.3]], dtype=torch.float64)
    gt = torch.tensor([[0.0, 0.0, 1.0, 0.3]], dtype=torch.float64)
    hits = match_detections(det, gt, COCO_IOU_THRESHOLDS)
    assert hits[:, 0].tolist() == [True] * 9 + [False]


def test_recall_on_a_recall_point_reads_the_precision_there():
    # 10 boxes: 7 found first (recall 0.7, precision 1), then a miss, then the other 3 (precision 10/11).
    # COCO's recall point 0.7 is 0.7000000000000001, just above recall 7/10, so it reads 10/11 there;
    # recall points 0 ... 0.69 (70 of them) read 1 and 0.70 ... 1 (31) read 10/11.
    hits = torch.tensor([[True] * 7 + [False] + [True] * 3])
    scores = torch.linspace(1, 0.5, 11)
    assert average_precision(scores, hits, num_gt=10).item() == pytest.approx((70 + 31 * 10 / 11) / 101, abs=1e-15)


def test_a_detection_tied_between_two_free_boxes_takes_the_later_one():
    # the first detection overlaps both boxes with IoU 1/2; COCOeval gives it the later box, which
    # leaves the earlier one for the second detection (IoU 1 with it, 1/5 with the later box)
    gts = torch.tensor([[0.0, 0, 3, 1], [2.0, 0, 5, 1]])
    dets = torch.tensor([[1.0, 0, 4, 1], [0.0, 0, 3, 1]])
    assert match_detections(dets, gts, [0.5]).tolist() == [[True, True]]


def test_difficult_truth_is_neither_hit_nor_miss():
    hard = torch.tensor([[50.0, 50.0, 60.0, 60.0]])
    flags = torch.tensor([False, True])
    # a detection of the difficult box outranks the one of the ordinary box: were the difficult box
    # left out of the truth, that detection would be a false positive ranked first
    dets, scores, labels = torch.cat((hard, GT)), torch.tensor([0.9, 0.8]), torch.tensor([0, 0])
    assert run(dets, scores, labels, GT, [0])["map50"] == pytest.approx(0.5)
    marked = MeanAveragePrecision()
    marked.update(dets, scores, labels, torch.cat((GT, hard)), labels, gt_difficult=flags)
    assert marked.compute() == {"map": 1.0, "map50": 1.0, "map75": 1.0}
    # an unfound difficult box is no miss (an ordinary one would halve recall), and a class whose
    # only truth is difficult is left out of the mean
    assert run(GT, [0.8], [0], torch.cat((GT, hard)), [0, 0])["map50"] == pytest.approx(51 / 101)
    unfound = MeanAveragePrecision()
    unfound.update(GT, torch.tensor([0.8]), torch.tensor([0]), torch.cat((GT, hard, hard)), torch.tensor([0, 0, 1]),
                   gt_difficult=torch.tensor([False, True, True]))
    assert unfound.compute()["map"] == 1.0 and sorted(unfound.per_class()) == [0]


def test_ordinary_truth_is_preferred_to_a_difficult_one_and_each_is_taken_once():
    hard = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # the detection overlaps this difficult box exactly
    ordinary = torch.tensor([[0.0, 0.0, 10.0, 7.0]])  # ... and this one by IoU 0.7
    meter = MeanAveragePrecision(iou_thresholds=[0.5])
    meter.update(torch.cat((GT, GT)), torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), torch.cat((hard, ordinary)),
                 torch.tensor([0, 0]), gt_difficult=torch.tensor([True, False]))
    # the first takes the ordinary box (a hit), the second the difficult one (ignored): AP 1
    assert meter.compute()["map50"] == 1.0
    # as in COCOeval, a difficult box is taken once: a second detection of it is a false positive
    meter.update(torch.cat((GT, GT)), torch.tensor([0.95, 0.99]), torch.tensor([0, 0]), hard, torch.tensor([0]),
                 gt_difficult=torch.tensor([True]))
    assert meter.ignored[0][1].tolist() == [[True, False]] and meter.hits[0][1].tolist() == [[False, False]]
    assert meter.compute()["map50"] == pytest.approx(0.5)  # that false positive now ranks first


def test_multibox_detection_orders_by_exact_score():
    # three scores within 1e-7 of 1: adding 2 in float32 (to put kept rows first) would make them equal
    anchors = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7], [0.1, 0.6, 0.3, 0.8], [0.0, 0.0, 0.2, 0.21],
                            [0.8, 0.0, 1.0, 0.2]])
    score = torch.tensor([0.9999999, 0.99999994, 0.99999988, 0.9999999, 0.005])
    out = multibox_detection(torch.stack((1 - score, score))[None], torch.zeros(1, 20), anchors[None])[0]
    kept = out[:, 0] >= 0
    assert kept.tolist() == [True, True, True, False, False]  # anchor 3 is suppressed, anchor 4 below threshold
    assert out[:3, 1].tolist() == sorted(out[:3, 1].tolist(), reverse=True)
    assert out[0, 1].item() == score[1].item() and out[3:, 1].tolist() == [score[3].item(), score[4].item()]


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
