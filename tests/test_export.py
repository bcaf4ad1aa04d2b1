"""`cvtool export`: every task's tiny model in both formats gives its checkpoint's answers.

Each checkpoint comes from a one-epoch run on synthetic data; each export is written once
per module and then reloaded, run at another batch size and compared, and used by
`cvtool predict`. ONNX export takes seconds per model, hence the slow mark.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtool.cli import main
from cvtool.data import bananas, hotdog, kaggle_synth, voc
from cvtool.engine import checkpoint
from cvtool.export import check, exporter, runtime

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--set", "data.num_workers=0", "--device", "cpu", "--epochs", "1", "--set", "train.deterministic=true"]
FORMATS = ("onnx", "torchscript")


def sets(**items: object) -> list[str]:
    return [arg for key, value in items.items() for arg in ("--set", f"{key.replace('__', '.')}={value}")]


def run(*args: object) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("export-data")
    return {
        "bananas": bananas.synthesize(base / "bananas", n_train=16, n_val=4, size=64, seed=3),
        "voc": voc.synthesize(base / "VOCdevkit", n_train=4, n_val=3, size=48, classes=3),
        "hotdog": hotdog.synthesize(base / "hotdog", n=4, size=40, seed=3),
        "cifar": kaggle_synth.synthesize_cifar(base / "cifar", n_train=40, n_test=4, seed=4),
        "dogs": kaggle_synth.synthesize_dogs(base / "dogs", n_train=12, n_test=2, classes=3, seed=5),
    }


@pytest.fixture(scope="module")
def checkpoints(roots, tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("export-runs")
    args = {
        "train-ssd": sets(data__root=roots["bananas"], data__image_size=64, data__batch_size=8, model__width=0.25,
                          optim__lr=0.05),
        "train-fcn": sets(data__root=roots["voc"], data__crop_size="[32, 48]", model__weights="null",
                          model__width=8, model__num_classes=4, data__batch_size=2),
        "finetune-hotdog": sets(data__root=roots["hotdog"], data__image_size=32, data__resize=36,
                                data__batch_size=4, model__weights="none"),
        "train-cifar": sets(data__root=roots["cifar"], data__tiny="false", model__width=4, data__batch_size=8),
        "train-dog": sets(data__root=roots["dogs"], data__tiny="false", model__weights="none",
                          model__num_classes=3, data__image_size=32, data__resize=36, data__batch_size=4,
                          model__hidden=8),
    }
    paths = {}
    for command, extra in args.items():
        code, _ = run(command, *extra, *COMMON, "--out", base / command)
        assert code == 0, command
        paths[command] = base / command / "checkpoints" / "best.pt"
    return paths


@pytest.fixture(scope="module")
def exports(checkpoints, tmp_path_factory) -> dict[tuple[str, str], dict]:
    base = tmp_path_factory.mktemp("exports")
    done = {}
    for command, path in checkpoints.items():
        for fmt in FORMATS:
            code, out = run("export", "--checkpoint", path, "--format", fmt, "--out", base / fmt, "--json")
            assert code == 0, (command, fmt)
            done[command, fmt] = json.loads(out)
    return done


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", ["train-ssd", "train-fcn", "finetune-hotdog", "train-cifar", "train-dog"])
def test_every_task_exports_and_gives_its_checkpoints_answers(exports, checkpoints, command, fmt):
    result = exports[command, fmt]
    assert result["status"] == "ok" and result["check"]["ok"] and result["task"] == command
    assert "images from" in result["check"]["source"]  # the synthetic data is there, so real images were used
    model = Path(result["model"])
    assert model.suffix == f".{fmt}" and not list(model.parent.glob(".*.tmp"))
    meta = json.loads(Path(result["meta"]).read_text())
    ckpt_path = checkpoints[command]
    assert meta["checkpoint"]["sha256"] == hashlib.sha256(ckpt_path.read_bytes()).hexdigest()
    assert meta["task"] == command and meta["input"]["colour_order"] == "RGB" and meta["cvtool_version"]
    assert meta["outputs"] and all({"name", "shape", "meaning"} <= set(o) for o in meta["outputs"])
    assert meta["classes"] == checkpoint.load(ckpt_path)["metadata"]["classes"]

    # reloaded on its own, at a batch size the export was not traced at, on new pictures
    graph, _, _ = exporter.load_graph(exporter.Request(checkpoint=ckpt_path))
    images, _ = check.sample(None, graph.size, count=5, seed=7)
    report = check.verify(graph, runtime.Runner(model, fmt), None, batch=5, half=False)
    assert report["ok"], report
    got = runtime.Runner(model, fmt)(images)
    assert [t.shape[0] for t in got] == [5] * len(graph.outputs)


def same_answers(a, b, tol: float = 2e-6) -> bool:
    """Equal, floats up to their last printed digit: ONNX Runtime's kernels differ from eager
    PyTorch's by ~1e-7, which can move a probability rounded to 6 decimals by one unit."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    if isinstance(a, dict) and isinstance(b, dict):
        if "boxes" in a and "boxes" in b:
            return same_boxes(a["boxes"], b["boxes"]) and same_answers(
                {k: v for k, v in a.items() if k != "boxes"}, {k: v for k, v in b.items() if k != "boxes"}, tol)
        return a.keys() == b.keys() and all(same_answers(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_answers(x, y, tol) for x, y in zip(a, b))
    return a == b


def same_boxes(a: list, b: list) -> bool:
    """The same detections, each printed with its score at 4 decimals and its box at 0.1 px, so
    equal up to one unit there; near-tied scores may swap places, so order is not compared."""
    left = list(b)
    for found in a:
        match = next((o for o in left if o["class"] == found["class"] and abs(o["score"] - found["score"]) <= 1.01e-4
                      and all(abs(p - q) <= 0.101 for p, q in zip(o["box"], found["box"]))), None)
        if match is None:
            return False
        left.remove(match)
    return not left


def same_picture(a: Path, b: Path) -> bool:
    """Byte for byte, or (where a score or box edge sat on a rounding boundary) under 1% of
    pixels apart: a box drawn a pixel over, or a tied label's rank."""
    if a.read_bytes() == b.read_bytes():
        return True
    x, y = (np.asarray(Image.open(p).convert("RGB")) for p in (a, b))
    return x.shape == y.shape and (x != y).any(-1).mean() < 0.01


def test_predict_from_an_export_equals_predict_from_the_checkpoint(exports, checkpoints, roots, tmp_path):
    pictures = {
        "train-ssd": sorted((roots["bananas"] / "bananas_val" / "images").iterdir())[:3],
        "train-fcn": sorted((roots["voc"] / "VOC2012" / "JPEGImages").iterdir())[:2],
        "finetune-hotdog": [roots["hotdog"] / "test" / "hotdog"],
        "train-dog": sorted((roots["dogs"] / "test").iterdir())[:2],
    }
    for command, images in pictures.items():
        extra = ["--threshold", "0.05"] if command == "train-ssd" else []
        outputs = []
        for model in (checkpoints[command], *(exports[command, fmt]["model"] for fmt in FORMATS)):
            folder = tmp_path / command / Path(model).suffix[1:]
            code, out = run("predict", "--checkpoint", model, *images, "--out", folder, *extra, "--json")
            assert code == 0, (command, model)
            outputs.append((out.replace(str(folder), "OUT"), folder))
        first = json.loads(outputs[0][0])
        assert all(same_answers(json.loads(other), first) for other, _ in outputs[1:]), command
        for (_, a), (_, b) in zip(outputs, outputs[1:]):
            for picture in sorted(a.glob("*.png")):
                assert same_picture(picture, b / picture.name), (command, picture.name)
    submissions = []
    for model in (checkpoints["train-cifar"], exports["train-cifar", "onnx"]["model"]):
        folder = tmp_path / "cifar" / Path(model).suffix[1:]
        folder.mkdir(parents=True)
        assert run("predict", "--checkpoint", model, "--kaggle-test", roots["cifar"] / "test", "--out", folder)[0] == 0
        submissions.append((folder / "submission.csv").read_text())
    assert submissions[0] == submissions[1]


def test_a_detector_with_nothing_to_detect_and_a_static_batch(checkpoints, tmp_path):
    ckpt = checkpoint.load(checkpoints["train-ssd"])
    ckpt["config"]["detect"]["min_score"] = 0.99
    checkpoint.save(ckpt, tmp_path / "picky.pt")
    code, out = run("export", "--checkpoint", tmp_path / "picky.pt", "--static", "--out", tmp_path / "x", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["check"]["ok"] and result["check"]["detections"] == 0 and result["check"]["batch_size"] == 1
    meta = json.loads(Path(result["meta"]).read_text())
    assert meta["input"]["shape"][0] == 1 and meta["dynamic_batch"] is False
    boxes, scores, labels = runtime.Runner(Path(result["model"]), "onnx")(torch.full((1, 3, 64, 64), 0.5))
    assert (labels == -1).all() and boxes.shape == (1, labels.shape[1], 4)


def test_half_precision_exports_check_within_the_looser_tolerance(checkpoints, tmp_path):
    for fmt in FORMATS:
        code, out = run("export", "--checkpoint", checkpoints["train-cifar"], "--format", fmt, "--half",
                        "--out", tmp_path, "--json")
        result = json.loads(out)
        assert code == 0 and result["half"] and result["check"]["ok"]
        assert result["check"]["tolerance"] == check.TOLERANCE[True]


def one_line_error(capsys, code: int, *args: object) -> str:
    assert main([str(a) for a in args]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_inputs_exit_2_and_write_nothing(checkpoints, tmp_path, capsys, monkeypatch):
    hotdog_ckpt = checkpoints["finetune-hotdog"]
    out = tmp_path / "out"
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert "junk.pt" in one_line_error(capsys, 2, "export", "--checkpoint", tmp_path / "junk.pt", "--out", out)
    assert "not supported" in one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--opset", 12,
                                             "--out", out)
    assert "not supported" in one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--opset", 99,
                                             "--out", out)
    assert "TorchScript" in one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--opset", 20,
                                           "--format", "torchscript", "--out", out)
    (tmp_path / "a-file").write_text("x")
    assert "cannot write" in one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt,
                                            "--out", tmp_path / "a-file" / "sub")
    assert "32,32" in one_line_error(capsys, 2, "export", "--checkpoint", checkpoints["train-cifar"],
                                     "--image-size", "64,64", "--out", out)
    assert not out.exists()

    content, style = tmp_path / "c.png", tmp_path / "s.png"
    for path, colour in ((content, "orange"), (style, "navy")):
        Image.new("RGB", (32, 32), colour).save(path)
    assert main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), "--set", "model.weights=none",
                 "--size", "16", "--steps", "1", "--device", "cpu", "--out-dir", str(tmp_path / "styl")]) == 0
    capsys.readouterr()
    err = one_line_error(capsys, 2, "export", "--checkpoint", tmp_path / "styl", "--out", out)
    assert "stylize has no network to export" in err and not out.exists()

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert "pip install" in one_line_error(capsys, 3, "export", "--checkpoint", hotdog_ckpt, "--out", out)
    assert not out.exists()
    assert main(["export", "--checkpoint", str(hotdog_ckpt), "--out", str(out), "--no-check"]) == 0
    assert (out / "finetune-hotdog.onnx").is_file()
    assert json.loads((out / "finetune-hotdog.onnx.json").read_text())["check"] is None
    assert "already exists" in one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--out", out,
                                              "--no-check")


def test_an_export_that_disagrees_exits_1_and_keeps_nothing(checkpoints, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(check.TOLERANCE, False, -1.0)  # nothing can be that close
    assert main(["export", "--checkpoint", str(checkpoints["train-cifar"]), "--format", "torchscript",
                 "--out", str(tmp_path / "out"), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "mismatch" and "nothing was written" in captured.err
    assert not (tmp_path / "out").exists()


def test_the_export_benchmark_runs_in_quick_mode(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "export.py"), "--quick", "--json",
                             str(tmp_path / "bench.json")], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "bench.json").read_text())
    assert record["quick"] is True and record["failed"] == []
    assert {r["task"] for r in record["rows"]} == {"finetune-hotdog", "train-ssd", "train-rcnn", "train-fcn",
                                                   "train-cifar", "train-dog"}
    for row in record["rows"]:
        assert all(row[k] > 0 for k in ("eager_ms", "torchscript_ms", "onnxruntime_ms")), row
