"""Two gloo processes under torchrun train like one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow


def run(args, env):
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


def test_two_processes_match_one(hotdog_root, tmp_path):
    from conftest import TINY_HOTDOG

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    common = ["finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG,
              "--set", "finetune.freeze_backbone=true", "--set", "data.augment=false",
              "--set", "train.amp=off", "--epochs", "2", "--json"]  # fp32: bf16 sums differ with the split
    one = run([sys.executable, "-m", "cvtool", *common, "--out", str(tmp_path / "one")], env)
    assert one.returncode == 0, one.stderr
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "cvtool", *common, "--out", str(tmp_path / "two")], env)
    assert two.returncode == 0, two.stderr
    results = [json.loads(line) for line in two.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1, two.stdout  # only rank 0 prints
    assert json.loads((tmp_path / "two" / "env.json").read_text())["processes"] == 2

    a = json.loads((tmp_path / "one" / "summary.json").read_text())["final"]
    b = json.loads((tmp_path / "two" / "summary.json").read_text())["final"]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    wa = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=1e-6)
    ranks = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)["rng"]["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])  # each rank's own streams


def test_sync_bn_on_cpu_processes_is_a_config_error(hotdog_root, tmp_path):
    """Checked before any process group is needed, so one process can stand in for rank 0 of two."""
    from cvtool import config as cfglib
    from cvtool.engine import runtime, trainer
    from cvtool.engine.progress import Reporter
    from cvtool.errors import InputError
    from cvtool.tasks import hotdog

    cfg = cfglib.load(hotdog.Config, None, [f"data.root={hotdog_root}", "model.weights=none", "train.sync_bn=true"])
    run = trainer.Run(run_dir=tmp_path / "run", device=torch.device("cpu"), argv=[],
                      procs=runtime.Processes(rank=0, world=2))
    with pytest.raises(InputError, match="train.sync_bn needs CUDA"):
        trainer.Trainer(hotdog.build(cfg), run, Reporter(quiet=True))
    assert not (tmp_path / "run").exists()
