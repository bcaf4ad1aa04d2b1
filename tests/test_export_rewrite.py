"""The graph rewrites of `--int8` keep the numbers: FCN's upsampling (a ConvTranspose whose kernel
is twice its stride) becomes a 2x2 Conv, DepthToSpace and a crop, and int8 convolution weights
move to zero point -1 so that ONNX Runtime picks its GEMM kernels."""

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
    assert rewrite.shift_weight_zero_points(model) == 0  # 3 to 8 channels: the symmetric kernels are faster
    assert rewrite.shift_weight_zero_points(model, min_depth=1) == 2
    zero_points = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("zero_point")}
    weights = [z for name, z in zero_points.items() if z.dtype == np.int8]
    assert len(weights) == 2 and all((z == -1).all() for z in weights)
    np.testing.assert_array_equal(run(model, x), before)
    assert rewrite.shift_weight_zero_points(model, min_depth=1) == 0  # already shifted


def normalised_conv(pads: list[int], strides: list[int], bias: bool = True, group: int = 1,
                    pad_first: list[int] | None = None, size: tuple[int, int] | None = None,
                    mean: tuple[float, ...] = (0.485, 0.456, 0.406)) -> onnx.ModelProto:
    """images -> (images - mean) / std [-> Pad] -> Conv -> Relu, as cvtool's exports begin (FCN pads
    to a multiple of 32 first; classifiers have a fixed ``size``)."""
    gen = np.random.default_rng(3)
    inits = [numpy_helper.from_array(np.array(mean, np.float32).reshape(1, 3, 1, 1), "mean"),
             numpy_helper.from_array(np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1), "std"),
             numpy_helper.from_array(gen.standard_normal((6, 3 // group, 5, 5)).astype(np.float32), "w")]
    inputs = ["normalised", "w"]
    if bias:
        inits.append(numpy_helper.from_array(gen.standard_normal(6).astype(np.float32), "b"))
        inputs.append("b")
    nodes = [helper.make_node("Sub", ["images", "mean"], ["shifted"], name="sub"),
             helper.make_node("Div", ["shifted", "std"], ["normalised" if pad_first is None else "scaled"], name="div")]
    if pad_first is not None:
        inits.append(numpy_helper.from_array(np.array([0, 0, *pad_first[:2], 0, 0, *pad_first[2:]], np.int64), "p"))
        nodes.append(helper.make_node("Pad", ["scaled", "p"], ["normalised"], name="pad_first"))
    nodes += [helper.make_node("Conv", inputs, ["c"], name="conv", pads=pads, strides=strides, group=group),
              helper.make_node("Relu", ["c"], ["x"], name="relu")]
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *(size or ("h", "w"))])
    graph = helper.make_graph(nodes, "g", [images], [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def as_image(seen: np.ndarray) -> np.ndarray:
    """The padded picture in the convolution's input: blocks back to pixels, the zero channel dropped."""
    if seen.shape[1] == 12:  # SpaceToDepth's order: (row in block, column in block, channel)
        n, _, h, w = seen.shape
        return seen.reshape(n, 2, 2, 3, h, w).transpose(0, 3, 4, 1, 5, 2).reshape(n, 3, 2 * h, 2 * w)
    assert seen.shape[1] == 4 and not seen[:, 3].any()
    return seen[:, :3]


@pytest.mark.parametrize("pads,strides,bias,pad_first,size,layout", [
    ([2, 2, 2, 2], [1, 1], True, None, None, ["Pad", "Add"]),
    ([1, 3, 2, 0], [2, 2], False, None, None, ["Pad", "Add"]),  # any size: a fourth, zero channel
    ([3, 3, 3, 3], [2, 2], True, [0, 0, 5, 7], None, ["Pad", "Add"]),
    ([3, 3, 3, 3], [2, 2], True, None, (10, 8), ["Pad", "Add", "SpaceToDepth"]),  # ResNet's stem: 2x2 blocks
    ([3, 2, 3, 3], [2, 2], True, None, (10, 8), ["Pad", "Add"]),  # 9 wide once padded: no blocks
])
def test_folding_the_normalisation_into_the_first_convolution_computes_the_same(pads, strides, bias, pad_first, size,
                                                                                 layout):
    model = normalised_conv(pads, strides, bias, pad_first=pad_first, size=size)
    h, w = size or (11, 9)
    pixels = np.random.default_rng(4).integers(0, 256, (1, 3, h, w)).astype(np.float32) / 255
    x = {"images": pixels}
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    kept, reads = rewrite.fold_input_normalisation(model)
    first = [] if pad_first is None else ["pad_first"]
    assert [n.op_type for n in model.graph.node] == ["Sub", *(["Pad"] * len(first)), *layout, "Conv", "Relu"]
    assert kept == ["sub", *first, *(f"conv.{op.lower()}" for op in layout)] and reads == kept[-1]
    assert {t.name for t in model.graph.initializer} == {"conv.pixel_mean", "mean", "conv.pixel_weight",
                                                         "conv.pixel_bias", "conv.pixel_pads",
                                                         *(["p"] if first else [])}  # the old weights and std are gone
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, x)[0], before, rtol=1e-5, atol=1e-5)
    model.graph.output.append(helper.make_tensor_value_info(reads, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    seen = as_image(session.run([reads], x)[0])  # the convolution reads the pixels, padded with the mean
    top, left = (pad_first or [0, 0])[:2]
    np.testing.assert_allclose(seen[:, :, top + pads[0]:top + pads[0] + h, left + pads[1]:left + pads[1] + w], pixels,
                               atol=1e-7)
    np.testing.assert_allclose(seen[0, :, 0, 0], [0.485, 0.456, 0.406], atol=1e-7)


def test_a_zero_mean_needs_no_shifting():
    """SSD-style detectors see (x - 0) / (1/255): the pixels are padded with zeros as they are."""
    model = normalised_conv([1, 1, 1, 1], [1, 1], size=(6, 7), mean=(0.0, 0.0, 0.0))
    pixels = {"images": np.random.default_rng(5).random((1, 3, 6, 7)).astype(np.float32)}
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, pixels)[0]
    kept, reads = rewrite.fold_input_normalisation(model)
    assert [n.op_type for n in model.graph.node] == ["Pad", "Conv", "Relu"] and kept == [reads] == ["conv.pad"]
    assert model.graph.node[0].input[0] == "images"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, pixels)[0], before, rtol=1e-5, atol=1e-5)


def test_a_graph_that_does_not_begin_with_the_normalisation_is_left_alone():
    grouped = normalised_conv([1, 1, 1, 1], [1, 1], group=3)
    assert rewrite.fold_input_normalisation(grouped) == ([], "")
    assert [n.op_type for n in grouped.graph.node] == ["Sub", "Div", "Conv", "Relu"]


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
