"""Resuming under another ``train.amp``: the saved GradScaler state is used only where both runs scale."""

from __future__ import annotations

import json

import pytest
import torch

from cvtool import config as cfglib
from cvtool.engine import checkpoint, trainer
from cvtool.engine.progress import Reporter
from cvtool.tasks import hotdog

CPU = torch.device("cpu")


def make(hotdog_root, run_dir, scaling: bool, init_scale: float = 2.0 ** 16) -> trainer.Trainer:
    """A tiny finetune-hotdog trainer; ``scaling`` gives it the enabled GradScaler that
    ``train.amp: fp16`` makes on a GPU (fp16 itself is refused on the CPU)."""
    cfg = cfglib.load(hotdog.Config, None, [f"data.root={hotdog_root}", "model.weights=none", "data.image_size=32",
                                            "data.resize=36", "data.batch_size=4", "data.num_workers=0"])
    fit = trainer.Trainer(hotdog.build(cfg), trainer.Run(run_dir=run_dir, device=CPU, argv=[]), Reporter(quiet=True))
    if scaling:
        fit.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, enabled=True)
    return fit


def test_a_run_without_a_scaler_resumes_with_one_at_a_fresh_scale(hotdog_root, tmp_path, one_thread):
    ckpt = checkpoint.load(make(hotdog_root, tmp_path, scaling=False).save("last.pt"))
    assert ckpt["scaler"] == {}
    fp16 = make(hotdog_root, tmp_path, scaling=True, init_scale=1024.0)
    fp16.restore(ckpt)  # GradScaler.load_state_dict({}) raises
    assert fp16.scaler.get_scale() == 1024.0


def test_a_scaled_run_resumes_without_scaling_or_with_its_scale(hotdog_root, tmp_path, one_thread):
    ckpt = checkpoint.load(make(hotdog_root, tmp_path, scaling=True, init_scale=512.0).save("last.pt"))
    assert ckpt["scaler"]["scale"] == 512.0
    plain = make(hotdog_root, tmp_path, scaling=False)
    plain.restore(ckpt)
    assert not plain.scaler.is_enabled()
    again = make(hotdog_root, tmp_path, scaling=True)
    again.restore(ckpt)
    assert again.scaler.get_scale() == 512.0


@pytest.mark.slow
def test_resume_from_off_to_bf16_continues_the_run(cli, tiny_hotdog, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--set", 'train.amp="off"', "--epochs", "1", "--out", run)
    assert code == 0, err
    code, _, err = cli("finetune-hotdog", "--resume", "--out", run, "--epochs", "2", "--set", 'train.amp="bf16"')
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
