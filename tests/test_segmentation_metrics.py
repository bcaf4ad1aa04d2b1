from __future__ import annotations

import math

import pytest
import torch

from cvtool.ops.segmentation_metrics import ConfusionMatrix, background_only_miou, confusion_matrix, scores


def test_confusion_matrix_counts_truth_rows_prediction_columns_and_skips_void():
    target = torch.tensor([[0, 0, 1, 1], [2, 255, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 2]])
    expected = torch.tensor([[1, 1, 0],
                             [0, 2, 1],
                             [1, 0, 0]])
    assert torch.equal(confusion_matrix(pred, target, 3), expected)


def test_scores_of_a_hand_made_matrix():
    m = torch.tensor([[50, 5, 5, 0],
                      [10, 20, 0, 0],
                      [0, 0, 0, 0],    # class 2 never in the truth, but predicted 5 times
                      [0, 0, 0, 0]])   # class 3 absent everywhere
    s = scores(m)
    assert s.pixel_acc == pytest.approx(70 / 90)
    # class accuracy: 50/60, 20/30; classes 2 and 3 have no truth pixels -> NaN, skipped
    assert s.class_acc[:2] == pytest.approx([50 / 60, 20 / 30])
    assert math.isnan(s.class_acc[2]) and math.isnan(s.class_acc[3])
    assert s.mean_class_acc == pytest.approx((50 / 60 + 20 / 30) / 2)
    # IoU = hits / (truth + predicted - hits): 50/(60+60-50), 20/(30+25-20), 0/(0+5-0)
    assert s.iou[:3] == pytest.approx([50 / 70, 20 / 35, 0.0])
    assert math.isnan(s.iou[3])
    assert s.miou == pytest.approx((50 / 70 + 20 / 35 + 0.0) / 3)


def test_void_pixels_change_no_score():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (2, 16, 16), generator=gen)
    pred = torch.randint(0, 5, (2, 16, 16), generator=gen)
    padded_target = torch.full((2, 20, 24), 255)
    padded_target[:, :16, :16] = target
    padded_pred = torch.randint(0, 5, (2, 20, 24), generator=gen)  # anything under void
    padded_pred[:, :16, :16] = pred
    assert torch.equal(confusion_matrix(padded_pred, padded_target, 5), confusion_matrix(pred, target, 5))
    assert scores(confusion_matrix(padded_pred, padded_target, 5)) == scores(confusion_matrix(pred, target, 5))


def test_accumulated_matrix_equals_one_matrix_over_everything():
    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (6, 8, 8), generator=gen)
    target[0, :2] = 255
    pred = torch.randint(0, 4, (6, 8, 8), generator=gen)
    acc = ConfusionMatrix(4)
    for k in range(0, 6, 2):
        acc.update(pred[k:k + 2], target[k:k + 2])
    assert torch.equal(acc.matrix, confusion_matrix(pred, target, 4))
    assert acc.scores() == scores(confusion_matrix(pred, target, 4))


def test_background_only_miou_is_the_score_of_predicting_background():
    target = torch.tensor([[0, 0, 0, 1], [2, 2, 255, 0]])
    matrix = confusion_matrix(torch.zeros_like(target), target, 4)
    assert background_only_miou(confusion_matrix(target.clamp(max=3), target, 4)) == pytest.approx(scores(matrix).miou)
    assert scores(matrix).miou == pytest.approx((4 / 7) / 3)


@pytest.mark.parametrize("bad", [3, 5, -1])
def test_prediction_outside_the_classes_raises_instead_of_miscounting(bad):
    # counted, a prediction `bad` for a pixel of class 1 would land in cell 1 * 3 + bad of the
    # flattened matrix: (2, 0), (2, 2) and (0, 2), all of them real cells
    target = torch.tensor([[0, 1], [2, 255]])
    pred = torch.tensor([[0, bad], [2, 0]])
    with pytest.raises(ValueError, match=f"prediction class {bad} is outside 0..2"):
        confusion_matrix(pred, target, 3)
    meter = ConfusionMatrix(3)
    meter.update(pred, target)  # no check here: it would wait for the GPU at every batch
    with pytest.raises(ValueError, match=f"prediction class {bad} is outside 0..2"):
        meter.scores()
    with pytest.raises(ValueError):
        meter.matrix
    assert int(meter.counts.sum()) == 2 and int(meter.counts[1].sum()) == 0  # the bad pixel landed nowhere


def test_updates_never_read_the_device():
    """Meta tensors hold no data, so any host read (``.item()``, ``bool``, bincount's max) fails on them."""
    meter = ConfusionMatrix(21, device="meta")
    for _ in range(2):
        meter.update(torch.empty(2, 8, 8, dtype=torch.long, device="meta"),
                     torch.empty(2, 8, 8, dtype=torch.uint8, device="meta"))
    assert meter.counts.shape == (21, 21)
