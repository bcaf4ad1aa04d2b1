"""INT8 ONNX: ONNX Runtime's static quantization (QDQ, per-channel int8 weights, uint8 activations).

Calibration feeds the fp32 graph training images: the task's own training split with its
augmentation switched off (classifiers then read them through their eval transform; the
detectors and FCN at their training size, FCN as random crops), turned back into the
graph's [0, 1] RGB input. The whole network is quantized (every op ONNX Runtime has an int8
kernel for, so no tensor leaves 8 bits between two convolutions) except its last layers; the
post-processing (softmax, argmax, box decoding, NMS) stays fp32. The normalisation is folded into
the first convolution, which then reads the pixels at scale 1/255: lossless for 8-bit pictures.
Rewrites that keep the numbers pick ONNX Runtime's faster kernels (cvtool/export/rewrite.py);
docs/export.md has the measurements behind each choice.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from cvtool import config as cfglib
from cvtool.errors import InputError
from cvtool.export import pixels, rewrite
from cvtool.export.graphs import Graph
from cvtool.resolve import Overrides, split_overrides
from cvtool.tasks import registry

DEFAULT_IMAGES = 256
METHOD = "MinMax"  # what was measured best here; docs/export.md has the comparison
LAYERS = ("Conv", "Gemm", "MatMul")  # the layers with weights; the network is what feeds them
NO_AUGMENT = {"data.flip": False, "data.scale_jitter": 0.0, "data.scale_range": [1.0, 1.0]}


def refuse(graph_command: str, per_image: bool, fmt: str, half: bool, images: int) -> None:
    """--int8's preconditions, each one line (exit 2)."""
    if per_image:
        raise InputError(f"--int8 is not available for {graph_command}: its RoI Align, proposal and NMS steps "
                         f"are exported and checked in float32 only")
    if fmt != "onnx":
        raise InputError("--int8 is for --format onnx (ONNX Runtime's static quantization)")
    if half:
        raise InputError("--int8 and --half exclude each other; pick one")
    if images < 1:
        raise InputError(f"--calib-images must be at least 1, got {images}")


def calibration_config(spec_config: type, config: dict[str, Any], overrides: Overrides = None) -> Any:
    """The checkpoint's config with export's ``--set`` changes (a moved data.root) and augmentation
    off wherever the task has a switch for it."""
    sets, typed = split_overrides(overrides)
    cfg = cfglib.load(spec_config, None, sets, values=typed, base=config)
    data = cfg.data
    for key, value in NO_AUGMENT.items():
        name = key.split(".")[1]
        if hasattr(data, name):
            setattr(data, name, value)
    if isinstance(getattr(data, "augment", None), bool):
        data.augment = False
    elif isinstance(getattr(data, "augment", None), str):
        data.augment = "none"
    if hasattr(data, "num_workers"):
        data.num_workers = 0
    return cfg


def calibration_images(graph: Graph, config: dict[str, Any], count: int,
                       overrides: Overrides = None) -> tuple[list[torch.Tensor], str]:
    """Up to ``count`` training images as the graph takes them ([0, 1], its size), in a fixed order."""
    spec = registry.get(graph.command)
    cfg = calibration_config(spec.config, config, overrides)
    with contextlib.redirect_stderr(io.StringIO()):
        task = spec.build(cfg)
    data = task.train_data
    total = len(data)
    if total == 0:
        raise InputError(f"{graph.command}'s training split is empty: nothing to calibrate --int8 on")
    torch.manual_seed(0)
    picked = torch.linspace(0, total - 1, min(count, total)).round().long().unique().tolist()
    mean = torch.tensor(graph.mean).view(3, 1, 1)
    std = torch.tensor(graph.std).view(3, 1, 1)
    images = [_as_input(data[i], mean, std, graph) for i in picked]
    return images, f"{len(images)} of {total} training images from {cfg.data.root}"


def _as_input(item: Any, mean: torch.Tensor, std: torch.Tensor, graph: Graph) -> torch.Tensor:
    x = item["image"] if isinstance(item, dict) else item[0]
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float() * std + mean
    if not graph.dynamic_size and tuple(x.shape[-2:]) != tuple(graph.size):
        x = F.interpolate(x[None], size=graph.size, mode="bilinear", align_corners=False)[0]
    return x.clamp(0, 1)


def _consumers(nodes: Any) -> dict[str, list[Any]]:
    feeds: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            feeds.setdefault(name, []).append(node)
    return feeds


def network(model: Any) -> set[str]:
    """Names of the nodes that feed a layer with weights, and those layers: everything but the post-processing."""
    producer = {out: node for node in model.graph.node for out in node.output}
    found: set[str] = set()
    stack = [n for n in model.graph.node if n.op_type in LAYERS]
    while stack:
        node = stack.pop()
        if node.name not in found:
            found.add(node.name)
            stack += [producer[name] for name in node.input if name in producer]
    return found


def last_layers(model: Any) -> list[str]:
    """The layers that feed no other layer: each network's last one (classifier, SSD heads, FCN's class scores)."""
    feeds = _consumers(model.graph.node)

    def reaches_layer(name: str, seen: set[str]) -> bool:
        for node in feeds.get(name, []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in LAYERS or any(reaches_layer(o, seen) for o in node.output):
                return True
        return False

    return [n.name for n in model.graph.node if n.op_type in LAYERS
            and not any(reaches_layer(o, set()) for o in n.output)]


def first_layers(model: Any) -> list[str]:
    """The layers no other layer feeds: the ones that read the (normalised) image."""
    producer = {out: node for node in model.graph.node for out in node.output}

    def after_layer(node: Any, seen: set[str]) -> bool:
        for name in node.input:
            source = producer.get(name)
            if source is None or source.name in seen:
                continue
            seen.add(source.name)
            if source.op_type in LAYERS or after_layer(source, seen):
                return True
        return False

    return [n.name for n in model.graph.node if n.op_type in LAYERS and not after_layer(n, set())]


class Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of images, one a batch."""

    def __init__(self, images: list[torch.Tensor]):
        self.images = images
        self.rewind()

    def rewind(self) -> None:
        self._it: Iterator[torch.Tensor] = iter(self.images)

    def get_next(self) -> dict[str, Any] | None:
        x = next(self._it, None)
        return None if x is None else {"images": x[None].contiguous().numpy()}


def quantize_with(source: Path, target: Path, images: list[torch.Tensor]) -> dict[str, Any]:
    """Write the INT8 model of ``source`` calibrated on ``images``; returns what was kept fp32 and rewritten.

    The last layers stay fp32: 8 bits cost accuracy there (the scores that decide the answer) for
    little time. The first reads the pixels at 1/255 once the normalisation is folded into it (in
    a graph that does not begin so, it stays fp32 as well: its input would be rounded)."""
    import onnx
    from onnxruntime import quantization as q

    model = onnx.load(str(source))
    split = rewrite.split_transposed_convolutions(model)
    argmax_first = rewrite.argmax_before_depth_to_space(model)
    layout, reads = pixels.fold_input_normalisation(model)
    inside = network(model)
    kept = (layout if reads else first_layers(model)) + last_layers(model)
    post = [n for n in model.graph.node if n.name not in inside]
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        q.quantize_static(model, str(target), Reader(images), quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          nodes_to_exclude=kept + [n.name for n in post],
                          calibrate_method=getattr(q.CalibrationMethod, METHOD))
    quantized = onnx.load(str(target))
    shifted = rewrite.shift_weight_zero_points(quantized)
    exact = bool(reads) and pixels.exact_pixel_scale(quantized, reads)
    first = exact and pixels.quantize_first(quantized, layout, reads)
    onnx.save(quantized, str(target))
    return {"kept_fp32": [name for name in kept if not (first and name in layout)],
            "post_processing_fp32": sorted({n.op_type for n in post}),
            "rewrites": {"transposed_convolutions_split": split, "argmax_before_depth_to_space": argmax_first,
                         "weight_zero_points_shifted": shifted,
                         "normalisation_folded": bool(reads), "pixels_at_1_255": exact,
                         "pixels_quantized_first": first}}


def quantize(graph: Graph, source: Path, target: Path, config: dict[str, Any], count: int,
             overrides: Overrides = None) -> dict[str, Any]:
    """Write the INT8 model of the fp32 ONNX ``source`` to ``target``; returns the JSON's ``int8`` record."""
    images, where = calibration_images(graph, config, count, overrides)
    done = quantize_with(source, target, images)
    return {"method": "onnxruntime static quantization", "format": "QDQ", "weights": "int8, per channel",
            "activations": "uint8", "quantized": "the network, every op type ONNX Runtime quantizes", **done,
            "calibration": {"images": len(images), "requested": count, "source": where,
                            "method": METHOD}}
