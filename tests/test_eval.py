"""`cvtool eval`: a checkpoint scores on the validation set exactly what training reported."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from cvtool.data import bananas, hotdog, kaggle_synth, voc

pytestmark = pytest.mark.usefixtures("one_thread")

COMMON = ["--set", "data.num_workers=0", "--set", "train.deterministic=true", "--device", "cpu", "--epochs", "1"]


def sets(**items: object) -> list[str]:
    return [arg for key, value in items.items() for arg in ("--set", f"{key.replace('__', '.')}={value}")]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("eval-data")
    return {
        "bananas": bananas.synthesize(base / "bananas", n_train=16, n_val=4, size=64, seed=3),
        "voc": voc.synthesize(base / "VOCdevkit", n_train=6, n_val=3, size=48, classes=3),
        "dogs": kaggle_synth.synthesize_dogs(base / "dogs", n_train=24, n_test=2, classes=3, seed=5),
    }


def train(cli, command: str, args: list[str], epochs: int = 1) -> dict:
    code, out, err = cli(command, *args, *COMMON, "--epochs", str(epochs), "--out", "run", "--json")
    assert code == 0, err
    return json.loads(out)


def evaluate(cli, *args: str, checkpoint: str = "run/checkpoints/best.pt") -> dict:
    code, out, err = cli("eval", "--checkpoint", checkpoint, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_same_metrics(result: dict) -> None:
    """Every metric eval reports equals the best epoch's validation (best.pt is that epoch's):
    its row of metrics.csv and the summary's ``extra`` (per-class figures), which says its epoch."""
    summary = json.loads(Path("run/summary.json").read_text())
    best = summary["best"]["epoch"]
    with open("run/metrics.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if int(r["epoch"]) == best)
    assert summary["extra"] == {} or summary["extra"]["epoch"] == best
    reported = {**{k: float(v) for k, v in row.items() if v}, **summary["extra"]}
    assert result["metrics"], "eval reported no metrics"
    for name, value in result["metrics"].items():
        assert value == pytest.approx(reported[name], rel=1e-5, abs=1e-6), name


def test_hotdog_checkpoint_scores_what_training_reported(cli, tiny_hotdog):
    train(cli, "finetune-hotdog", tiny_hotdog)
    result = evaluate(cli)
    assert result["task"] == "finetune-hotdog" and result["epoch"] == 1 and result["items"] == 6
    assert set(result["metrics"]) == {"val_loss", "val_acc"}
    assert_same_metrics(result)


def test_ssd_checkpoint_scores_what_training_reported(cli, roots):
    train(cli, "train-ssd", sets(data__root=roots["bananas"], data__image_size=64, data__batch_size=8,
                                       model__width=0.25))
    result = evaluate(cli)
    assert "val_map50" in result["metrics"]
    assert_same_metrics(result)


def test_fcn_checkpoint_scores_what_training_reported(cli, roots):
    train(cli, "train-fcn", sets(data__root=roots["voc"], data__crop_size="[32, 48]", model__weights="null",
                                       model__width=8, model__num_classes=4, data__batch_size=2), epochs=3)
    result = evaluate(cli)
    assert "val_miou" in result["metrics"] and any(k.startswith("val_iou/") for k in result["metrics"])
    assert_same_metrics(result)


def test_dog_checkpoint_with_cached_features_scores_on_its_own_backbone(cli, roots, tmp_path):
    """Training cached features of a "pretrained" backbone; eval must use the checkpoint's, not a new one."""
    torch.manual_seed(123)
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "backbone.pth")
    train(cli, "train-dog", sets(data__root=roots["dogs"], data__tiny="false", model__weights=tmp_path / "backbone.pth",
                                       model__num_classes=3, data__image_size=32, data__resize=36,
                                       data__batch_size=4, model__hidden=16, data__augment="false",
                                       finetune__cache_features="true", optim__lr=0.5))
    result = evaluate(cli)
    assert set(result["metrics"]) == {"val_loss", "val_acc"}  # no top-5 of 3 classes: it is always 1
    assert_same_metrics(result)


def test_eval_on_another_root_and_its_errors(cli, tiny_hotdog, roots, tmp_path):
    train(cli, "finetune-hotdog", tiny_hotdog)
    other = hotdog.synthesize(tmp_path / "other", n=5, size=40, seed=9)
    result = evaluate(cli, "--set", f"data.root={other}")
    assert result["items"] == len(list((other / "test").glob("*/*"))) and result["data_root"] == str(other)
    assert 0.0 <= result["metrics"]["val_acc"] <= 1.0

    renamed = Path(shutil.copytree(other, tmp_path / "renamed"))
    for split in ("train", "test"):
        (renamed / split / "hotdog").rename(renamed / split / "sandwich")
    code, out, err = cli("eval", "--checkpoint", "run/checkpoints/best.pt", "--set", f"data.root={renamed}")
    assert code == 2 and "other classes" in err and "Traceback" not in err and out == ""

    code, _, err = cli("eval", "--checkpoint", "run/checkpoints/best.pt", "--set", f"data.root={tmp_path / 'no'}",
                     "--set", "data.download=false")
    assert code == 3 and str(tmp_path / "no") in err and "data fetch hotdog" in err
    code, _, err = cli("eval", "--checkpoint", "run/checkpoints/best.pt", "--set", f"data.root={tmp_path / 'no'}")
    assert code == 3 and "CVTOOL_OFFLINE" in err and not (tmp_path / "no").exists()

    code, _, err = cli("eval", "--checkpoint", "run/checkpoints/best.pt", "--set", "data.rot=x")
    assert code == 2 and "data.root" in err

    code, _, err = cli("eval", "--checkpoint", "run/checkpoints/best.pt", "--set", "model.arch=resnet34")
    assert code == 2 and "does not fit" in err and "Missing key" in err

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, _, err = cli("eval", "--checkpoint", tmp_path / "junk.pt")
    assert code == 2 and "junk.pt" in err and len(err.strip().splitlines()) == 1 and "weights_only" not in err


def test_a_run_without_a_validation_split_says_so(cli, tmp_path):
    root = kaggle_synth.synthesize_cifar(tmp_path / "cifar", n_train=20, n_test=2, seed=4)
    train(cli, "train-cifar", sets(data__root=root, data__tiny="false", model__width=4, data__batch_size=8,
                                   data__split="train_valid"))
    code, out, err = cli("eval", "--checkpoint", "run/checkpoints/last.pt")
    assert code == 2 and "validation set is empty" in err and out == ""
    result = evaluate(cli, "--set", "data.split=train", checkpoint="run/checkpoints/last.pt")
    assert result["items"] > 0 and "val_acc" in result["metrics"]
