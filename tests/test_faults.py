"""kill -9 at random moments: last.pt is always a complete checkpoint and --resume ends
with the same weights as a run that was never killed."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from cvtool.engine import checkpoint

pytestmark = pytest.mark.slow

TRIALS = 10


def test_kill_9_then_resume(hotdog_root, tmp_path):
    from conftest import TINY_HOTDOG

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "cvtool", "finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG,
            "--epochs", "4"]
    full = tmp_path / "full"
    subprocess.run([*args, "--out", str(full)], env=env, check=True, capture_output=True, timeout=600)
    expected = torch.load(full / "checkpoints" / "last.pt", weights_only=True)["model"]

    rng = random.Random(1234)
    for trial in range(TRIALS):
        out = tmp_path / f"killed{trial}"
        proc = subprocess.Popen([*args, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        last = out / "checkpoints" / "last.pt"
        deadline = time.time() + 300
        while not last.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        ckpt = checkpoint.load(last)
        assert 1 <= ckpt["epoch"] <= 4 and ckpt["step"] == 0
        resumed = subprocess.run([*args[:3], "finetune-hotdog", "--resume", "--out", str(out), "--epochs", "4"],
                                 env=env, capture_output=True, text=True, timeout=600)
        if ckpt["epoch"] == 4:
            assert resumed.returncode == 2 and "already finished" in resumed.stderr
        else:
            assert resumed.returncode == 0, resumed.stderr
        got = torch.load(last, weights_only=True)["model"]
        for key in expected:
            assert torch.equal(got[key], expected[key]), (trial, key)
