"""ONNX graph rewrites that keep a graph's numbers but give ONNX Runtime cheaper kernels.

All are for `--int8` (cvtool/export/quantize.py; the image's own are in cvtool/export/pixels.py);
docs/export.md has the measurements. FCN's class ArgMax moves before the DepthToSpace below; int8
weights of deep sums move to zero point -1 (AMX GEMM).
FCN's upsampling is a ConvTranspose whose kernel is twice its stride (64 and 32). Each output
pixel then sums the contributions of a 2x2 window of input pixels, one tap per phase of the
stride, so the same sums are a 2x2 Conv with stride x stride times the output channels,
followed by DepthToSpace and a crop. ONNX Runtime runs that Conv as one large GEMM (and, once
quantized, as an int8 one), where its ConvTranspose does a 21-deep GEMM and then scatters a
column buffer four times the output's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INT64_MAX = np.iinfo(np.int64).max
# a convolution summing fewer terms per output (input channels x kernel taps) ran faster in ONNX
# Runtime's symmetric kernels: 3x3 over 64 channels (576) 0.21 vs 0.35 ms at 64x64 px, over 128
# (1152) 0.19 vs 0.22 at 32x32 (docs/export.md)
DEEP = 1024


def attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _phase_split(node: Any, weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[int], int] | None:
    """(conv weight, bias, pads, stride) for a ConvTranspose this rewrite covers, else None."""
    attrs = attributes(node)
    w = weights.get(node.input[1])
    if w is None or w.ndim != 4 or attrs.get("group", 1) != 1 or "output_shape" in attrs:
        return None
    stride = list(attrs.get("strides", [1, 1]))
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if (stride[0] != stride[1] or kernel != [2 * stride[0]] * 2 or any(d != 1 for d in attrs.get("dilations", [1, 1]))
            or any(attrs.get("output_padding", [0, 0])) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or any(p < 0 or p > stride[0] for p in pads)):
        return None
    s = stride[0]
    c_in, c_out = w.shape[:2]
    # w[ci, co, A*s + r1, B*s + r2]: tap A=1 reads input row q-1, A=0 row q, for output row q*s + r1
    phased = w.reshape(c_in, c_out, 2, s, 2, s).transpose(1, 3, 5, 0, 2, 4)[..., ::-1, ::-1]
    conv_w = np.ascontiguousarray(phased.reshape(c_out * s * s, c_in, 2, 2))
    bias = weights.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    conv_b = np.repeat(bias if bias is not None else np.zeros(c_out, w.dtype), s * s)
    return conv_w, conv_b.astype(w.dtype), pads, s


def split_transposed_convolutions(model: Any) -> int:
    """Rewrite ``model`` in place (see the module docstring); returns how many nodes were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes, done, replaced = [], 0, set()
    for node in graph.node:
        found = _phase_split(node, weights) if node.op_type == "ConvTranspose" else None
        if found is None:
            nodes.append(node)
            continue
        conv_w, conv_b, pads, s = found
        name = node.name or node.output[0]
        ends = np.array([-p if p else INT64_MAX for p in pads[2:]], np.int64)
        crop = [f"{name}.spread", f"{name}.crop_starts", f"{name}.crop_ends", f"{name}.crop_axes"]
        graph.initializer.extend([numpy_helper.from_array(conv_w, f"{name}.phase_weight"),
                                  numpy_helper.from_array(conv_b, f"{name}.phase_bias"),
                                  numpy_helper.from_array(np.array(pads[:2], np.int64), f"{name}.crop_starts"),
                                  numpy_helper.from_array(ends, f"{name}.crop_ends"),
                                  numpy_helper.from_array(np.array([2, 3], np.int64), f"{name}.crop_axes")])
        nodes += [
            helper.make_node("Conv", [node.input[0], f"{name}.phase_weight", f"{name}.phase_bias"], [f"{name}.phases"],
                             name=f"{name}.phase_conv", kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
            helper.make_node("DepthToSpace", [f"{name}.phases"], [f"{name}.spread"], name=f"{name}.depth_to_space",
                             blocksize=s, mode="CRD"),
            helper.make_node("Slice", crop, [node.output[0]], name=f"{name}.crop"),
        ]
        done += 1
        replaced.update(node.input[1:])
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    for tensor in [t for t in graph.initializer if t.name in replaced - used]:
        graph.initializer.remove(tensor)  # the transposed weights: dead weight in the file
    return done


def shift_weight_zero_points(model: Any, min_depth: int = DEEP) -> int:
    """Give every int8 convolution weight of zero point 0 the zero point -1 (its values one lower:
    the same numbers); returns how many were shifted.

    ONNX Runtime runs a QLinearConv whose weights have zero point 0 through its symmetric
    indirect-convolution kernels (AVX512-VNNI at most), and any other through its quantized
    GEMM, which uses AMX where the CPU has it: several times faster for the same result on deep
    sums (``DEEP``), slower on shallow ones.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    weight_of = {n.input[1] for n in graph.node if n.op_type == "Conv" and len(n.input) > 1}
    shifted = 0
    for node in graph.node:
        if (node.op_type != "DequantizeLinear" or node.output[0] not in weight_of or len(node.input) < 3
                or node.input[0] not in inits or node.input[2] not in inits):
            continue
        w, z = (numpy_helper.to_array(inits[name]) for name in node.input[::2])
        if w.dtype != np.int8 or np.any(z != 0) or w.min() == -128 or w[0].size < min_depth:
            continue
        inits[node.input[0]].CopyFrom(numpy_helper.from_array((w - 1).astype(np.int8), node.input[0]))
        inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.full_like(z, -1), node.input[2]))
        shifted += 1
    return shifted


def only_consumer(graph: Any, name: str) -> Any | None:
    users = [n for n in graph.node if name in n.input]
    return users[0] if len(users) == 1 and not any(o.name == name for o in graph.output) else None


def _spatial_crop(node: Any, weights: dict[str, np.ndarray]) -> bool:
    """A Slice whose (constant) axes leave the channels whole."""
    if node.op_type != "Slice" or len(node.input) < 4 or node.input[3] not in weights:
        return False
    return not {1, -3} & {int(a) for a in weights[node.input[3]].reshape(-1)}


def argmax_before_depth_to_space(model: Any) -> int:
    """Take a per-pixel class ArgMax before the DepthToSpace that spreads the split upsampling's
    phases (and the crops after it) instead of after: DepthToSpace only moves values, so each output
    pixel's class scores are the same numbers either way, and the spreading and cropping then move
    one int map instead of every class's full-size scores (a third of FCN's int8 time). Returns how
    many were rewritten."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    done = 0
    for spread in [n for n in graph.node if n.op_type == "DepthToSpace"]:
        attrs = attributes(spread)
        conv = producer.get(spread.input[0])
        if attrs.get("mode", b"DCR") not in (b"CRD", "CRD") or conv is None or conv.op_type != "Conv":
            continue
        block, w = int(attrs["blocksize"]), weights.get(conv.input[1])
        crops, node = [], only_consumer(graph, spread.output[0])
        while node is not None and _spatial_crop(node, weights):
            crops.append(node)
            node = only_consumer(graph, node.output[0])
        argmax = node
        if (w is None or argmax is None or argmax.op_type != "ArgMax" or attributes(argmax).get("axis") != 1
                or attributes(argmax).get("keepdims", 1) != 0 or attributes(argmax).get("select_last_index", 0)):
            continue
        name, classes, phases = spread.name or spread.output[0], w.shape[0] // (block * block), block * block
        graph.initializer.extend([
            numpy_helper.from_array(np.array([0, classes, phases], np.int64), f"{name}.grouped"),
            numpy_helper.from_array(np.array([2], np.int64), f"{name}.from"),
            numpy_helper.from_array(np.array([4], np.int64), f"{name}.to"),
            numpy_helper.from_array(np.array([1], np.int64), f"{name}.channel")])
        def step(op: str, inputs: list[str], out: str, **attrs: Any) -> Any:
            return helper.make_node(op, inputs, [out], name=out, **attrs)

        new = [step("Shape", [spread.input[0]], f"{name}.shape"),
               step("Slice", [f"{name}.shape", f"{name}.from", f"{name}.to"], f"{name}.hw"),
               step("Concat", [f"{name}.grouped", f"{name}.hw"], f"{name}.target", axis=0),
               step("Reshape", [spread.input[0], f"{name}.target"], f"{name}.by_class"),
               step("ArgMax", [f"{name}.by_class"], f"{name}.best", axis=1, keepdims=0),
               step("Cast", [f"{name}.best"], f"{name}.best_float", to=TensorProto.FLOAT),
               helper.make_node("DepthToSpace", [f"{name}.best_float"], [spread.output[0]], name=name,
                                blocksize=block, mode="CRD")]
        last = crops[-1].output[0] if crops else spread.output[0]
        tail = [step("Squeeze", [last, f"{name}.channel"], f"{name}.classes"),
                helper.make_node("Cast", [f"{name}.classes"], list(argmax.output), name=f"{name}.as_index",
                                 to=TensorProto.INT64)]
        order = [n for n in graph.node if n is not argmax]
        at = order.index(spread)
        order[at:at + 1] = new
        at = order.index(crops[-1]) + 1 if crops else at + len(new)
        order[at:at] = tail
        del graph.node[:]
        graph.node.extend(order)
        changed = {spread.output[0], *(c.output[0] for c in crops)}  # one channel now: their recorded shapes are stale
        for info in [v for v in graph.value_info if v.name in changed]:
            graph.value_info.remove(info)
        done += 1
    return done
