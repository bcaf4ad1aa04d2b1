"""`make gpu-check`'s runner: every step runs and lands in the report, failures included.

The GPU run happens rarely; these keep its script from rotting in between.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


def test_a_failing_or_hanging_step_is_reported_and_the_rest_still_run(gpu_check, tmp_path):
    steps = [gpu_check.Step("cuda-tests", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], 60),
             gpu_check.Step("hangs", [sys.executable, "-c", "import time; time.sleep(30)"], 1),
             gpu_check.Step("benchmark", [sys.executable, "-c", "print('fine')"], 60)]
    report = gpu_check.check(tmp_path / "out", steps, dry_run=True)
    assert report["ok"] is False
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("cuda-tests", "failed"), ("hangs", "timed out"), ("benchmark", "passed")]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    md = (tmp_path / "out" / "report.md").read_text()
    assert "FAILED" in md and "boom" in md and "| hangs | timed out |" in md
    assert (tmp_path / "out" / "cuda-tests.log").read_text().strip() == "boom"


def test_the_output_folder_comes_from_the_environment(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_CHECK_OUT", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(gpu_check, "plan", lambda out, *a: [gpu_check.Step("environment", [sys.executable, "-c",
                                                                                          "print('{}')"], 60)])
    assert gpu_check.main(["--dry-run"]) == 0
    assert json.loads((tmp_path / "elsewhere" / "report.json").read_text())["ok"] is True


@pytest.mark.slow
def test_the_dry_run_walks_every_step_on_the_cpu(gpu_check, tmp_path):
    out = tmp_path / "check"
    code = gpu_check.main(["--dry-run", "--out", str(out), "--pytest-args", str(REPO / "tests" / "test_cuda.py"),
                           "--bench-args", "--device cpu --quick --only train-ssd"])
    report = json.loads((out / "report.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert code == 0 and report["ok"], (out / "report.md").read_text()
    assert list(steps) == ["environment", "cuda-tests", "benchmark"]
    assert steps["environment"]["details"]["cuda_available"] is False
    tests = steps["cuda-tests"]["details"]["tests"]
    assert len(tests) >= 10 and {t["outcome"] for t in tests} == {"skipped"}
    assert [r["command"] for r in steps["benchmark"]["details"]["rows"]] == ["train-ssd", "train-ssd"]
    md = (out / "report.md").read_text()
    assert "(dry run)" in md and "## Benchmark" in md and "test_cuda" in md
