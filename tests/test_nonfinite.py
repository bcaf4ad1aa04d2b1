"""Non-finite weights and results are caught: no checkpoint holds them, best never points at them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINY_HOTDOG, strict_json
from cvtool.engine import checkpoint, finite

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def all_finite(path: Path) -> bool:
    ckpt = checkpoint.load(path)
    tensors = [t for key in ("model", "raw_model") for t in ckpt.get(key, {}).values() if t.is_floating_point()]
    return all(torch.isfinite(t).all() for t in tensors)


def test_the_weight_check_sees_a_nan_parameter_a_nan_buffer_and_the_ema():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert finite.weights_finite([net, None])
    net[1].running_mean[0] = float("nan")
    assert not finite.weights_finite([net])
    clean, averaged = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        averaged.weight[0, 0] = float("inf")
    with pytest.raises(finite.NonFinite, match="weights became non-finite in epoch 3 .lr 0.1."):
        finite.check_weights([clean, averaged], 3, 0.1, Path("x/last.pt"), 2)


def test_a_huge_lr_exits_1_saves_nothing_and_the_rerun_starts_again(hotdog_root, tmp_path):
    """The issue's case: one step per epoch, so the training loss was finite before the update."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    args = [sys.executable, "-m", "cvtool", "finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG,
            "--set", "optim.lr=1e30", "--epochs", "1", "--max-steps", "1", "--out", str(out)]
    first = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stderr
    lines = [line for line in first.stderr.splitlines() if line.startswith("cvtool:")]
    assert len(lines) == 1 and "in epoch 1 (lr " in lines[0] and "no checkpoint was saved" in lines[0]
    assert "Traceback" not in first.stderr
    assert strict_json(first.stdout)["status"] == "failed"
    summary = strict_json((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["best"]["epoch"] is None
    assert summary["final"]["val_loss"] is None  # NaN, written as null
    assert not list(out.rglob("*.pt"))
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "--resume" not in again.stderr
    assert "the earlier attempt's files are in" in again.stdout and (out / "attempts" / "1" / "summary.json").is_file()


def test_under_skip_a_nan_epoch_never_becomes_best_and_nan_weights_still_stop(cli, tiny_hotdog, tmp_path):
    out = tmp_path / "skip"
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--set", "optim.lr=1e30", "--set", "train.on_nan=skip",
                       "--set", "train.ema_decay=0.5", "--epochs", "3", "--max-steps", "1", "--out", out)
    assert code == 1 and "weights became non-finite in epoch 2" in err
    assert f"the last finite checkpoint is {out / 'checkpoints' / 'last.pt'} (epoch 1)" in err
    assert not (out / "checkpoints" / "best.pt").exists()  # epoch 1's val_loss was NaN
    assert all_finite(out / "checkpoints" / "last.pt")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["epoch"] is None and summary["status"] == "failed"


def test_an_interrupt_never_saves_non_finite_weights(cli, tiny_hotdog, tmp_path, monkeypatch):
    """A checkpoint save checks the weights itself: here SIGINT arrives after they were spoilt mid-epoch."""
    from cvtool.engine import trainer
    from cvtool.tasks import classify

    original, calls = classify.train_step, {"n": 0}

    def spoil(model, batch):
        out = original(model, batch)
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(classify, "train_step", spoil)
    monkeypatch.setattr(trainer.Trainer, "stopping", lambda self, stop, step=None: step == 2)
    out = tmp_path / "run"
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--set", "train.on_nan=skip", "--epochs", "2", "--out", out)
    assert code == 1 and "weights became non-finite in epoch 1" in err and not list(out.rglob("*.pt"))
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"
