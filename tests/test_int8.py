"""`cvtool export --int8`: ONNX Runtime's static QDQ quantization, calibrated on training images,
scored against its checkpoint on the validation set; refused where it cannot work.

The classifier trains until its accuracy means something (well above chance on 32
validation images), so a quantized model within one image of it is evidence, not luck.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from test_export import COMMON, one_line_error, run, sets
from test_export_rcnn import ckpt, root  # noqa: F401 - module fixtures: the tiny R-CNN checkpoint

from cvtool.data import bananas, hotdog, voc

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
VAL_IMAGES = 32  # hotdog.synthesize(n=40): 0.4 n per class


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("int8")
    args = {
        "finetune-hotdog": [*sets(data__root=hotdog.synthesize(base / "hotdog", n=40, size=40, seed=3),
                                  data__image_size=32, data__resize=36, data__batch_size=16, data__augment="false",
                                  model__weights="none", optim__name="adam", optim__lr=0.001), "--epochs", "6"],
        "train-ssd": sets(data__root=bananas.synthesize(base / "bananas", n_train=16, n_val=4, size=64, seed=3),
                          data__image_size=64, data__batch_size=8, model__width=0.25),
        "train-fcn": sets(data__root=voc.synthesize(base / "VOCdevkit", n_train=4, n_val=3, size=48, classes=3),
                          data__crop_size="[32, 48]", model__weights="null", model__width=8, model__num_classes=4,
                          data__batch_size=2),
    }
    paths = {}
    for command, extra in args.items():
        code, _ = run(command, *COMMON, *extra, "--set", "train.amp=off", "--out", base / command)
        assert code == 0, command
        paths[command] = base / command / "checkpoints" / "best.pt"
    return paths


def int8_export(path: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code, text = run("export", "--checkpoint", path, "--format", "onnx", "--int8", "--out", out, "--json", *extra)
    return code, json.loads(text)


def test_an_int8_classifier_keeps_its_accuracy(trained, tmp_path):
    code, result = int8_export(trained["finetune-hotdog"], tmp_path, "--calib-images", "48",
                               "--max-drop", f"val_acc={1.5 / VAL_IMAGES}")
    parity = result["metric_parity"]
    assert code == 0 and parity["ok"], parity
    assert parity["checkpoint_metrics"]["val_acc"] >= 0.75  # trained: well above chance (0.5)
    assert parity["items"] == VAL_IMAGES
    model = Path(result["model"])
    assert model.name == "finetune-hotdog.int8.onnx" and result["int8"]["format"] == "QDQ"
    assert result["bytes"] < 0.35 * (trained["finetune-hotdog"].stat().st_size)  # int8 weights
    graph = onnx.load(str(model))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Softmax"} <= ops
    # the network in 8 bits but for its last layer: every convolution and residual Add reads
    # dequantized int8, the first one the [0, 1] pixels themselves, quantized at 1/255 as they come
    # in, padded with the mean and read in 2x2 blocks in 8 bits, the normalisation folded into its
    # weights (test_export_pixels holds each step to the numbers)
    [head] = result["int8"]["kept_fp32"]
    producer = {out: n for n in graph.graph.node for out in n.output}
    assert "Div" not in ops and "Sub" not in ops
    layers = [n for n in graph.graph.node if n.op_type in ("Conv", "Add")]
    assert len(layers) == 28 and all(producer[n.input[0]].op_type == "DequantizeLinear" for n in layers)
    stem = producer[layers[0].input[0]]
    chain = [producer[stem.input[0]]]
    while chain[-1].input[0] != "images":
        chain.append(producer[chain[-1].input[0]])
    assert [n.op_type for n in chain[::-1]] == ["QuantizeLinear", "Pad", "Max", "SpaceToDepth"]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.graph.initializer}
    assert inits[chain[-1].input[1]] == pytest.approx(1 / 255) and inits[chain[-1].input[2]] == 0
    rewrites = result["int8"]["rewrites"]
    assert rewrites["normalisation_folded"] and rewrites["pixels_at_1_255"] and rewrites["pixels_quantized_first"]
    softmax = next(n for n in graph.graph.node if n.op_type == "Softmax")
    assert producer[softmax.input[0]].name == head and producer[softmax.input[0]].op_type == "Gemm"
    assert result["int8"]["post_processing_fp32"] == ["Softmax"]
    assert result["int8"]["rewrites"]["weight_zero_points_shifted"] > 0
    assert [i.name for i in graph.graph.input] == ["images"]
    assert [o.name for o in graph.graph.output] == ["probabilities"]
    meta = json.loads(Path(result["meta"]).read_text())
    calibration = meta["int8"]["calibration"]
    assert calibration == {"images": 48, "requested": 48, "method": "MinMax",
                           "source": calibration["source"]} and "48 of 80 training images" in calibration["source"]
    assert meta["metric_parity"] == parity and meta["check"]["gating"] is False
    assert meta["check"]["tolerance"] == 2e-2  # read at --half's tolerance: INT8's differences show

    # the Python side and the CLI read it like any export
    code, text = run("eval", "--checkpoint", model, "--json")
    assert code == 0 and json.loads(text)["int8"] is True
    assert json.loads(text)["metrics"]["val_acc"] == pytest.approx(parity["export_metrics"]["val_acc"])


def test_calibration_uses_fewer_images_when_the_set_is_smaller(trained, tmp_path):
    code, result = int8_export(trained["train-fcn"], tmp_path)
    assert code in (0, 4)  # a one-epoch FCN may lose more than a point; either way it is recorded
    assert result["int8"]["calibration"]["images"] == 4 and result["int8"]["calibration"]["requested"] == 256
    parity = json.loads(Path(tmp_path / "train-fcn.int8.onnx.json").read_text())["metric_parity"]
    assert "val_miou" in parity["export_metrics"] and "val_loss" in parity["not_scored"]
    ops = [n.op_type for n in onnx.load(result["model"]).graph.node]
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops  # the upsampling, split (test_export_rewrite)
    rewrites = result["int8"]["rewrites"]
    assert rewrites["transposed_convolutions_split"] == 1 and rewrites["argmax_before_depth_to_space"] == 1
    assert rewrites["normalisation_folded"]  # through FCN's pad to a multiple of 32
    assert ops.index("ArgMax") < ops.index("DepthToSpace")  # one class map spread, not every class's scores


def test_tinyssd_int8_keeps_its_inputs_and_outputs_and_predicts(trained, tmp_path):
    moved = tmp_path / "moved"  # the data in another place: --set data.root serves calibration and scoring
    shutil.copytree(trained["train-ssd"].parents[2] / "bananas", moved)
    code, result = int8_export(trained["train-ssd"], tmp_path, "--calib-images", "8", "--set", f"data.root={moved}")
    assert code in (0, 4)
    assert str(moved) in result["int8"]["calibration"]["source"] and result["metric_parity"]["data_root"] == str(moved)
    graph = onnx.load(result["model"])
    assert [o.name for o in graph.graph.output] == ["boxes", "scores", "labels"]
    assert "NonMaxSuppression" in {n.op_type for n in graph.graph.node}
    assert len(result["int8"]["kept_fp32"]) == 10  # the class and box heads of five maps
    assert result["check"]["box_tolerance_px"] == 1.0 and result["check"]["gating"] is False
    # the pixels quantized as they come in (the mean is 0), padded and widened by a zero channel
    # for the int8 kernel in 8 bits
    quant = next(n for n in graph.graph.node if "images" in n.input)
    pad = next(n for n in graph.graph.node if quant.output[0] in n.input)
    assert quant.op_type == "QuantizeLinear" and pad.op_type == "Pad"
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.graph.initializer}
    assert inits[pad.input[1]].tolist() == [0, 0, 1, 1, 0, 1, 1, 1]
    assert "NonMaxSuppression" in result["int8"]["post_processing_fp32"]
    image = next((Path(result["model"]).parents[1]).rglob("*.png"), None)
    assert image is not None
    code, text = run("predict", "--checkpoint", result["model"], image, "--json")
    assert code == 0 and text.strip()


def test_int8_refusals_exit_2_with_one_line(trained, ckpt, tmp_path, capsys):  # noqa: F811
    err = one_line_error(capsys, 2, "export", "--checkpoint", ckpt, "--int8", "--out", tmp_path / "r")
    assert "train-rcnn" in err and "float32" in err and not (tmp_path / "r").exists()
    hotdog_ckpt = trained["finetune-hotdog"]
    err = one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--int8", "--calib-images", "0",
                         "--out", tmp_path / "z")
    assert "--calib-images" in err and not (tmp_path / "z").exists()
    err = one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--int8", "--format", "torchscript",
                         "--out", tmp_path / "t")
    assert "--format onnx" in err
    err = one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--int8", "--half", "--out", tmp_path / "h")
    assert "--half" in err
    err = one_line_error(capsys, 2, "export", "--checkpoint", hotdog_ckpt, "--calib-images", "8", "--out", tmp_path / "c")
    assert "--calib-images is for --int8" in err and not (tmp_path / "c").exists()
