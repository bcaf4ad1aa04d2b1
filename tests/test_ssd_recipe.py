"""train-ssd's recipe options (issue 27): anchor sizes, the loss's normalisation, hard-negative
mining, focal loss, the positive IoU; configs/ssd-fast.yaml on tiny synthetic bananas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cvtool import config as c
from cvtool.data.bananas import synthesize
from cvtool.ops.boxes import multibox_target
from cvtool.tasks import ssd

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
pytestmark = pytest.mark.usefixtures("one_thread")


def case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cls_preds = torch.randn(3, 50, 2, generator=g)
    bbox_preds = torch.randn(3, 200, generator=g)
    labels = torch.zeros(3, 50, dtype=torch.long)
    labels[0, [3, 7]] = 1
    labels[1, 10] = 1
    labels[2, [1, 2, 3]] = 1
    masks = (labels > 0).repeat_interleave(4, dim=1).float()
    offsets = torch.randn(3, 200, generator=g) * masks
    return cls_preds, labels, bbox_preds, offsets, masks


def test_the_default_loss_is_the_books():
    args = case()
    book = ssd.ssd_loss(*args).mean()
    torch.testing.assert_close(ssd.recipe_loss(*args, ssd.Loss()), book)
    torch.testing.assert_close(ssd.recipe_loss(*args, ssd.Loss(box_weight=1.0000001)), book)


def test_positives_normalisation_divides_the_sums_by_the_positive_anchors():
    cls_preds, labels, bbox_preds, offsets, masks = case()
    ce = F.cross_entropy(cls_preds.reshape(-1, 2), labels.reshape(-1), reduction="sum")
    l1 = ((bbox_preds - offsets) * masks).abs().sum()
    got = ssd.recipe_loss(cls_preds, labels, bbox_preds, offsets, masks, ssd.Loss(normalize="positives", box_weight=2))
    torch.testing.assert_close(got, (ce + 2 * l1) / 6)


def test_hard_negative_mining_keeps_the_worst_negatives_per_positive():
    cls_preds, labels, bbox_preds, offsets, masks = case()
    loss = ssd.Loss(normalize="positives", neg_ratio=2, box_weight=0)
    ce = F.cross_entropy(cls_preds.reshape(-1, 2), labels.reshape(-1), reduction="none").reshape(3, 50)
    expected = 0.0
    for row, lab in zip(ce, labels):
        pos = lab > 0
        expected += row[pos].sum() + row[~pos].sort(descending=True).values[:2 * int(pos.sum())].sum()
    torch.testing.assert_close(ssd.recipe_loss(cls_preds, labels, bbox_preds, offsets, masks, loss), expected / 6)


def test_focal_loss_weights_each_anchor_by_its_error():
    cls_preds, labels, bbox_preds, offsets, masks = case()
    p = F.softmax(cls_preds, dim=2).gather(2, labels[..., None])[..., 0]
    focal = (-(1 - p) ** 2 * p.log()).sum() / 6
    got = ssd.recipe_loss(cls_preds, labels, bbox_preds, offsets, masks,
                          ssd.Loss(normalize="positives", focal_gamma=2, box_weight=0))
    torch.testing.assert_close(got, focal)


def test_anchor_sizes_and_the_positive_iou_reach_the_model_and_the_targets():
    cfg = c.load(ssd.Config, CONFIGS / "ssd-fast.yaml")
    model = ssd.build_model(cfg)
    anchors = model.anchors_for(128, 128).reshape(-1, 4)
    assert anchors.shape[0] == 4 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1)
    assert (anchors[0, 2] - anchors[0, 0]).item() == pytest.approx(cfg.model.anchor_sizes[0][0])
    box = torch.tensor([[[0, 0.30, 0.30, 0.40, 0.42]]])
    loose = multibox_target(anchors[None], box, 0.3)[2]
    strict = multibox_target(anchors[None], box, 0.5)[2]
    assert loose.sum() > strict.sum() >= 1
    with pytest.raises(c.ConfigError, match="model.anchor_sizes"):
        ssd.build_model(c.load(ssd.Config, None, ["model.anchor_sizes=[[0.1], [0.2, 0.3], [0.4], [0.5], [0.6]]"]))


def test_the_fast_recipe_trains_on_tiny_synthetic_bananas(cli, tmp_path):
    root = synthesize(tmp_path / "bananas", n_train=32, n_val=4, size=64, seed=3)
    code, out, err = cli("train-ssd", "--config", CONFIGS / "ssd-fast.yaml", "--set", f"data.root={root}",
                         "--set", "data.image_size=64", "--set", "train.max_steps=2", "--epochs", "1",
                         "--device", "cpu", "--out", tmp_path / "run", "--json")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "completed" and 0 <= result["final"]["val_map50"] <= 1
