"""The image's way into an INT8 graph: the normalisation folded into the first convolution, the
pixels laid out for ONNX Runtime's faster int8 kernels, quantized exactly.

8-bit pixels quantized at scale 1/255 lose nothing, where the normalised image, one range over
three channel ranges, would be rounded; and once the first convolution reads them, it is int8
too. Every rewrite keeps the numbers; docs/export.md has the measurements behind each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvtool.export import rewrite


def _zero_pad(node: Any, weights: dict[str, np.ndarray]) -> bool:
    """A Pad that fills with zeros (its pads may be computed, e.g. from the input's size)."""
    if node.op_type != "Pad" or rewrite.attributes(node).get("mode", b"constant") not in (b"constant", "constant"):
        return False
    value = node.input[2] if len(node.input) > 2 else ""
    return not value or (value in weights and not weights[value].any())


def _static_size(model: Any, pads: list[int]) -> tuple[int, int] | None:
    """The padded image's (height, width) when the graph's input has a fixed size."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[2:]]
    if len(dims) != 2 or not all(dims):
        return None
    half = len(pads) // 2
    return dims[0] + pads[0] + pads[half], dims[1] + pads[1] + pads[half + 1]


def _pixel_layout(w: np.ndarray, attrs: dict[str, Any], size: tuple[int, int] | None) -> tuple[np.ndarray, int, int]:
    """(weight, channels added, block) for the convolution that reads the pixels.

    ONNX Runtime's int8 convolution is slow on three input channels (slower than fp32 there). A
    stride-2 one over a fixed even size becomes a stride-1 one over 2x2 blocks (SpaceToDepth: 12
    channels, the kernel rounded up to even with zero taps): ResNet's 7x7 stem 0.66 -> 0.37 ms. Any
    other gets a fourth, zero channel: TinySSD's 3x3 at 256 px 0.97 -> 0.50 ms."""
    strides = list(attrs.get("strides", [1, 1]))
    if (strides == [2, 2] and size is not None and not size[0] % 2 and not size[1] % 2
            and set(attrs.get("dilations", [1, 1])) == {1}):
        out, c, kh, kw = w.shape
        padded = np.zeros((out, c, kh + kh % 2, kw + kw % 2), w.dtype)
        padded[:, :, :kh, :kw] = w
        blocks = padded.reshape(out, c, (kh + 1) // 2, 2, (kw + 1) // 2, 2).transpose(0, 3, 5, 1, 2, 4)
        return blocks.reshape(out, 4 * c, (kh + 1) // 2, (kw + 1) // 2), 0, 2
    extra = -w.shape[1] % 4
    return np.concatenate([w, np.zeros((w.shape[0], extra, *w.shape[2:]), w.dtype)], 1), extra, 0


def fold_input_normalisation(model: Any) -> tuple[list[str], str]:
    """Fold the graph's ``(images - mean) / std`` into the convolution that reads it, so that the
    convolution reads the [0, 1] pixels themselves; returns the names of the fp32 nodes that now lay
    out the image and the pixels' tensor the convolution reads (``[], ""`` when the graph does not
    start so).

    8-bit pixels quantized at scale 1/255 lose nothing (``exact_pixel_scale``), where the normalised
    image, one range over three channel ranges, would be rounded. Zero padding of the normalised
    image (the convolution's own, and zero-constant Pad nodes before it, e.g. FCN's to a multiple
    of 32) is padding with ``mean`` in pixels, so the pixels are padded that way ((x - mean),
    zero-padded, + mean) and the convolution itself pads nothing: the same numbers. The pixels are
    then laid out for a faster kernel (``_pixel_layout``)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    sub = next((n for n in graph.node if n.op_type == "Sub" and n.input[0] == graph.input[0].name), None)
    div = rewrite.only_consumer(graph, sub.output[0]) if sub is not None else None
    if div is None or div.op_type != "Div":
        return [], ""
    pads_before, conv = [], rewrite.only_consumer(graph, div.output[0])
    while conv is not None and _zero_pad(conv, weights):
        pads_before.append(conv)
        conv = rewrite.only_consumer(graph, conv.output[0])
    reads = pads_before[-1].output[0] if pads_before else div.output[0]
    if conv is None or conv.op_type != "Conv" or conv.input[0] != reads:
        return [], ""
    attrs = rewrite.attributes(conv)
    mean, std, w = (weights.get(name) for name in (sub.input[1], div.input[1], conv.input[1]))
    if (mean is None or std is None or w is None or attrs.get("group", 1) != 1
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or mean.size != w.shape[1]):
        return [], ""
    mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
    bias = weights[conv.input[2]] if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0], w.dtype)
    name = conv.name or conv.output[0]
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    half = len(pads) // 2
    weight, extra, block = _pixel_layout((w / std).astype(w.dtype), attrs, None if pads_before else
                                         _static_size(model, pads))
    graph.initializer.extend([numpy_helper.from_array(weight, f"{name}.pixel_weight"),
                              numpy_helper.from_array((bias - (w * mean / std).sum((1, 2, 3))).astype(w.dtype),
                                                      f"{name}.pixel_bias"),
                              numpy_helper.from_array(np.array([0, 0, *pads[:half], 0, extra, *pads[half:]], np.int64),
                                                      f"{name}.pixel_pads"),
                              numpy_helper.from_array(np.concatenate([mean, np.zeros((1, extra, 1, 1), mean.dtype)], 1),
                                                      f"{name}.pixel_mean")])
    centred = bool(mean.any())  # else the pixels are the normalised image's numbers before the scaling
    start = sub.output[0] if centred else sub.input[0]
    if pads_before:  # they pad (x - mean) now; the convolution's own padding follows theirs
        pads_before[0].input[0] = start
    tensor = pads_before[-1].output[0] if pads_before else start
    nodes = []
    for op, needed, inputs, attributes in (("Pad", any(pads) or extra, [f"{name}.pixel_pads"], {}),
                                           ("Add", centred, [f"{name}.pixel_mean"], {}),
                                           ("SpaceToDepth", block, [], {"blocksize": block})):
        if needed:
            nodes.append(helper.make_node(op, [tensor, *inputs], [f"{name}.{op.lower()}"], name=f"{name}.{op.lower()}",
                                          **attributes))
            tensor = nodes[-1].output[0]
    kept = [*([sub.name] if centred else []), *(n.name for n in pads_before), *(n.name for n in nodes)]
    fold = helper.make_node("Conv", [tensor, f"{name}.pixel_weight", f"{name}.pixel_bias"], list(conv.output),
                            name=name, **{**attrs, "pads": [0] * len(pads), "kernel_shape": list(weight.shape[2:]),
                                          **({"strides": [1, 1]} if block else {})})
    order = [n for n in graph.node if n is not div and (centred or n is not sub)]
    at = order.index(conv)
    order[at:at + 1] = [*nodes, fold]
    del graph.node[:]
    graph.node.extend(order)
    used = {i for n in graph.node for i in n.input}
    for unused in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(unused)
    return kept, tensor


def exact_pixel_scale(model: Any, pixels: str) -> bool:
    """Quantize the tensor ``pixels`` ([0, 1] images) at scale 1/255, zero point 0: lossless for 8-bit
    pictures, where a calibrated range (e.g. [0.02, 0.98]) would round every pixel. True when found.
    Its DequantizeLinear shares the scale and zero point."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    found = False
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == pixels:
            scale, zero = inits[node.input[1]], inits[node.input[2]]
            scale.CopyFrom(numpy_helper.from_array(np.array(1 / 255, numpy_helper.to_array(scale).dtype), scale.name))
            zero.CopyFrom(numpy_helper.from_array(np.array(0, numpy_helper.to_array(zero).dtype), zero.name))
            found = True
    return found


def quantize_first(model: Any, layout: list[str], pixels: str) -> bool:
    """Quantize the image as it comes in and lay it out in 8 bits: the fp32 ``layout`` nodes (the
    mean shift, padding, blocks) and the QuantizeLinear of ``pixels`` become QuantizeLinear, Pad,
    Max (the mean's border, a constant where the pixels are 0) and SpaceToDepth on uint8, a quarter
    of the memory. The same numbers: a pixel quantized is a pixel, the mean's border quantized is
    the mean's. Only for a fixed image size without computed pads (the border is a constant) and
    after ``exact_pixel_scale``; True when done."""
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = {n.name: n for n in graph.node}
    steps = [nodes[name] for name in layout if name in nodes]
    quant = next((n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == pixels), None)
    ops = [n.op_type for n in steps]
    if (quant is None or not steps or len(steps) != len(layout) or ops.count("Pad") > 1
            or not set(ops) <= {"Sub", "Pad", "Add", "SpaceToDepth"}):
        return False
    pad = next((n for n in steps if n.op_type == "Pad"), None)
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    if pad is not None and pad.input[1] not in weights:  # computed from the image's size
        return False
    pads = weights[pad.input[1]].tolist() if pad is not None else [0] * 8
    size = _static_size(model, pads[2:4] + pads[6:8])
    scale, zero = (weights[name] for name in quant.input[1:3])
    if size is None or scale != np.float32(1 / 255) or zero != 0:
        return False
    image = graph.input[0].name
    made, tensor = [], f"{pixels}.quantized"
    quant.input[0], out = image, quant.output[0]
    quant.output[0] = tensor
    for step in steps:
        if step.op_type == "Pad":
            made.append(helper.make_node("Pad", [tensor, step.input[1]], [f"{tensor}.pad"], name=f"{step.name}.u8"))
        elif step.op_type == "Add":
            mean = weights[step.input[1]].reshape(1, -1, 1, 1)
            border = np.broadcast_to(np.round(mean / scale), (1, mean.shape[1], *size)).astype(np.uint8).copy()
            border[:, :, pads[2]:size[0] - pads[6], pads[3]:size[1] - pads[7]] = 0
            graph.initializer.append(numpy_helper.from_array(border, f"{step.name}.border"))
            made.append(helper.make_node("Max", [tensor, f"{step.name}.border"], [f"{tensor}.max"],
                                         name=f"{step.name}.u8"))
        elif step.op_type == "SpaceToDepth":
            made.append(helper.make_node("SpaceToDepth", [tensor], [f"{tensor}.blocks"], name=f"{step.name}.u8",
                                         blocksize=rewrite.attributes(step)["blocksize"]))
        else:  # the Sub: the Add's border stands for both
            continue
        tensor = made[-1].output[0]
    (made[-1] if made else quant).output[0] = out
    order = [n for n in graph.node if n.name not in layout]
    at = order.index(quant) + 1
    order[at:at] = made
    del graph.node[:]
    graph.node.extend(order)
    used = {i for n in graph.node for i in n.input}
    for unused in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(unused)
    return True
