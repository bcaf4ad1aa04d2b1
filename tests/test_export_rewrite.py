"""The graph rewrites of `--int8` keep the numbers: FCN's upsampling (a ConvTranspose whose kernel
is twice its stride) becomes a 2x2 Conv, DepthToSpace and a crop, its class ArgMax moves before the
DepthToSpace, and int8 convolution weights move to zero point -1 so that ONNX Runtime picks its GEMM
kernels. The image's own rewrites are in test_export_pixels.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cvtool.export import rewrite  # noqa: E402


def transposed(weight: np.ndarray, bias: np.ndarray | None, **attrs: object) -> onnx.ModelProto:
    inputs = ["x", "w"] + (["b"] if bias is not None else [])
    inits = [numpy_helper.from_array(weight, "w")] + ([numpy_helper.from_array(bias, "b")] if bias is not None else [])
    node = helper.make_node("ConvTranspose", inputs, ["y"], name="up", **attrs)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weight.shape[0], "h", "w"])
    graph = helper.make_graph([node], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("c_in,c_out,stride,pads,size", [
    (3, 3, 32, [16, 16, 16, 16], (2, 3)),  # FCN's upsampling
    (2, 5, 4, [2, 2, 2, 2], (5, 7)),
    (4, 2, 3, [0, 1, 3, 2], (4, 1)),  # uneven pads, odd stride
])
def test_a_split_transposed_convolution_computes_the_same(c_in, c_out, stride, pads, size):
    gen = np.random.default_rng(0)
    weight = gen.standard_normal((c_in, c_out, 2 * stride, 2 * stride)).astype(np.float32)
    bias = gen.standard_normal(c_out).astype(np.float32)
    model = transposed(weight, bias, kernel_shape=[2 * stride] * 2, strides=[stride] * 2, pads=pads)
    x = gen.standard_normal((2, c_in, *size)).astype(np.float32)
    before = run(model, x)
    assert rewrite.split_transposed_convolutions(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "DepthToSpace", "Slice"]
    assert not {"w", "b"} & {t.name for t in model.graph.initializer}
    after = run(model, x)
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias), stride=stride,
                                  padding=0)[..., pads[0]:, pads[1]:]
    expected = expected[..., :expected.shape[-2] - pads[2], :expected.shape[-1] - pads[3]].numpy()
    assert after.shape == before.shape == expected.shape
    np.testing.assert_allclose(after, before, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(after, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 3], "strides": [2, 2]},  # kernel not twice the stride
    {"kernel_shape": [4, 4], "strides": [2, 2], "group": 2},
    {"kernel_shape": [4, 4], "strides": [2, 2], "output_padding": [1, 1]},
    {"kernel_shape": [4, 4], "strides": [2, 2], "dilations": [2, 2]},
])
def test_other_transposed_convolutions_are_left_alone(attrs):
    k = attrs["kernel_shape"][0]
    model = transposed(np.ones((2, 2 // attrs.get("group", 1), k, k), np.float32), None, **attrs)
    assert rewrite.split_transposed_convolutions(model) == 0
    assert [n.op_type for n in model.graph.node] == ["ConvTranspose"]


def small_network(tmp_path):
    """Conv, Relu, Conv as an fp32 ONNX file, and its QDQ model calibrated on random images."""
    from onnxruntime import quantization as q

    gen = np.random.default_rng(1)
    inits = [numpy_helper.from_array(gen.standard_normal(shape).astype(np.float32), name)
             for name, shape in [("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (4, 8, 3, 3)), ("b2", (4,))]]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    source, target = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(source))
    images = iter([{"x": gen.random((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])
    reader = type("Reader", (), {"get_next": lambda self: next(images, None)})()
    q.quantize_static(str(source), str(target), reader, quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
    return onnx.load(str(target))


def test_shifted_weight_zero_points_give_the_same_numbers(tmp_path):
    model = small_network(tmp_path)
    x = np.random.default_rng(2).random((1, 3, 8, 8)).astype(np.float32)
    before = run(model, x)
    assert rewrite.shift_weight_zero_points(model) == 0  # sums of 27 and 72 terms: the symmetric kernels are faster
    assert rewrite.shift_weight_zero_points(model, min_depth=1) == 2
    zero_points = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("zero_point")}
    weights = [z for name, z in zero_points.items() if z.dtype == np.int8]
    assert len(weights) == 2 and all((z == -1).all() for z in weights)
    np.testing.assert_array_equal(run(model, x), before)
    assert rewrite.shift_weight_zero_points(model, min_depth=1) == 0  # already shifted


def phases_to_classes(mode: str = "CRD", crop_axes: tuple[int, ...] = (2, 3)) -> onnx.ModelProto:
    """FCN's end once its upsampling is split: phase Conv -> DepthToSpace -> crop -> class ArgMax."""
    gen = np.random.default_rng(5)
    inits = [numpy_helper.from_array(gen.standard_normal((5 * 9, 2, 2, 2)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1] * len(crop_axes), np.int64), "starts"),
             numpy_helper.from_array(np.array([-2] * len(crop_axes), np.int64), "ends"),
             numpy_helper.from_array(np.array(crop_axes, np.int64), "axes")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["phases"], name="phase_conv", kernel_shape=[2, 2]),
             helper.make_node("DepthToSpace", ["phases"], ["spread"], name="spread", blocksize=3, mode=mode),
             helper.make_node("Slice", ["spread", "starts", "ends", "axes"], ["cropped"], name="crop"),
             helper.make_node("ArgMax", ["cropped"], ["classes"], name="argmax", axis=1, keepdims=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "h", "w"])],
                              [helper.make_tensor_value_info("classes", TensorProto.INT64, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_the_class_argmax_before_the_phases_are_spread_gives_the_same_classes():
    model = phases_to_classes()
    x = np.random.default_rng(6).standard_normal((1, 2, 7, 6)).astype(np.float32)
    before = run(model, x)
    assert rewrite.argmax_before_depth_to_space(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops.index("ArgMax") < ops.index("DepthToSpace") < ops.index("Slice", ops.index("DepthToSpace"))
    after = run(model, x)
    assert after.dtype == np.int64 and after.shape == before.shape == (1, 15, 12)  # (7-1)*3 - 3, (6-1)*3 - 3
    np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize("mode,axes", [("DCR", (2, 3)), ("CRD", (1, 2))])
def test_other_spreads_and_crops_keep_their_argmax_last(mode, axes):
    model = phases_to_classes(mode, axes)
    assert rewrite.argmax_before_depth_to_space(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Conv", "DepthToSpace", "Slice", "ArgMax"]
