"""What an exported graph computes, per task family, from a raw image batch.

Every graph takes float32 RGB images in [0, 1], NCHW, and does the task's normalisation
itself, so a program using it needs no cvtool and no mean/std of its own. Each family
also has a ``reference``: the checkpoint's own eager path (the task module's functions),
which the export is checked against.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.ops import nms

from cvtool.errors import InputError
from cvtool.ops.boxes import decode_boxes
from cvtool.tasks import registry
from cvtool.tasks.registry import TaskSpec

EXPORTABLE = ("classify", "detect", "segment", "style")  # registry families with a network to export
# Boxes are clipped to the image ([0, 1]); shifting each (image, class) group this far apart
# keeps groups from overlapping, so one NMS call suppresses within groups only.
GROUP_STRIDE = 2


class Normalize(nn.Module):
    """(x - mean) / std in float32, then the network's dtype."""

    def __init__(self, mean: list[float], std: list[float], dtype: torch.dtype):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).to(self.dtype)


class Classifier(nn.Module):
    """images -> probabilities (N, classes)."""

    def __init__(self, net: nn.Module, norm: Normalize):
        super().__init__()
        self.net, self.norm = net, norm

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(images)).float().softmax(1)


class Segmenter(nn.Module):
    """images -> class index of every pixel (N, H, W) at the input's size."""

    def __init__(self, net: nn.Module, norm: Normalize):
        super().__init__()
        self.net, self.norm = net, norm

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(images)).float().argmax(1)


class Styler(nn.Module):
    """images -> stylised images (N, 3, H, W) in [0, 1] at the input's size; the network takes plain pixels."""

    def __init__(self, net: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.net, self.dtype = net, dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.to(self.dtype)).float().clamp(0, 1)


class Detector(nn.Module):
    """images -> boxes (N, A, 4) in input pixels, scores (N, A), labels (N, A).

    The decoding and per-class NMS of cvtool.ops.boxes.multibox_detection, written with
    ops the ONNX exporter translates: ``torchvision.ops.nms`` over boxes shifted apart per
    image and class (batched_nms' own trick, which it picks data-dependently) and ``topk`` for
    the order. Boxes are clipped to the image (cvtool.ops.boxes.decode_boxes).
    Kept detections come first by descending score; the rest have label -1.
    """

    def __init__(self, net: nn.Module, norm: Normalize, size: tuple[int, int], nms_threshold: float,
                 min_score: float):
        super().__init__()
        self.net, self.norm = net, norm
        self.register_buffer("anchors", net.anchors_for(*size), persistent=False)
        self.register_buffer("scale", torch.tensor([size[1], size[0]] * 2, dtype=torch.float32), persistent=False)
        self.nms_threshold, self.min_score = nms_threshold, min_score

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, cls_preds, bbox_preds = self.net(self.norm(images))
        probs = F.softmax(cls_preds.float(), dim=2)
        batch, count, classes = probs.shape
        boxes = decode_boxes(self.anchors, bbox_preds.float().reshape(batch, count, 4))
        score, label = probs[..., 1:].max(dim=2)
        b, a = (score >= self.min_score).nonzero(as_tuple=True)
        group = (b * classes + label[b, a]).to(boxes.dtype)
        spread = boxes[b, a] + (group * GROUP_STRIDE)[:, None]
        keep = nms(spread, score[b, a], self.nms_threshold)
        kept = torch.zeros_like(score, dtype=torch.bool)
        kept[b[keep], a[keep]] = True
        order = torch.topk(score + 2 * kept.to(score.dtype), count, dim=1).indices
        labels = torch.where(kept, label, torch.full_like(label, -1))
        return (boxes.gather(1, order[..., None].expand(-1, -1, 4)) * self.scale,
                score.gather(1, order), labels.gather(1, order))


@dataclass
class Graph:
    """One task's export: the module to trace, its input and outputs, and the checkpoint's own path."""

    command: str
    family: str
    module: nn.Module
    size: tuple[int, int]
    mean: list[float]
    std: list[float]
    dynamic_size: bool
    outputs: list[dict[str, Any]]
    reference: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]  # segment: its logits
    classes: list[str]
    # data-dependent loops over the batch's images (torchvision's R-CNN): TorchScript scripts
    # the module, ONNX takes one image through torch.onnx's TorchScript-based exporter
    per_image: bool = False


def task_module(spec: TaskSpec) -> Any:
    """The module holding ``spec``'s code (its family's helpers live there: ``to_input``, ``decode``)."""
    return importlib.import_module(registry.load(spec.build_model).__module__)


def hook(spec: TaskSpec, name: str) -> Callable[..., Any]:
    found = getattr(task_module(spec), name, None)
    if not callable(found):
        raise InputError(f"cvtool cannot export {spec.command} yet: its module has no {name}() "
                         f"(every exportable {spec.family} task needs one)")
    return found


def normalisation(spec: TaskSpec, cfg: Any) -> tuple[list[float], list[float]]:
    """The mean/std that turn [0, 1] pixels into what the task's network was trained on."""
    if spec.family == "segment":  # read off the task's own to_input, which is affine per channel
        to_input = hook(spec, "to_input")
        low, high = (to_input(torch.full((1, 3, 1, 1), v)).flatten().double() for v in (0.0, 1.0))
        std = 1 / (high - low)
        return [round(v, 6) for v in (-low * std).tolist()], [round(v, 6) for v in std.tolist()]
    if spec.family == "style":
        return [0.0] * 3, [1.0] * 3
    if spec.family == "detect":  # SSD-style detectors see raw 0..255 pixels: (x - 0) / (1/255)
        return [0.0] * 3, [1 / 255] * 3
    return list(cfg.data.mean), list(cfg.data.std)


def default_size(spec: TaskSpec, cfg: Any) -> tuple[int, int]:
    """The size the task's predict feeds its network."""
    if spec.family == "segment":
        return tuple(cfg.data.crop_size)
    if spec.input_size is not None:
        return spec.input_size
    if spec.family == "style":
        return cfg.data.image_size, cfg.data.image_size
    return cfg.data.image_size, cfg.data.image_size


def check_size(spec: TaskSpec, cfg: Any, size: tuple[int, int]) -> None:
    """Sizes the task's predict can feed the graph (classifiers and detectors see squares)."""
    fixed = spec.input_size
    if fixed is not None and size != fixed:
        raise InputError(f"{spec.command}'s predict squashes every picture to {fixed[0]}x{fixed[1]}; "
                         f"--image-size must be {fixed[0]},{fixed[1]}")
    if spec.family in ("classify", "detect") and size[0] != size[1]:
        raise InputError(f"{spec.command} predicts on square inputs; --image-size must be N,N, "
                         f"got {size[0]},{size[1]}")


def build(spec: TaskSpec, net: nn.Module, cfg: Any, classes: list[str], size: tuple[int, int],
          half: bool) -> Graph:
    """The export graph of ``net`` (loaded, eval mode, fp32) and its reference path."""
    if isinstance(net, GeneralizedRCNN):  # by network, not by command: a two-stage detector
        from cvtool.export import rcnn  # it builds a Graph, so it imports this module

        return rcnn.build(spec, net, cfg, classes, size, half)
    mean, std = normalisation(spec, cfg)
    dtype = torch.float16 if half else torch.float32
    traced = (_copy_half(net) if half else net).eval()
    norm = Normalize(mean, std, dtype)
    exact = Normalize(mean, std, torch.float32)
    if spec.family == "classify":
        ref = Classifier(net, exact)
        outputs = [{"name": "probabilities", "dtype": "float32", "shape": ["batch", len(classes)],
                    "meaning": "softmax over the classes, in the order of `classes`"}]
        return Graph(spec.command, spec.family, Classifier(traced, norm).eval(), size, mean, std, False, outputs,
                     lambda x: (ref(x),), classes)
    if spec.family == "segment":
        to_input = hook(spec, "to_input")
        outputs = [{"name": "classes", "dtype": "int64", "shape": ["batch", "height", "width"],
                    "meaning": "class index of every pixel (index into `classes`), at the input's size"}]
        return Graph(spec.command, spec.family, Segmenter(traced, norm).eval(), size, mean, std, True, outputs,
                     lambda x: (net(to_input(x)),), classes)
    if spec.family == "style":
        outputs = [{"name": "images_out", "dtype": "float32", "shape": ["batch", 3, "height", "width"],
                    "meaning": "the stylised images, RGB in [0, 1], at the input's size"}]
        return Graph(spec.command, spec.family, Styler(traced, dtype).eval(), size, mean, std, True, outputs,
                     lambda x: (Styler(net, torch.float32)(x),), classes)
    return _detector(spec, net, traced, norm, cfg, classes, size, mean, std)


def _detector(spec: TaskSpec, net: nn.Module, traced: nn.Module, norm: Normalize, cfg: Any, classes: list[str],
              size: tuple[int, int], mean: list[float], std: list[float]) -> Graph:
    """An SSD-style detector: the net gives (anchors, class scores, offsets), the task's ``decode`` boxes."""
    decode = hook(spec, "decode")
    if not hasattr(net, "anchors_for"):
        raise InputError(f"cvtool cannot export {spec.command} yet: its network has no anchors_for()")
    d = cfg.detect
    module = Detector(traced, norm, size, d.nms_threshold, d.min_score)
    count = module.anchors.shape[1]  # one row per anchor: the graph's output size is fixed
    outputs = [
        {"name": "boxes", "dtype": "float32", "shape": ["batch", count, 4],
         "meaning": "x1, y1, x2, y2 in pixels of the input image, clipped to it; kept detections first, best first"},
        {"name": "scores", "dtype": "float32", "shape": ["batch", count],
         "meaning": "probability of the box's best object class"},
        {"name": "labels", "dtype": "int64", "shape": ["batch", count],
         "meaning": f"index into `classes`; -1 = not a detection (scored under {d.min_score} or suppressed "
                    f"by NMS at IoU {d.nms_threshold})"},
    ]

    def reference(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        anchors, cls_preds, bbox_preds = net(x * 255)
        rows = decode(cls_preds, bbox_preds, anchors, d)
        scale = torch.tensor([size[1], size[0]] * 2, dtype=torch.float32)
        return rows[..., 2:] * scale, rows[..., 1], rows[..., 0].long()

    return Graph(spec.command, spec.family, module.eval(), size, mean, std, False, outputs, reference, classes)


def _copy_half(net: nn.Module) -> nn.Module:
    """An fp16 copy (BatchNorm included); the checkpoint's fp32 model stays the reference."""
    import copy

    return copy.deepcopy(net).half()
