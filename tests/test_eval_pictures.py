"""confusion_matrix.png and pr_curves.png: written by `cvtool eval` and at the end of training, with
the same numbers in the JSON; the numbers checked against the metrics, the pictures for their size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cvtool.data import bananas, voc
from cvtool.engine import eval_plots, eval_report
from cvtool.ops.detection_metrics import MeanAveragePrecision

pytestmark = pytest.mark.usefixtures("one_thread")

COMMON = ["--set", "data.num_workers=0", "--device", "cpu", "--epochs", "1", "--out", "run", "--json"]


def run(cli, *args: str) -> dict:
    code, out, err = cli(*args)
    assert code == 0, err
    return json.loads(out)


def png_size(path: str | Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_classifier_training_and_eval_write_the_confusion_matrix(cli, tiny_hotdog, tmp_path):
    run(cli, "finetune-hotdog", *tiny_hotdog, *COMMON)
    summary = json.loads(Path("run/summary.json").read_text())
    assert Path(summary["paths"]["confusion_matrix"]).resolve() == Path("run/confusion_matrix.png").resolve()
    trained = json.loads(Path(summary["paths"]["confusion_matrix_json"]).read_text())
    result = run(cli, "eval", "--checkpoint", "run/checkpoints/best.pt", "--out", str(tmp_path), "--counts", "--json")
    assert result["pictures"]["confusion_matrix"] == str(tmp_path / "confusion_matrix.png")
    assert result["classes"] == ["hotdog", "not-hotdog"]
    counts = torch.tensor(result["confusion_counts"])
    assert counts.sum() == result["items"] == 6
    assert counts.diagonal().sum() / counts.sum() == pytest.approx(result["metrics"]["val_acc"])
    for row, n in zip(result["confusion_matrix"], counts.sum(1).tolist()):
        assert sum(row) == pytest.approx(1.0 if n else 0.0)
    recall = {name: c["recall"] for name, c in result["per_class"].items()}
    assert recall == pytest.approx({name: row[i] for i, (name, row) in
                                    enumerate(zip(result["classes"], result["confusion_matrix"]))})
    assert trained["confusion_counts"] == result["confusion_counts"]  # best.pt is the best epoch's model
    width, height = png_size(tmp_path / "confusion_matrix.png")
    assert 300 < width < 900 and 300 < height < 900


def test_segmenter_eval_writes_a_pixel_confusion_matrix(cli, tmp_path):
    root = voc.synthesize(tmp_path / "VOCdevkit", n_train=4, n_val=2, size=48, classes=3)
    run(cli, "train-fcn", "--set", f"data.root={root}", "--set", "data.crop_size=[32, 48]", "--set",
        "model.weights=null", "--set", "model.width=8", "--set", "model.num_classes=4", "--set",
        "data.batch_size=2", *COMMON)
    assert Path("run/confusion_matrix.png").is_file()
    result = run(cli, "eval", "--checkpoint", "run/checkpoints/best.pt", "--json")
    assert Path(result["pictures"]["confusion_matrix"]) == Path("run/confusion_matrix.png")
    counts = torch.tensor(result["confusion_counts"], dtype=torch.float64)
    assert counts.shape == (4, 4)
    assert counts.diagonal().sum() / counts.sum() == pytest.approx(result["metrics"]["val_pixel_acc"])


def test_detector_eval_writes_pr_curves_whose_ap_is_the_metric(cli, tmp_path):
    root = bananas.synthesize(tmp_path / "bananas", n_train=8, n_val=4, size=64, seed=3)
    run(cli, "train-ssd", "--set", f"data.root={root}", "--set", "data.image_size=64", "--set",
        "data.batch_size=8", "--set", "model.width=0.25", *COMMON)
    summary = json.loads(Path("run/summary.json").read_text())
    assert Path(summary["paths"]["pr_curves"]).name == "pr_curves.png"
    result = run(cli, "eval", "--checkpoint", "run/checkpoints/best.pt", "--json")
    curves = result["pr_curves"]
    assert list(curves["per_class"]) == ["banana"] and curves["iou"] == 0.5
    banana = curves["per_class"]["banana"]
    assert len(banana["precision"]) == len(curves["recall_points"]) == 101
    assert sum(banana["precision"]) / 101 == pytest.approx(banana["ap50"])
    assert banana["ap50"] == pytest.approx(result["metrics"]["val_map50"])
    assert png_size(result["pictures"]["pr_curves"])[1] == 500


def test_curve_mean_is_each_class_ap_at_05():
    torch.manual_seed(0)
    meter = MeanAveragePrecision()
    for _ in range(6):
        truth = torch.rand(4, 2) * 50
        gt = torch.cat((truth, truth + 10 + torch.rand(4, 2) * 20), 1)
        det = gt[:3] + torch.randn(3, 4) * 4
        meter.update(det, torch.rand(3), torch.tensor([0, 1, 2]), gt, torch.tensor([0, 1, 2, 2]))
    table, curves = meter.per_class(), meter.curves(0.5)
    assert set(curves) == set(table) == {0, 1, 2}
    for c, curve in curves.items():
        assert curve["ap"] == pytest.approx(float(table[c][0]))
        assert bool((curve["precision"][:-1] >= curve["precision"][1:]).all())  # the envelope never rises
    with pytest.raises(ValueError):
        meter.curves(0.42)


def confusion_for(classes: int) -> torch.Tensor:
    """Mostly right; every class but the first confuses some items with its neighbour, the odd ones more."""
    counts = torch.eye(classes, dtype=torch.long) * 20
    for i in range(1, classes):
        counts[i, i - 1] = 1 + 5 * (i % 2) + (i % 7)
    return counts


@pytest.mark.parametrize("classes", [2, 120])
def test_confusion_numbers_and_picture_for_2_and_120_classes(tmp_path, classes):
    counts = confusion_for(classes)
    with eval_report.collecting() as held:
        eval_report.record("confusion", counts)
    names = [f"breed_{i}" for i in range(classes - 1)]  # one name short: the last is its index
    numbers, files = eval_report.write(held, names, tmp_path)
    assert numbers["classes"][-1] == str(classes - 1) and len(numbers["confusion_matrix"]) == classes
    assert all(sum(row) == pytest.approx(1.0) for row in numbers["confusion_matrix"])
    assert numbers["per_class"]["breed_0"] == {"precision": pytest.approx(20 / (20 + counts[1, 0].item())),
                                               "recall": 1.0, "support": 20}
    assert json.loads(Path(files["confusion_matrix_json"]).read_text())["confusion_counts"] == counts.tolist()
    width, height = png_size(files["confusion_matrix"])
    assert height < 1600 and width < 2200  # 120 classes: the largest confusions only, not a 120-wide grid
    if classes > eval_plots.FULL_UP_TO:
        top = eval_plots.largest_confusions(numbers["confusion_matrix"], numbers["confusion_counts"], 3)
        assert [counts[i, j].item() for i, j in top] == [12, 12, 12]


def test_a_perfect_120_class_matrix_is_drawn_too(tmp_path):
    with eval_report.collecting() as held:
        eval_report.record("confusion", torch.eye(120, dtype=torch.long) * 3)
    numbers, files = eval_report.write(held, None, tmp_path)
    assert numbers["per_class"]["119"] == {"precision": 1.0, "recall": 1.0, "support": 3}
    assert png_size(files["confusion_matrix"])[0] > 0


def test_nothing_collected_writes_nothing(tmp_path):
    with eval_report.collecting() as held:
        pass
    eval_report.record("confusion", torch.eye(2))  # outside: dropped
    assert eval_report.write(held, None, tmp_path) == ({}, {}) and not list(tmp_path.iterdir())
