"""`cvtool benchmark`: one row per format, timed and scored; bad options are one line, exit 2.

Times are never asserted (the machine is shared); only that every field is there and sane.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_export import COMMON, one_line_error, run, sets

from cvtool.data import hotdog

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("bench")
    code, _ = run("finetune-hotdog", *COMMON, *sets(data__root=hotdog.synthesize(base / "hotdog", n=6, size=40, seed=3),
                                                    data__image_size=32, data__resize=36, data__batch_size=4,
                                                    model__weights="none", train__amp="off"),
                  "--out", base / "run")
    assert code == 0
    return base / "run" / "checkpoints" / "best.pt"


def test_benchmark_json_has_a_row_per_format(trained):
    code, out = run("benchmark", "--checkpoint", trained, "--batch", "1,2", "--repeats", "2", "--warmup", "1",
                    "--json")
    assert code == 0
    result = json.loads(out)
    assert result["task"] == "finetune-hotdog" and result["batches"] == [1, 2] and result["best_metric"] == "val_acc"
    rows = {r["format"]: r for r in result["rows"]}
    assert list(rows) == ["pytorch", "torchscript", "onnx", "onnx-int8"]
    for row in rows.values():
        assert row["bytes"] > 0 and set(row["ms_per_image"]) == set(row["images_per_s"]) == {"1", "2"}
        assert all(v > 0 for v in row["ms_per_image"].values())
        assert row["images_per_s"]["2"] == pytest.approx(1000 / row["ms_per_image"]["2"])
        assert 0 <= row["metric"] <= 1 and "val_loss" in row["metrics"]
    assert rows["onnx"]["metric"] == pytest.approx(rows["pytorch"]["metric"])
    assert rows["onnx-int8"]["bytes"] < rows["onnx"]["bytes"] / 3
    assert rows["onnx"]["within_max_drop"] and sum(r["fastest"] for r in rows.values()) == 1
    assert next(r for r in rows.values() if r["fastest"])["within_max_drop"]
    machine = result["machine"]
    assert {"cpu", "cpu_flags", "load_average", "date", "threads"} <= set(machine)
    assert not list(trained.parents[1].glob("export"))  # the exports went to a temporary folder


def test_benchmark_table_and_an_existing_export_is_reused(trained):
    code, _ = run("export", "--checkpoint", trained, "--format", "torchscript")
    assert code == 0
    code, out = run("benchmark", "--checkpoint", trained, "--formats", "pytorch,torchscript", "--batch", "1",
                    "--repeats", "1", "--warmup", "0")
    assert code == 0 and "fastest within --max-drop" in out and "machine:" in out
    code, out = run("benchmark", "--checkpoint", trained, "--formats", "torchscript", "--batch", "1",
                    "--repeats", "1", "--warmup", "0", "--json")
    row = json.loads(out)["rows"][0]
    assert row["file"] == str(trained.parents[1] / "export" / "finetune-hotdog.torchscript")


@pytest.mark.parametrize("args, words", [
    (["--formats", "onnx,tflite"], "--formats"),
    (["--batch", "0"], "--batch"),
    (["--device", "cuda"], "CPU only"),
    (["--max-drop", "val_accuracy=0.1"], "did you mean val_acc"),
])
def test_bad_benchmark_options_exit_2(trained, capsys, args, words):
    err = one_line_error(capsys, 2, "benchmark", "--checkpoint", trained, *args)
    assert words in err
