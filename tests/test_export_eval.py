"""`cvtool eval` on an export: every exportable task's ONNX and TorchScript model scores its
checkpoint's metrics on the validation set; `export --check-metric` records both and gates.

Each checkpoint is a short run on synthetic data; TinySSD trains long enough to find some
bananas (mAP above 0), so equal mAPs mean something (the tiny one-epoch R-CNN of
test_export_rcnn finds none: its scores are proven equal there, detection by detection).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_export import COMMON, FORMATS, one_line_error, run, sets
from test_export_rcnn import ckpt, root  # noqa: F401 - module fixtures: the tiny R-CNN checkpoint

from cvtool.data import bananas, hotdog, kaggle_synth, voc
from cvtool.export import scoring

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ckpt) -> dict[str, Path]:  # noqa: F811
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("eval-export")
    data = {
        "bananas": bananas.synthesize(base / "bananas", n_train=32, n_val=6, size=64, seed=3),
        "voc": voc.synthesize(base / "VOCdevkit", n_train=4, n_val=3, size=48, classes=3),
        "hotdog": hotdog.synthesize(base / "hotdog", n=6, size=40, seed=3),
        "cifar": kaggle_synth.synthesize_cifar(base / "cifar", n_train=40, n_test=4, seed=4),
        "dogs": kaggle_synth.synthesize_dogs(base / "dogs", n_train=12, n_test=2, classes=3, seed=5),
    }
    args = {
        "train-ssd": [*sets(data__root=data["bananas"], data__image_size=64, data__batch_size=16, model__width=0.25),
                      "--epochs", "8"],
        "train-fcn": sets(data__root=data["voc"], data__crop_size="[32, 48]", model__weights="null",
                          model__width=8, model__num_classes=4, data__batch_size=2),
        "finetune-hotdog": sets(data__root=data["hotdog"], data__image_size=32, data__resize=36,
                                data__batch_size=4, model__weights="none"),
        "train-cifar": sets(data__root=data["cifar"], data__tiny="false", model__width=4, data__batch_size=8),
        "train-dog": sets(data__root=data["dogs"], data__tiny="false", model__weights="none", model__num_classes=3,
                          data__image_size=32, data__resize=36, data__batch_size=4, model__hidden=8),
    }
    paths = {"train-rcnn": ckpt}
    for command, extra in args.items():
        code, _ = run(command, *COMMON, *extra, "--set", "train.amp=off", "--out", base / command)
        assert code == 0, command
        paths[command] = base / command / "checkpoints" / "best.pt"
    return paths


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> dict[tuple[str, str], Path]:
    base = tmp_path_factory.mktemp("eval-exports")
    done = {}
    for command, path in trained.items():
        for fmt in FORMATS:
            code, out = run("export", "--checkpoint", path, "--format", fmt, "--out", base / fmt, "--json")
            assert code == 0, (command, fmt)
            done[command, fmt] = Path(json.loads(out)["model"])
    return done


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", ["finetune-hotdog", "train-cifar", "train-dog", "train-ssd", "train-fcn",
                                     "train-rcnn"])
def test_an_export_scores_its_checkpoints_metrics(trained, exported, command, fmt):
    want = scoring.score_checkpoint(trained[command], [], "cpu")
    got = scoring.score_export(exported[command, fmt], [], "cpu")
    assert got["task"] == command and got["format"] == fmt and got["items"] == want["items"] > 0
    skipped = set(got["not_scored"])
    assert set(got["metrics"]) | skipped == set(want["metrics"]) and not skipped & set(got["metrics"])
    assert skipped == {"segment": {"val_loss"}, "detect": {"val_loss", "val_class_err", "val_bbox_mae"}}.get(
        {"train-fcn": "segment", "train-ssd": "detect"}.get(command), set())
    for key, value in got["metrics"].items():
        assert close(value, want["metrics"][key]), (key, value, want["metrics"][key])
    if command == "train-ssd":
        assert want["metrics"]["val_map50"] > 0  # trained enough to find something


def test_eval_prints_an_exports_metrics_and_reads_data_overrides(trained, exported, tmp_path):
    model = exported["finetune-hotdog", "onnx"]
    code, out = run("eval", "--checkpoint", model, "--json")
    result = json.loads(out)
    assert code == 0 and result["format"] == "onnx" and result["int8"] is False
    assert {"val_loss", "val_acc"} == set(result["metrics"])
    other = hotdog.synthesize(tmp_path / "other", n=3, size=40, seed=9)
    code, out = run("eval", "--checkpoint", model, "--set", f"data.root={other}", "--json")
    moved = json.loads(out)
    assert code == 0 and moved["data_root"] == str(other) and moved["items"] != result["items"]
    code, text = run("eval", "--checkpoint", exported["train-fcn", "torchscript"])
    assert code == 0 and "val_miou" in text and "val_loss: not scored" in text


def test_check_metric_records_both_and_the_difference(trained, tmp_path):
    code, out = run("export", "--checkpoint", trained["train-ssd"], "--out", tmp_path, "--check-metric",
                    "--max-drop", "val_map=0.001", "--json")
    result = json.loads(out)
    parity = result["metric_parity"]
    assert code == 0 and parity["ok"] and [g["metric"] for g in parity["gates"]] == ["val_map"]
    assert set(parity["checkpoint_metrics"]) == {"val_map50", "val_map"} == set(parity["difference"])
    assert all(abs(d) < 1e-5 for d in parity["difference"].values())
    meta = json.loads(Path(result["meta"]).read_text())
    assert meta["metric_parity"] == parity


def test_a_drop_over_max_drop_keeps_the_file_and_exits_4(trained, tmp_path, capsys, monkeypatch):
    real = scoring.score_export

    def worse(*args, **kwargs):
        result = real(*args, **kwargs)
        result["metrics"]["val_acc"] -= 0.25
        return result

    monkeypatch.setattr(scoring, "score_export", worse)
    err = one_line_error(capsys, 4, "export", "--checkpoint", trained["finetune-hotdog"], "--out", tmp_path,
                         "--check-metric", "--max-drop", "val_acc=0.1")
    assert "val_acc" in err and "--max-drop 0.1" in err and "kept" in err
    meta = json.loads((tmp_path / "finetune-hotdog.onnx.json").read_text())
    assert (tmp_path / "finetune-hotdog.onnx").is_file() and meta["metric_parity"]["ok"] is False
    assert meta["metric_parity"]["difference"]["val_acc"] == pytest.approx(-0.25, abs=1e-5)


def test_bad_metric_inputs_exit_2_with_one_line(trained, exported, tmp_path, capsys):
    hotdog_ckpt = trained["finetune-hotdog"]
    err = one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--out", tmp_path / "a",
                         "--check-metric", "--max-drop", "val_acu=0.01")
    assert "did you mean val_acc" in err and not (tmp_path / "a").exists()
    err = one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--out", tmp_path / "b",
                         "--max-drop", "val_acc=0.01")
    assert "--check-metric" in err
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(exported["finetune-hotdog", "onnx"].read_bytes())
    err = one_line_error(capsys, 2, "eval", "--checkpoint", lone)
    assert "lone.onnx.json" in err
