"""train-rcnn: the task's step, mAP (VOC difficult ignored), predict, checkpoints and eval; data.format for both detectors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import default_collate

from conftest import overfit

from cvtool import config as cfglib
from cvtool.data.bananas import synthesize
from cvtool.data.voc_detection_synth import synthesize_voc_detection
from cvtool.engine import checkpoint
from cvtool.errors import InputError
from cvtool.tasks import rcnn, ssd

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
# Small sampling budgets keep a CPU step short; the architecture is torchvision's.
LIGHT = {"model.rpn_proposals": 60, "model.rpn_proposals_test": 30, "model.box_batch_size_per_image": 16}
VOC_CLASSES = "[aeroplane,bicycle,bird]"


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("rcnn-data")
    return {"bananas": synthesize(base / "banana-detection", n_train=8, n_val=4, size=64, seed=3),
            "voc": synthesize_voc_detection(base / "VOCdevkit", n_train=6, n_val=3, size=64, classes=3, seed=1)}


def tiny(root: Path, task=rcnn, **sets) -> object:
    items = {"data.root": str(root), "data.download": False, "data.image_size": 64, "data.batch_size": 4,
             "data.num_workers": 0, **sets}
    if task is rcnn:
        items = {"model.weights": "none", **LIGHT, **items}
    else:
        items = {"model.width": 0.25, **items}
    return cfglib.load(task.Config, None, [f"{k}={v}" for k, v in items.items()])


def test_a_few_steps_overfit_one_batch_through_the_task(roots):
    torch.manual_seed(0)
    task = rcnn.build(tiny(roots["bananas"]))
    assert task.columns == rcnn.COLUMNS and task.best_metric == "val_map50"
    batch = default_collate([task.train_data[i] for i in range(2)])
    losses, out = overfit(task, batch, steps=12, lr=2e-4)
    assert out.count == 2 and set(out.stats) == set(rcnn.LOSSES)
    assert out.loss.item() == pytest.approx(sum(v.item() for v, _ in out.stats.values()) / 2, rel=1e-5)
    assert sum(losses[-3:]) / 3 < 0.75 * sum(losses[:2]) / 2, losses


class Fixed(nn.Module):
    """Stands in for Faster R-CNN in eval mode: the same detections (torchvision's labels, k + 1) for every image."""

    def __init__(self, boxes: list[list[float]], scores: list[float], labels: list[int]):
        super().__init__()
        self.out = {"boxes": torch.tensor(boxes), "scores": torch.tensor(scores), "labels": torch.tensor(labels)}

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [dict(self.out) for _ in images]


def test_map_ignores_difficult_boxes_as_voc_does(roots):
    """One image, class 0: A (normal) at 8..24 and B (difficult) at 40..56, in 64-pixel coordinates.

    Detections, best first: B exactly (0.95), a miss (0.9), A exactly (0.8). B's match is
    neither a hit nor a miss, so the ranking is [miss, hit] over one true box: precision
    1/2 at recall 1, AP = 0.5 at every IoU threshold. Counted as a plain box it would be
    [hit, miss, hit] over two: (51 x 1 + 50 x 2/3) / 101 = 0.835.
    """
    task = rcnn.build(tiny(roots["voc"], **{"data.classes": VOC_CLASSES, "model.num_classes": 3}))
    batch = {"image": torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
             "labels": torch.tensor([[[0, 8, 8, 24, 24], [0, 40, 40, 56, 56], [-1, 0, 0, 0, 0]]]) / torch.tensor(
                 [1, 64, 64, 64, 64]),
             "difficult": torch.tensor([[False, True, False]])}
    model = Fixed([[40, 40, 56, 56], [0, 30, 20, 50], [8, 8, 24, 24]], [0.95, 0.9, 0.8], [1, 1, 1])
    metrics = task.evaluate(model, [batch], torch.device("cpu"))
    assert metrics == {"val_map50": pytest.approx(0.5), "val_map": pytest.approx(0.5),
                       "val_ap50/aeroplane": pytest.approx(0.5)}
    plain = task.evaluate(model, [{**batch, "difficult": torch.zeros(1, 3, dtype=torch.bool)}], torch.device("cpu"))
    assert plain["val_map50"] == pytest.approx((51 + 50 * 2 / 3) / 101)


@pytest.mark.parametrize("task", [rcnn, ssd], ids=["rcnn", "ssd"])
def test_format_auto_reads_both_layouts(roots, task):
    banana = task.build(tiny(roots["bananas"], task))
    assert banana.metadata["format"] == "bananas" and len(banana.train_data) == 8
    voc = task.build(tiny(roots["voc"], task, **{"data.classes": VOC_CLASSES, "model.num_classes": 3}))
    assert voc.metadata["format"] == "voc" and len(voc.val_data) == 3
    item = voc.val_data[0]
    assert item["image"].shape == (3, 64, 64) and item["difficult"].dtype == torch.bool
    assert set(item["labels"][:, 0].tolist()) <= {-1.0, 0.0, 1.0, 2.0}
    found = task.build(tiny(roots["voc"], task)).metadata["classes"]  # data.classes: auto, the XML's names
    assert found == sorted(found) and set(found) <= set(VOC_CLASSES.strip("[]").split(","))
    with pytest.raises(InputError, match="data.classes disagrees with .*: the XML names .* which it lacks"):
        task.build(tiny(roots["voc"], task, **{"data.classes": ["banana"], "model.num_classes": 1}))
    with pytest.raises(InputError, match="bananas_train"):
        task.build(tiny(roots["voc"], task, **{"data.format": "bananas"}))


def test_predict_draws_boxes_in_the_images_own_pixels(roots, tmp_path):
    cfg = tiny(roots["bananas"], **{"detect.min_score": 0.0})
    torch.manual_seed(0)
    model = rcnn.build_model(cfg).eval()
    photo = tmp_path / "photo.jpg"
    Image.open(roots["bananas"] / "bananas_val" / "images" / "0.png").resize((128, 96)).save(photo)
    results = rcnn.predict(model, cfg, {"classes": ["banana"], "image_size": 64}, [photo], torch.device("cpu"),
                           {"threshold": 0.0, "out": tmp_path / "drawn"})
    boxes = results[0]["boxes"]
    assert boxes and all(b["class"] == "banana" and 0 <= b["score"] <= 1 for b in boxes)
    assert max(b["box"][2] for b in boxes) > 64  # pixels of the 128x96 original
    assert all(0 <= b["box"][0] < b["box"][2] <= 128 and 0 <= b["box"][1] < b["box"][3] <= 96 for b in boxes)
    drawn = Image.open(results[0]["drawn"]).convert("RGB")
    assert drawn.size[1] == 256 and abs(drawn.size[0] - 128 * 256 / 96) <= 1  # drawn at a readable scale, shape kept
    assert (torch.from_numpy(np.asarray(drawn)) == torch.tensor([255, 0, 0], dtype=torch.uint8)).all(-1).any()  # red
    with pytest.raises(InputError, match="threshold"):
        rcnn.predict(model, cfg, {}, [photo], torch.device("cpu"), {"threshold": -1})


@pytest.mark.slow
def test_cli_run_checkpoint_eval_and_predict(cli, roots):
    args = [f"data.root={roots['voc']}", "data.download=false", "data.image_size=64", "data.batch_size=3",
            "data.num_workers=0", f"data.classes={VOC_CLASSES}", "model.num_classes=3", "model.weights=none",
            "train.deterministic=true", *(f"{k}={v}" for k, v in LIGHT.items())]
    sets = [arg for a in args for arg in ("--set", a)]
    code, out, err = cli("train-rcnn", *sets, "--device", "cpu", "--epochs", "1", "--out", "run", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["status"] == "completed" and Path("run/predictions.png").is_file()
    ckpt = torch.load("run/checkpoints/best.pt", map_location="cpu", weights_only=True)
    assert ckpt["task"] == "train-rcnn" and ckpt["metadata"]["format"] == "voc"
    assert checkpoint.load(Path("run/checkpoints/last.pt"))["epoch"] == 1
    code, out, err = cli("eval", "--checkpoint", "run/checkpoints/best.pt", "--json")
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    recorded = json.loads(Path("run/summary.json").read_text())["final"]
    per_class = {k for k in metrics if k.startswith("val_ap50/")}  # named by the data's classes
    assert set(metrics) - per_class == {"val_map50", "val_map"} and all(math.isfinite(v) for v in metrics.values())
    assert per_class and {k.split("/")[1] for k in per_class} <= set(VOC_CLASSES.strip("[]").split(","))
    for name in ("val_map50", "val_map"):
        assert metrics[name] == pytest.approx(recorded[name], abs=1e-6), name
    photo = next((roots["voc"] / "VOC2012" / "JPEGImages").iterdir())
    code, out, err = cli("predict", "--checkpoint", "run/checkpoints/best.pt", photo, "--threshold", "0",
                         "--out", "drawn", "--json")
    assert code == 0, err
    assert Path(json.loads(out)[0]["drawn"]).is_file()


@pytest.mark.slow
def test_demo_config_trains(cli, roots):
    demo = cfglib.load(rcnn.Config, REPO / "configs" / "demo" / "rcnn.yaml")
    assert demo.model.weights == "none" and demo.model.weights_backbone == "none"
    code, _, err = cli("train-rcnn", "--config", REPO / "configs" / "demo" / "rcnn.yaml",
                       "--set", f"data.root={roots['bananas']}", "--set", "data.image_size=64",
                       "--epochs", "1", "--max-steps", "2", "--out", "demo")
    assert code == 0, err
    assert (Path("demo") / "predictions.png").is_file() and (Path("demo") / "metrics.csv").is_file()
