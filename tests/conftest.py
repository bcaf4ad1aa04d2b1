"""Shared fixtures: offline, plain output, tiny synthetic data, an in-process CLI runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ["CVTOOL_OFFLINE"] = "1"
os.environ["CI"] = "1"
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test runs in its own folder with its own TORCH_HOME (no cached weights)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def strict_json(text: str):
    """Parse as strict JSON: NaN and Infinity, which Python's json accepts, are refused."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(autouse=True)
def json_is_strict(request, tmp_path):
    """Every JSON file a test leaves in its folder parses strictly (mark a test that writes a damaged
    one on purpose with ``loose_json``)."""
    yield
    if request.node.get_closest_marker("loose_json"):
        return
    for path in tmp_path.rglob("*.json"):
        try:
            strict_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            pytest.fail(f"{path} is not strict JSON: {exc}")


@pytest.fixture
def one_thread():
    """Small models are latency-bound: on a busy 2-core machine, OpenMP threads only wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cli(capsys):
    """Run ``cvtool ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from cvtool.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        if "--json" in args:
            for line in captured.out.splitlines():
                if line.startswith(("{", "[")):
                    strict_json(line)
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def hotdog_root(tmp_path_factory) -> Path:
    from cvtool.data.hotdog import synthesize

    return synthesize(tmp_path_factory.mktemp("data") / "hotdog", n=8, size=40, seed=3)


TINY_HOTDOG = [
    "--set", "data.image_size=32", "--set", "data.resize=36", "--set", "data.batch_size=4",
    "--set", "data.num_workers=0", "--set", "model.weights=none", "--set", "optim.name=adam",
    "--set", "optim.lr=0.001", "--set", "train.deterministic=true", "--device", "cpu",
]


@pytest.fixture
def tiny_hotdog(hotdog_root):
    """CLI arguments for a seconds-long finetune-hotdog run on the tiny synthetic set."""
    return ["--set", f"data.root={hotdog_root}", *TINY_HOTDOG]


def overfit(task, batch, steps: int, lr: float):
    """Adam on one batch through the task's own step, the model in train mode: (losses, last StepOutput)."""
    model = task.model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        out = task.train_step(model, batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    return losses, out
