"""`cvtool export` for train-rcnn: torchvision's Faster R-CNN, scripted and as ONNX, gives its checkpoint's answers.

One tiny model (random init, small proposal budgets, 64 px) trained one epoch on synthetic
bananas, exported once per format and reloaded, checked again, and used by `cvtool predict`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_export import COMMON, FORMATS, one_line_error, run, same_answers, sets

from cvtool.data import bananas
from cvtool.engine import checkpoint
from cvtool.export import check, exporter, runtime

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
ROWS = 20  # detect.max_detections: every output is padded to this many rows


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return bananas.synthesize(tmp_path_factory.mktemp("rcnn-data") / "bananas", n_train=8, n_val=4, size=64, seed=3)


@pytest.fixture(scope="module")
def ckpt(root, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("rcnn-run")
    code, _ = run("train-rcnn", *sets(data__root=root, data__image_size=64, data__batch_size=4, model__weights="none",
                                      model__rpn_proposals=60, model__rpn_proposals_test=30,
                                      model__box_batch_size_per_image=16, detect__max_detections=ROWS),
                  *COMMON, "--out", out)
    assert code == 0
    # a one-epoch model scores every box near 0.5, where float noise reorders near-ties in
    # predict's lists and pictures; a sharper class layer spreads the scores apart
    path = out / "checkpoints" / "best.pt"
    state = checkpoint.load(path)
    for key in ("roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias"):
        state["model"][key] = state["model"][key] * 30
    checkpoint.save(state, path)
    return path


@pytest.fixture(scope="module")
def exports(ckpt, tmp_path_factory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("rcnn-exports")
    done = {}
    for fmt in FORMATS:
        code, out = run("export", "--checkpoint", ckpt, "--format", fmt, "--out", base, "--json")
        assert code == 0, fmt
        done[fmt] = json.loads(out)
    return done


@pytest.mark.parametrize("fmt", FORMATS)
def test_rcnn_exports_and_gives_its_checkpoints_answers(exports, ckpt, fmt):
    result = exports[fmt]
    assert result["status"] == "ok" and result["check"]["ok"] and result["task"] == "train-rcnn"
    assert result["check"]["detections"] > 0 and "images from" in result["check"]["source"]
    meta = json.loads(Path(result["meta"]).read_text())
    assert meta["per_image"] is True and meta["classes"] == ["banana"]
    assert meta["input"]["shape"] == [1 if fmt == "onnx" else "batch", 3, 64, 64]
    assert [o["name"] for o in meta["outputs"]] == ["boxes", "scores", "labels"]
    assert meta["outputs"][0]["shape"] == ["batch", ROWS, 4]

    # reloaded on its own, on new pictures; TorchScript (scripted) at a batch it never saw
    graph, _, _ = exporter.load_graph(exporter.Request(checkpoint=ckpt))
    model = runtime.Runner(Path(result["model"]), fmt)
    batch = 1 if fmt == "onnx" else 5
    report = check.verify(graph, model, None, batch=batch, half=False)
    assert report["ok"] and report["detections"] > 0, report
    images, _ = check.sample(None, graph.size, count=batch, seed=7)
    boxes, scores, labels = model(images)
    assert boxes.shape == (batch, ROWS, 4) and scores.shape == labels.shape == (batch, ROWS)
    assert ((labels == -1) | (labels == 0)).all() and (scores[labels == -1] == 0).all()


def test_rcnn_with_nothing_to_detect(ckpt, tmp_path):
    picky = checkpoint.load(ckpt)
    picky["config"]["detect"]["min_score"] = 0.999
    checkpoint.save(picky, tmp_path / "picky.pt")
    code, out = run("export", "--checkpoint", tmp_path / "picky.pt", "--out", tmp_path / "x", "--json")
    result = json.loads(out)
    assert code == 0 and result["check"]["ok"] and result["check"]["detections"] == 0
    boxes, scores, labels = runtime.Runner(Path(result["model"]), "onnx")(torch.full((1, 3, 64, 64), 0.5))
    assert (labels == -1).all() and boxes.shape == (1, ROWS, 4) and not scores.any()


def test_predict_from_an_rcnn_export_equals_predict_from_the_checkpoint(exports, ckpt, root, tmp_path):
    images = sorted((root / "bananas_val" / "images").iterdir())[:3]
    outputs = []
    for model in (ckpt, *(exports[fmt]["model"] for fmt in FORMATS)):
        folder = tmp_path / Path(model).suffix[1:]
        code, out = run("predict", "--checkpoint", model, *images, "--out", folder, "--threshold", "0.0", "--json")
        assert code == 0, model
        outputs.append((json.loads(out.replace(str(folder), "OUT")), folder))
    first, folder = outputs[0]
    assert any(r["boxes"] for r in first)
    for other, other_folder in outputs[1:]:
        assert same_answers(other, first), other_folder
        for picture in sorted(folder.glob("*.png")):
            assert picture.read_bytes() == (other_folder / picture.name).read_bytes(), picture.name


def test_rcnn_refuses_half_and_opsets_without_roi_align(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    assert "float32" in one_line_error(capsys, 2, "export", "--checkpoint", ckpt, "--half", "--out", out)
    assert "18 to 21" in one_line_error(capsys, 2, "export", "--checkpoint", ckpt, "--opset", 22, "--out", out)
    assert not out.exists()
