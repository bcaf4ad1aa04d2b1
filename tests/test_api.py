"""The Python API (cvtool/api.py) gives what the CLI gives: train, load, predict, eval, export,
errors; a tiny TinySSD on synthetic bananas, on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

import cvtool
from cvtool.data import bananas
from cvtool.engine import runtime
from cvtool.errors import CvtoolError, InputError, Interrupted

TINY = {"data.image_size": 64, "data.batch_size": 8, "data.num_workers": 0, "model.width": 0.25,
        "optim.lr": 0.05, "train.deterministic": True}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return bananas.synthesize(tmp_path_factory.mktemp("api-data") / "bananas", n_train=16, n_val=4, size=64, seed=3)


@pytest.fixture(scope="module")
def run(root, tmp_path_factory) -> cvtool.Run:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("api-runs") / "ssd"
    return cvtool.train("train-ssd", overrides={**TINY, "data.root": str(root)}, out=out, epochs=2, device="cpu",
                        max_steps=1, seed=1, quiet=True)


@pytest.fixture(scope="module")
def photo(root) -> Path:
    return sorted((root / "bananas_val" / "images").iterdir())[0]


def cli_json(cli, *args) -> object:
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_import_cvtool_does_not_import_torch():
    code = ("import sys, cvtool; names = [cvtool.train, cvtool.load, cvtool.Run, cvtool.Detections, cvtool.errors]; "
            "assert callable(cvtool.config) and callable(cvtool.runs) and callable(cvtool.compare); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_train_returns_the_run_it_wrote(run):
    assert run.status == "completed"
    assert run.best.metric == "val_map50" and run.best.epoch in (1, 2)
    assert [row["epoch"] for row in run.history] == [1, 2]
    assert run.final == run.summary["final"] and run.final["epoch"] == 2
    assert run.history[-1]["val_map50"] == pytest.approx(run.final["val_map50"], rel=1e-5)
    assert set(run.checkpoints) == {"best", "last"} and all(p.is_file() for p in run.checkpoints.values())
    assert json.loads((run.run_dir / "summary.json").read_text()) == run.summary
    assert cvtool.Run.open(run.run_dir).summary == run.summary


def test_predict_on_pil_numpy_tensor_and_path_is_cvtool_predict_json(run, photo, cli):
    model = cvtool.load(run.checkpoints["best"], device="cpu")
    assert (model.task, model.family, model.classes) == ("train-ssd", "detect", ["banana"])
    expected = cli_json(cli, "predict", "--checkpoint", run.checkpoints["best"], photo, "--threshold", "0.05")[0]
    picture = Image.open(photo).convert("RGB")
    results = model.predict([picture, np.asarray(picture), pil_to_tensor(picture),
                             pil_to_tensor(picture).float() / 255, photo], threshold=0.05)
    assert [r.to_dict()["image"] for r in results] == [None] * 4 + [str(photo)]
    for r in results:
        assert isinstance(r, cvtool.Detections)
        assert {**r.to_dict(), "image": expected["image"]} == expected
    found = results[0]
    assert len(found) == len(expected["boxes"]) > 0
    assert found.boxes.shape == (len(found), 4) and found.names == ["banana"] * len(found)
    assert (found.labels == 0).all() and found.scores.tolist() == pytest.approx([b["score"] for b in expected["boxes"]])


def test_boxes_are_clipped_to_the_image(run, photo):
    found = cvtool.load(run.checkpoints["best"]).predict(photo, threshold=0.0)[0]
    width, height = Image.open(photo).size
    assert len(found) > 0
    assert (found.boxes >= 0).all() and (found.boxes[:, [0, 2]] <= width).all() and (found.boxes[:, [1, 3]] <= height).all()
    drawn = found.draw()
    assert drawn.size == (256, 256) and found._repr_png_().startswith(b"\x89PNG")


def test_decode_boxes_clips_what_runs_outside():
    from cvtool.ops.boxes import decode_boxes, offset_inverse

    anchors = torch.tensor([[[0.0, 0.0, 0.4, 0.4], [0.7, 0.7, 1.0, 1.0]]])
    offsets = torch.tensor([[[-5.0, -5.0, 3.0, 3.0], [4.0, 4.0, 2.0, 2.0]]])
    raw, clipped = offset_inverse(anchors, offsets), decode_boxes(anchors, offsets)
    assert (raw < 0).any() and (raw > 1).any()
    assert torch.equal(clipped, raw.clamp(0, 1))


def test_evaluate_is_cvtool_eval(run, cli):
    expected = cli_json(cli, "eval", "--checkpoint", run.checkpoints["best"], "--device", "cpu")
    assert cvtool.load(run.checkpoints["best"], device="cpu").evaluate() == expected
    assert expected["metrics"]["val_map50"] == pytest.approx(run.best.value)


def test_export_then_load_the_onnx_predicts_the_same(run, photo, tmp_path):
    model = cvtool.load(run.checkpoints["best"])
    path = model.export("onnx", out=tmp_path / "export", opset=18, check=False)  # compared below instead
    assert path == tmp_path / "export" / "train-ssd.onnx" and path.is_file()
    exported = cvtool.load(path)
    assert exported.exported and (exported.task, exported.classes) == ("train-ssd", ["banana"])
    mine, theirs = (m.predict(photo, threshold=0.05)[0].to_dict() for m in (model, exported))
    assert len(mine["boxes"]) == len(theirs["boxes"]) > 0
    for a, b in zip(sorted(mine["boxes"], key=lambda x: x["box"]), sorted(theirs["boxes"], key=lambda x: x["box"])):
        assert a["score"] == pytest.approx(b["score"], abs=2e-4) and a["box"] == pytest.approx(b["box"], abs=0.2)
    with pytest.raises(InputError, match="is an exported model"):
        exported.export("onnx")


@pytest.mark.parametrize("call, args", [
    (lambda r: cvtool.train("train-ssd", overrides={"optim.lrr": 1}), ["train-ssd", "--set", "optim.lrr=1"]),
    (lambda r: cvtool.train("train-ssd", overrides={"optim.lr": "fast"}), ["train-ssd", "--set", "optim.lr=fast"]),
    (lambda r: cvtool.train("train-ssd", config="nowhere.yaml"), ["train-ssd", "--config", "nowhere.yaml"]),
    (lambda r: cvtool.train("train-ssd", resume=True), ["train-ssd", "--resume"]),
    (lambda r: cvtool.load("missing.pt"), ["predict", "--checkpoint", "missing.pt", "x.png"]),
    (lambda r: cvtool.load(r.checkpoints["best"]).predict("nothing.png"),
     ["predict", "--checkpoint", "{best}", "nothing.png"]),
    (lambda r: cvtool.load(r.checkpoints["best"]).export("tflite"),
     ["export", "--checkpoint", "{best}", "--format", "tflite"]),
    (lambda r: cvtool.load(r.checkpoints["best"]).evaluate({"data.root": "nowhere", "data.download": False}),
     ["eval", "--checkpoint", "{best}", "--set", "data.root=nowhere", "--set", "data.download=false"]),
])
def test_bad_arguments_raise_what_the_cli_prints(run, cli, call, args):
    code, _, err = cli(*(a.format(best=run.checkpoints["best"]) for a in args))
    with pytest.raises(CvtoolError) as caught:
        call(run)
    assert caught.value.exit_code == code
    assert err.strip() == f"cvtool: error: {caught.value}"


def test_api_only_arguments_are_checked_too(run):
    model = cvtool.load(run.checkpoints["best"])
    with pytest.raises(InputError, match="did you mean 'threshold'"):
        model.predict(np.zeros((8, 8, 3), np.uint8), treshold=0.5)
    with pytest.raises(InputError, match=r"image 0: a numpy array must be H x W x 3 uint8 \(RGB\), got shape \(8, 8\)"):
        model.predict(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match=r"floating-point tensor must hold values in \[0, 1\]"):
        model.predict(torch.full((3, 8, 8), 2.0))
    with pytest.raises(InputError, match="did you mean 'opset'"):
        model.export("onnx", opsett=18)
    with pytest.raises(InputError, match="overrides must be a dict"):
        cvtool.train("train-ssd", overrides="optim.lr=1")


def test_ctrl_c_saves_last_pt_and_interrupted_carries_the_resume_call(root, tmp_path, monkeypatch):
    def interrupt(name):
        if name == "step":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(runtime, "pause_point", interrupt)
    out = tmp_path / "stopped"
    with pytest.raises(Interrupted) as caught:
        cvtool.train("train-ssd", overrides={**TINY, "data.root": str(root)}, out=out, epochs=1, device="cpu", quiet=True)
    call = f"cvtool.train('train-ssd', out={str(out)!r}, resume=True)"
    assert caught.value.resume == call and caught.value.exit_code == 130
    assert str(caught.value).endswith(f"continue with: {call}")
    assert (out / "checkpoints" / "last.pt").is_file()
    monkeypatch.undo()
    resumed = eval(call, {"cvtool": cvtool})
    assert resumed.status == "completed" and resumed.run_dir == out


def test_runs_and_compare_are_the_cli_json(run, root, cli):
    other = cvtool.train("train-ssd", overrides={**TINY, "data.root": str(root), "optim.lr": 0.01},
                         out=run.run_dir.parent / "ssd-lr", epochs=1, device="cpu", quiet=True)
    listed = cvtool.runs(run.run_dir.parent)
    assert [r["run_dir"] for r in listed] == [str(run.run_dir), str(other.run_dir)]
    assert listed == cli_json(cli, "runs", run.run_dir.parent)
    expected = cli_json(cli, "compare", run.run_dir, other.run_dir, "--out", "a.png")
    mine = cvtool.compare([run, other.run_dir], picture="b.png")
    assert mine == {**expected, "picture": "b.png"} and Path("b.png").is_file()
    assert cvtool.compare([run, other])["picture"] is None and mine["differing"]["optim.lr"] == [0.05, 0.01]


def test_config_and_commands(cli):
    assert "train-ssd" in cvtool.commands() and "stylize" in cvtool.commands()
    code, out, _ = cli("config", "show", "train-ssd")
    assert code == 0 and cvtool.config("train-ssd") == yaml.safe_load(out)
    defaults = cvtool.config("train-ssd")
    defaults["optim"]["lr"] = 0.5
    assert cvtool.config("train-ssd")["optim"]["lr"] != 0.5  # a fresh copy each call


def test_no_picture_switches_a_notebooks_matplotlib_backend():
    """Figures are made with matplotlib.figure.Figure: pyplot (and matplotlib.use) would change the
    backend a notebook plots inline with, the moment a run drew its curves."""
    package = Path(cvtool.__file__).parent
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if "matplotlib.pyplot" in p.read_text(encoding="utf-8") or "matplotlib.use(" in p.read_text(encoding="utf-8")]
    assert not offenders
