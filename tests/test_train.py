"""finetune-hotdog end to end through the shared trainer: files, resume, interrupts, predict."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cvtool.engine import checkpoint
from cvtool.tasks import classify

pytestmark = pytest.mark.slow


def test_run_directory_contract(cli, tiny_hotdog, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "2", "--out", out, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["status"] == "completed" and result["run_dir"] == str(out)
    for name in ("config.yaml", "env.json", "metrics.csv", "summary.json", "curves.png",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                             "epoch_seconds", "images_per_second"]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["best"]["metric"] == "val_acc"
    assert summary["best"]["epoch"] in (1, 2)
    env = json.loads((out / "env.json").read_text())
    assert env["device"] == "cpu" and env["seed"] == 0
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["task"] == "finetune-hotdog" and ckpt["epoch"] == 2
    assert ckpt["metadata"]["classes"] == ["hotdog", "not-hotdog"]


def test_never_overwrites_a_run(cli, tiny_hotdog, tmp_path):
    out = tmp_path / "run"
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1", "--out", out)[0] == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--out", out)
    assert code == 2 and "--resume" in err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1")[0] == 0
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1")[0] == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "finetune-hotdog").iterdir()) == ["exp", "exp2"]


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_after_an_interrupt_ends_with_the_same_weights(cli, tiny_hotdog, tmp_path, monkeypatch):
    full = tmp_path / "full"
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "3", "--out", full)[0] == 0

    calls = {"n": 0}
    original = classify.train_step

    def interrupting_step(model, batch):
        calls["n"] += 1
        if calls["n"] == 6:  # mid-way through epoch 2 (4 steps per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return original(model, batch)

    part = tmp_path / "part"
    monkeypatch.setattr(classify, "train_step", interrupting_step)
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "3", "--out", part)
    monkeypatch.setattr(classify, "train_step", original)
    assert code == 130, err
    assert f"continue with: cvtool finetune-hotdog --resume --out {part}" in err  # the whole command
    assert json.loads((part / "summary.json").read_text())["status"] == "interrupted"
    ckpt = checkpoint.load(part / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 2)

    code, out, err = cli("finetune-hotdog", "--resume", "--out", part)
    assert code == 0, err
    assert f"resuming {part} at epoch 2, step 2" in out
    assert_same_weights(weights(full / "checkpoints" / "last.pt"), weights(part / "checkpoints" / "last.pt"))
    with open(part / "metrics.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3"]


def test_resume_with_more_epochs_and_finished_runs(cli, tiny_hotdog, tmp_path):
    full = tmp_path / "full"
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "2", "--out", full)[0] == 0
    short = tmp_path / "short"
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--out", short)[0] == 0
    code, _, err = cli("finetune-hotdog", "--resume", "--out", short)
    assert code == 2 and "already finished 1 epoch" in err
    code, _, err = cli("finetune-hotdog", "--resume", short / "checkpoints" / "last.pt", "--epochs", "2")
    assert code == 0, err
    assert_same_weights(weights(full / "checkpoints" / "last.pt"), weights(short / "checkpoints" / "last.pt"))


def test_resume_refuses_other_optimizer_settings_and_touches_nothing(cli, tiny_hotdog, tmp_path):
    run = tmp_path / "run"
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--out", run)[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for change in ("optim.name=sgd", "optim.lr=0.5", "sched.name=cosine"):
        code, out, err = cli("finetune-hotdog", "--resume", "--out", run, "--epochs", "2", "--set", change, "--json")
        assert code == 2 and change.split("=")[0] in err and "start a new run" in err and out == ""
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    code, _, err = cli("finetune-hotdog", "--resume", "--out", run, "--epochs", "2", "--set", "data.num_workers=0")
    assert code == 0, err


def test_resume_without_a_checkpoint_is_an_error(cli, tmp_path):
    code, _, err = cli("finetune-hotdog", "--resume", "--out", tmp_path / "empty")
    assert code == 2 and "nothing to resume" in err


def test_sigterm_saves_and_exits_130(hotdog_root, tmp_path):
    from conftest import TINY_HOTDOG

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "cvtool", "finetune-hotdog", "--set", f"data.root={hotdog_root}",
                             *TINY_HOTDOG, "--epochs", "500", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "SIGTERM" in err
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    checkpoint.load(out / "checkpoints" / "last.pt")


def test_frozen_backbone_trains_only_the_head(cli, tiny_hotdog, tmp_path):
    out = tmp_path / "frozen"
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--set", "finetune.freeze_backbone=true",
                       "--epochs", "1", "--out", out)
    assert code == 0, err
    from cvtool import config as c
    from cvtool.tasks import hotdog

    torch.manual_seed(0)
    initial = hotdog.build_model(c.load(hotdog.Config, None, ["model.weights=none"])).state_dict()
    trained = weights(out / "checkpoints" / "last.pt")
    for key, value in trained.items():
        if key.startswith("fc."):
            assert not torch.equal(value, initial[key]), key
        else:
            assert torch.equal(value, initial[key]), key


def test_predict_prints_the_top_class(cli, tiny_hotdog, hotdog_root, tmp_path):
    out = tmp_path / "run"
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--out", out)[0] == 0
    images = sorted((hotdog_root / "test" / "hotdog").glob("*.png"))[:2]
    code, stdout, err = cli("predict", "--checkpoint", out / "checkpoints" / "best.pt", *images, "--json")
    assert code == 0, err
    results = json.loads(stdout)
    assert [r["image"] for r in results] == [str(p) for p in images]
    for r in results:
        assert r["class"] in ("hotdog", "not-hotdog") and 0.5 <= r["probability"] <= 1
    code, stdout, _ = cli("predict", "--checkpoint", out / "checkpoints" / "best.pt", images[0])
    assert code == 0 and stdout.startswith(str(images[0]) + ": ")
    folder = hotdog_root / "test" / "hotdog"
    code, stdout, err = cli("predict", "--checkpoint", out / "checkpoints" / "best.pt", folder, "--json")
    assert code == 0, err
    assert [r["image"] for r in json.loads(stdout)] == [str(p) for p in sorted(folder.glob("*.png"))]
    (tmp_path / "empty").mkdir()
    code, _, err = cli("predict", "--checkpoint", out / "checkpoints" / "best.pt", tmp_path / "empty")
    assert code == 2 and "holds no images" in err
    code, stdout, err = cli("predict", "--checkpoint", out / "checkpoints" / "best.pt", "--kaggle-test", hotdog_root)
    assert code == 2 and "--kaggle-test is for train-cifar and train-dog" in err and stdout == ""


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_nan_loss_stops_or_is_skipped(cli, tiny_hotdog, tmp_path, monkeypatch, policy):
    calls = {"n": 0}
    original = classify.train_step

    def poisoned(model, batch):
        out = original(model, batch)
        calls["n"] += 1
        if calls["n"] == 6:  # epoch 2, step 2
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(classify, "train_step", poisoned)
    out = tmp_path / policy
    code, stdout, err = cli("finetune-hotdog", *tiny_hotdog, "--set", f"train.on_nan={policy}", "--epochs", "2",
                            "--out", out, "--json")
    summary = json.loads((out / "summary.json").read_text())
    if policy == "stop":
        assert code == 1 and "Traceback" not in err  # with --json the progress lines share stderr
        assert "nan at epoch 2 step 2" in err and "last.pt holds the last good epoch" in err
        assert summary["status"] == "failed"
        assert json.loads(stdout) == {"status": "failed", "run_dir": str(out), "error": summary["error"]}
        assert checkpoint.load(out / "checkpoints" / "last.pt")["epoch"] == 1
    else:
        assert code == 0, err
        assert summary["status"] == "completed" and summary["skipped_steps"] == 1


def test_a_nan_loss_in_the_first_epoch_says_nothing_was_saved(cli, tiny_hotdog, tmp_path, monkeypatch):
    original = classify.train_step

    def diverging(model, batch):
        out = original(model, batch)
        out.loss = out.loss * float("inf")
        return out

    monkeypatch.setattr(classify, "train_step", diverging)
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--out", tmp_path / "run")
    assert code == 1 and "no epoch had finished, so nothing was saved" in err
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_the_tiny_run_learns(cli, tmp_path):
    from cvtool.data.hotdog import synthesize

    root = synthesize(tmp_path / "hotdog", n=40, size=64, seed=5)
    out = tmp_path / "learn"
    code, stdout, err = cli("finetune-hotdog", "--set", f"data.root={root}", "--set", "data.image_size=48",
                            "--set", "data.resize=54", "--set", "data.batch_size=16", "--set", "data.num_workers=0",
                            "--set", "model.weights=none", "--set", "optim.name=adam", "--set", "optim.lr=0.002",
                            "--set", "sched.name=cosine", "--device", "cpu", "--epochs", "6", "--out", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["best"]["value"] >= 0.8  # chance is 0.5
