"""INT8 ONNX: ONNX Runtime's static quantization (QDQ, per-channel int8 weights, uint8 activations).

Calibration feeds the fp32 graph training images: the task's own training split with its
augmentation switched off (classifiers then read them through their eval transform; the
detectors and FCN at their training size, FCN as random crops), turned back into the
graph's [0, 1] RGB input. Only the convolutions and matrix products are quantized; the
pre- and post-processing (normalisation, softmax, argmax, box decoding, NMS) stays fp32,
and so does each network's last layer (the classifier head, the SSD prediction heads,
FCN's upsampling), which is where 8 bits cost accuracy for almost no time.
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
from cvtool.export.graphs import Graph
from cvtool.tasks import registry

DEFAULT_IMAGES = 256
METHOD = "MinMax"  # what was measured best here; docs/export.md has the comparison
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]
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


def calibration_config(spec_config: type, config: dict[str, Any]) -> Any:
    """The checkpoint's config with augmentation off wherever the task has a switch for it."""
    cfg = cfglib.from_dict(spec_config, config)
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


def calibration_images(graph: Graph, config: dict[str, Any], count: int) -> tuple[list[torch.Tensor], str]:
    """Up to ``count`` training images as the graph takes them ([0, 1], its size), in a fixed order."""
    spec = registry.get(graph.command)
    cfg = calibration_config(spec.config, config)
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


def last_layers(model: Path) -> list[str]:
    """The quantizable nodes that produce no input of another quantizable node: each network's last layer."""
    import onnx

    nodes = onnx.load(str(model), load_external_data=False).graph.node
    feeds: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            feeds.setdefault(name, []).append(node)

    def reaches_quantized(name: str, seen: set[str]) -> bool:
        for node in feeds.get(name, []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in QUANTIZED_OPS or any(reaches_quantized(o, seen) for o in node.output):
                return True
        return False

    return [n.name for n in nodes if n.op_type in QUANTIZED_OPS
            and not any(reaches_quantized(o, set()) for o in n.output)]


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


def quantize_with(source: Path, target: Path, images: list[torch.Tensor]) -> list[str]:
    """The INT8 model of ``source`` calibrated on ``images``; returns the nodes kept fp32."""
    from onnxruntime import quantization as q

    kept = last_layers(source)
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        q.quantize_static(str(source), str(target), Reader(images), quant_format=q.QuantFormat.QDQ,
                          op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          nodes_to_exclude=kept, calibrate_method=getattr(q.CalibrationMethod, METHOD))
    return kept


def quantize(graph: Graph, source: Path, target: Path, config: dict[str, Any], count: int) -> dict[str, Any]:
    """Write the INT8 model of the fp32 ONNX ``source`` to ``target``; returns the JSON's ``int8`` record."""
    images, where = calibration_images(graph, config, count)
    kept = quantize_with(source, target, images)
    return {"method": "onnxruntime static quantization", "format": "QDQ", "weights": "int8, per channel",
            "activations": "uint8", "quantized_ops": QUANTIZED_OPS, "kept_fp32": kept,
            "calibration": {"images": len(images), "requested": count, "source": where,
                            "method": METHOD}}
