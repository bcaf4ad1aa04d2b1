"""The image's way into an INT8 graph keeps the numbers: the normalisation folded into the first
convolution (pixels padded with the mean), the pixels laid out in 2x2 blocks or with a fourth zero
channel, and quantized first, the layout then done in 8 bits."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cvtool.export import pixels  # noqa: E402


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, feed)


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
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, *(size or ("h", "w"))])
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
    image = np.random.default_rng(4).integers(0, 256, (1, 3, h, w)).astype(np.float32) / 255
    before = run(model, {"images": image})[0]
    kept, reads = pixels.fold_input_normalisation(model)
    first = [] if pad_first is None else ["pad_first"]
    assert [n.op_type for n in model.graph.node] == ["Sub", *(["Pad"] * len(first)), *layout, "Conv", "Relu"]
    assert kept == ["sub", *first, *(f"conv.{op.lower()}" for op in layout)] and reads == kept[-1]
    assert {t.name for t in model.graph.initializer} == {"conv.pixel_mean", "mean", "conv.pixel_weight",
                                                         "conv.pixel_bias", "conv.pixel_pads",
                                                         *(["p"] if first else [])}  # the old weights and std are gone
    np.testing.assert_allclose(run(model, {"images": image})[0], before, rtol=1e-5, atol=1e-5)
    model.graph.output.append(helper.make_tensor_value_info(reads, TensorProto.FLOAT, None))
    seen = as_image(run(model, {"images": image}, [reads])[0])  # the convolution reads the pixels, padded with the mean
    top, left = (pad_first or [0, 0])[:2]
    np.testing.assert_allclose(seen[:, :, top + pads[0]:top + pads[0] + h, left + pads[1]:left + pads[1] + w], image,
                               atol=1e-7)
    np.testing.assert_allclose(seen[0, :, 0, 0], [0.485, 0.456, 0.406], atol=1e-7)


def test_a_zero_mean_needs_no_shifting():
    """SSD-style detectors see (x - 0) / (1/255): the pixels are padded with zeros as they are."""
    model = normalised_conv([1, 1, 1, 1], [1, 1], size=(6, 7), mean=(0.0, 0.0, 0.0))
    image = {"images": np.random.default_rng(5).random((1, 3, 6, 7)).astype(np.float32)}
    before = run(model, image)[0]
    kept, reads = pixels.fold_input_normalisation(model)
    assert [n.op_type for n in model.graph.node] == ["Pad", "Conv", "Relu"] and kept == [reads] == ["conv.pad"]
    assert model.graph.node[0].input[0] == "images"
    np.testing.assert_allclose(run(model, image)[0], before, rtol=1e-5, atol=1e-5)


def test_a_graph_that_does_not_begin_with_the_normalisation_is_left_alone():
    grouped = normalised_conv([1, 1, 1, 1], [1, 1], group=3)
    assert pixels.fold_input_normalisation(grouped) == ([], "")
    assert [n.op_type for n in grouped.graph.node] == ["Sub", "Div", "Conv", "Relu"]


def quantized(model: onnx.ModelProto, kept: list[str], size: tuple[int, int], tmp_path) -> onnx.ModelProto:
    """``model``'s QDQ model, ``kept`` in fp32, as quantize.quantize_with makes it."""
    from onnxruntime import quantization as q

    gen = np.random.default_rng(6)
    images = iter([{"images": gen.random((1, 3, *size)).astype(np.float32)} for _ in range(4)])
    reader = type("Reader", (), {"get_next": lambda self: next(images, None)})()
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    q.quantize_static(str(tmp_path / "fp32.onnx"), str(tmp_path / "int8.onnx"), reader, nodes_to_exclude=kept,
                      quant_format=q.QuantFormat.QDQ, per_channel=True, activation_type=q.QuantType.QUInt8,
                      weight_type=q.QuantType.QInt8)
    return onnx.load(str(tmp_path / "int8.onnx"))


@pytest.mark.parametrize("pads,strides,mean,layout", [
    ([3, 3, 3, 3], [2, 2], (0.485, 0.456, 0.406), ["Pad", "Max", "SpaceToDepth"]),  # a classifier's stem
    ([1, 1, 1, 1], [1, 1], (0.485, 0.456, 0.406), ["Pad", "Max"]),
    ([1, 1, 1, 1], [1, 1], (0.0, 0.0, 0.0), ["Pad"]),  # TinySSD's
])
def test_the_pixels_quantized_first_give_the_same_numbers(tmp_path, pads, strides, mean, layout):
    model = normalised_conv(pads, strides, size=(10, 8), mean=mean)
    kept, reads = pixels.fold_input_normalisation(model)
    model = quantized(model, kept, (10, 8), tmp_path)
    assert pixels.exact_pixel_scale(model, reads)
    gen = np.random.default_rng(7)
    image = {"images": np.concatenate([gen.integers(0, 256, (3, 3, 10, 8)) / 255,  # 8-bit pictures, a batch
                                       np.zeros((1, 3, 10, 8)), np.ones((1, 3, 10, 8))]).astype(np.float32)}
    before = run(model, image)[0]
    assert pixels.quantize_first(model, kept, reads)
    ops = [n.op_type for n in model.graph.node if n.op_type not in ("DequantizeLinear", "QuantizeLinear")
           or "images" in n.input]
    assert ops == ["QuantizeLinear", *layout, "Conv"]  # no fp32 Sub, Pad, Add left (the Relu is in the int8 Conv)
    assert not {"conv.pad", "conv.add", "sub"} & {n.name for n in model.graph.node}
    np.testing.assert_array_equal(run(model, image)[0], before)


def test_pixels_padded_to_a_computed_size_stay_in_fp32(tmp_path):
    """FCN pads to a multiple of 32 first (its pads computed from the image's size): its mean's
    border is not a constant, and a Pad before the fold's own is left so."""
    model = normalised_conv([3, 3, 3, 3], [2, 2], pad_first=[0, 0, 2, 2], size=(10, 8))
    kept, reads = pixels.fold_input_normalisation(model)
    model = quantized(model, kept, (10, 8), tmp_path)
    assert pixels.exact_pixel_scale(model, reads)
    assert not pixels.quantize_first(model, kept, reads)
    fp32 = [n.op_type for n in model.graph.node if n.name in kept]
    assert fp32 == ["Sub", "Pad", "Pad", "Add"]
