"""The benchmark scripts still run against today's code: each at tiny CPU sizes, end to end.

Their numbers are not checked (speed is never asserted in a test); what is checked is
that every row is measured and nothing failed, because a benchmark that breaks quietly
is only found on the rare day a GPU is lent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def bench(script: str, *args: object, returncode: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == returncode, result.stderr[-3000:]
    return result


def test_gpu_benchmark_measures_every_row_in_quick_mode(tmp_path):
    bench("gpu.py", "--device", "cpu", "--quick", "--json", tmp_path / "bench.json")
    record = json.loads((tmp_path / "bench.json").read_text())
    assert record["failed"] == [] and record["quick"] is True
    rows = record["rows"]
    commands = ["finetune-hotdog", "train-ssd", "train-fcn", "train-cifar", "train-dog", "resnet18-224", "stylize"]
    assert sorted({r["command"] for r in rows}) == sorted(commands)
    for row in rows:
        speed = row["images_per_second"] or row["ms_per_step"]
        assert speed is not None and speed > 0 and row["ratio"] > 0, row
    assert len(record["goals"]) == 2


def test_cifar_and_stylize_benchmarks_run_at_tiny_sizes():
    out = bench("cifar.py", "--n-train", 48, "--batch-size", 8, "--width", 4, "--device", "cpu",
                "--book-workers", 0, "--warmup", 1).stdout
    assert "ratio cvtool / book:" in out
    out = bench("stylize.py", "--device", "cpu", "--sizes", "32x32", "--steps", 1).stdout
    assert out.count("32x32") >= 3 and "book (fp32)" in out


def test_cifar_benchmark_refuses_an_epoch_with_nothing_to_time():
    err = bench("cifar.py", "--n-train", 128, "--batch-size", 64, "--device", "cpu", returncode=2).stderr
    assert "raise --n-train to 256" in err and "Traceback" not in err


def test_detectors_benchmark_scores_both_detectors_in_quick_mode(tmp_path):
    out = bench("detectors.py", "--quick", "--threads", 1, "--json", tmp_path / "detectors.json").stdout
    record = json.loads((tmp_path / "detectors.json").read_text())
    assert record["quick"] is True and record["machine"]["cores"] and record["machine"]["load_average"]
    assert [r["command"] for r in record["rows"]] == ["train-ssd", "train-rcnn"]
    for row in record["rows"]:
        assert row["status"] == "completed" and 0 <= row["val_map50"] <= 1 and 0 <= row["val_map"] <= 1, row
        assert row["train_images_per_second"] > 0 and row["inference_ms_per_image"] > 0, row
    assert "train-rcnn" in out and "mAP@0.5" in out
