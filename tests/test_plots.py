"""curves.png: one panel per metric family, log scale where a loss spans a decade, best epoch marked."""

from __future__ import annotations

from PIL import Image

from cvtool.engine import plots

SSD = {"epoch": 1, "train_loss": 1.0, "train_class_err": 0.05, "train_bbox_mae": 0.007, "val_loss": 30.0,
       "val_class_err": 0.04, "val_bbox_mae": 0.003, "val_map50": 0.9, "val_map": 0.5, "lr": 0.2,
       "epoch_seconds": 3.0, "images_per_second": 100.0}


def test_metrics_are_grouped_by_scale_and_per_class_figures_left_out():
    rows = [SSD, {**SSD, "epoch": 2, "val_iou/cat": 0.4}]
    assert plots.groups(rows) == {"loss": ["train_loss", "val_loss"],
                                  "error": ["train_class_err", "train_bbox_mae", "val_class_err", "val_bbox_mae"],
                                  "score": ["val_map50", "val_map"]}
    assert plots.groups([{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}]) == {"loss": ["train_loss"],
                                                                               "score": ["val_acc"]}


def test_log_scale_only_when_positive_values_span_a_decade():
    assert plots.spans_a_decade([30.0, 0.5, 0.2])
    assert not plots.spans_a_decade([0.9, 0.5])
    assert not plots.spans_a_decade([3.0, 0.0])  # a zero cannot go on a log axis
    assert not plots.spans_a_decade([30.0])


def test_one_epoch_and_a_hundred_draw_a_panel_per_family(tmp_path):
    one = plots.curves([SSD], tmp_path / "one.png", best={"metric": "val_map50", "epoch": 1, "value": 0.9})
    many = plots.curves([{**SSD, "epoch": e, "val_loss": 30.0 / e} for e in range(1, 101)], tmp_path / "many.png",
                        best={"metric": "val_map50", "epoch": 97, "value": 0.9})
    two = plots.curves([{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}], tmp_path / "two.png")
    for path in (one, many):
        assert Image.open(path).size == Image.open(one).size  # three panels
    assert Image.open(two).size[0] < Image.open(one).size[0]
