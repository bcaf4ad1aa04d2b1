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


def started_env() -> dict[str, str]:
    """This process's environment less the OpenMP wait that importing cvtool set in it: a
    benchmark must see the environment a user's shell would give it."""
    import cvtool

    return {k: v for k, v in os.environ.items() if k in cvtool.USER_WAIT or k not in cvtool.WAIT_SETTINGS}


def bench(script: str, *args: object, returncode: int = 0) -> subprocess.CompletedProcess:
    env = {**started_env(), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
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


def quick(script: str, tmp_path: Path, *args: object) -> dict:
    bench(script, "--quick", "--allow-busy", "--json", tmp_path / "record.json", *args)
    record = json.loads((tmp_path / "record.json").read_text())
    for key in ("date", "cpu", "cores", "load_before", "load_after", "native_bf16"):
        assert key in record, key
    return record


def test_cifar_benchmark_compares_the_book_with_the_cli_defaults(tmp_path):
    record = quick("cifar.py", tmp_path, "--book-workers", 0)
    assert record["book_median"] > 0 and record["cvtool_median"] > 0 and record["ratio"] > 0
    assert record["cvtool_threads"]["source"] == "OMP_NUM_THREADS"  # the test's environment, obeyed


def test_ssd_benchmark_runs_the_demo_config(tmp_path):
    record = quick("ssd.py", tmp_path)
    assert record["ratio"] > 0 and len(record["results"]["book"]) == 1


def test_stylize_benchmark_includes_the_command_defaults(tmp_path):
    record = quick("stylize.py", tmp_path, "--device", "cpu")
    names = [r["variant"] for r in record["rows"]]
    assert names[:2] == ["book (fp32)", "cvtool defaults"] and all(r["ms_per_step"] > 0 for r in record["rows"])


def test_layout_benchmark_measures_both_layouts_per_family(tmp_path):
    record = quick("layout.py", tmp_path, "--only", "detect")
    assert [r["family"] for r in record["rows"]] == ["detect"] and record["rows"][0]["speedup"] > 0


def test_contention_benchmark_runs_each_setting_alone_and_busy(tmp_path):
    record = quick("contention.py", tmp_path, "--only", "train-ssd")
    assert [r["setting"] for r in record["rows"]] == ["auto", "OMP_NUM_THREADS=1", "all cores, spinning"]
    assert all(r["alone"] > 0 and r["busy"] > 0 for r in record["rows"])
    assert record["spinner_alone"] > 0
    assert all((r["neighbour_share"] is not None) == r["busy"] for r in record["runs"])
    sources = {(r["setting"], r["threads"]["source"], r["threads"]["wait_source"]) for r in record["runs"]}
    assert sources == {("auto", "auto", "cvtool default"), ("OMP_NUM_THREADS=1", "OMP_NUM_THREADS", "cvtool default"),
                       ("all cores, spinning", "train.threads", "environment")}


def test_wait_benchmark_runs_each_wait_alone_and_busy(tmp_path):
    record = quick("wait.py", tmp_path)
    assert [r["wait"] for r in record["rows"]] == ["GNU default", "PASSIVE", "spin 3000"]
    assert all(r["alone"] > 0 and r["busy"] > 0 for r in record["rows"])
    assert record["shares"]["alone"] > 0
    assert all(0 < r["neighbour_share"] <= 1.5 for r in record["rows"])


def test_a_busy_machine_is_refused_unless_allowed(capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import benchlib
    finally:
        sys.path.pop(0)
    record = {"load_before": [5.0, 4.0, 3.0], "cores": 2}
    with pytest.raises(SystemExit, match="above the 2 cores"):
        benchlib.check_load(record, allow_busy=False)
    benchlib.check_load(record, allow_busy=True)
    assert "direction only" in capsys.readouterr().err and "warning" in record
    benchlib.check_load({"load_before": [1.0, 1.0, 1.0], "cores": 2}, allow_busy=False)


def test_detectors_benchmark_scores_both_detectors_in_quick_mode(tmp_path):
    out = bench("detectors.py", "--quick", "--threads", 1, "--json", tmp_path / "detectors.json").stdout
    record = json.loads((tmp_path / "detectors.json").read_text())
    assert record["quick"] is True and record["machine"]["cores"] and record["machine"]["load_average"]
    assert [r["command"] for r in record["rows"]] == ["train-ssd", "train-rcnn"]
    for row in record["rows"]:
        assert row["status"] == "completed" and 0 <= row["val_map50"] <= 1 and 0 <= row["val_map"] <= 1, row
        assert row["train_images_per_second"] > 0 and row["inference_ms_per_image"] > 0, row
    assert "train-rcnn" in out and "mAP@0.5" in out


def test_book_ssd_benchmark_runs_the_books_loop_and_both_recipes(tmp_path):
    record = quick("book_ssd.py", tmp_path)
    assert [r["recipe"] for r in record["rows"]] == ["book", "cvtool", "fast"]
    for row in record["rows"]:
        assert row["images_per_second"] > 0 and 0 <= row["val_map50"] <= 1 and row["class_err"] >= 0, row


def test_coco_reader_benchmark_times_every_step(tmp_path):
    record = quick("coco_reader.py", tmp_path)
    assert record["records"] == record["images"] == 2000
    assert all(record["rows"][k] > 0 for k in ("json_load_s", "parse_s", "labels_s", "total_s"))
    assert 0 < record["label_bytes"] < record["padded_bytes"]


def test_style_speed_benchmark_times_both_ways_and_a_video(tmp_path):
    record = quick("style_speed.py", tmp_path)
    image, clip = record["image"], record["video"]
    assert image["forward_s"] > 0 and image["stylize_step_s"] > 0 and image["stylize_steps"] == 500
    assert clip["frames"] == 9 and clip["frames_per_second"] > 0
    assert all(clip["stages"][k] > 0 for k in ("decode_s", "network_s", "encode_s")) and image["forward_fp32_s"] > 0
    assert {(row["width"], row["amp"]) for row in record["widths"]} == {(w, a) for w in (1.0, 0.5, 0.25) for a in ("auto", "off")}


def test_startup_benchmark_times_both_trees(tmp_path):
    record = quick("startup.py", tmp_path, "--baseline", REPO)
    assert set(record["trees"]) == {"before", "after"} and len(record["table"]) == 2 + 2
    assert all(len(values) == 1 and values[0] > 0 for values in record["seconds"].values())
    assert record["imports_torch"] == {f"{tree} {args}": False for tree in ("before", "after")
                                       for args in ("--version", "--help")}
