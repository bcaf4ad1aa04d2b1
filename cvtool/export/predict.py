"""``cvtool predict`` on an exported model: the task's own predict, the export in place of the network.

Each adapter below is an ``nn.Module`` that takes what the task's predict feeds its network
and returns what the task then decodes, computed from the export's outputs: log
probabilities for classifiers, one-hot scores for FCN and, for TinySSD, heads whose
decoding is the identity on the export's final detections (anchors = the boxes, zero
offsets, a two-way softmax giving back each score). NMS run again over detections that
already survived it keeps them all, so the printed results, pictures and JSON are the task's.
A per-image graph (R-CNN) stands in for torchvision's detection model: lists of [0, 1]
images in, one dict of its kept detections per image out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvtool import config as cfglib
from cvtool.errors import InputError
from cvtool.export import runtime
from cvtool.tasks import registry
from cvtool.tasks.registry import TaskSpec

TINY = torch.finfo(torch.float32).tiny


class _Adapter(nn.Module):
    def __init__(self, run: runtime.Runner, meta: dict[str, Any]):
        super().__init__()
        self.run = run
        self.register_buffer("mean", torch.tensor(meta["input"]["mean"]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(meta["input"]["std"]).view(1, -1, 1, 1))

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """The task's normalised input back to the export's [0, 1] pixels."""
        return x.float().cpu() * self.std + self.mean


class Probabilities(_Adapter):
    def forward(self, x: torch.Tensor, from_features: bool = False) -> torch.Tensor:
        if from_features:  # train-dog's evaluate on cached backbone features; eval turns the cache off
            raise InputError("an exported classifier takes images, not cached backbone features")
        return self.run(self.images(x))[0].clamp_min(TINY).log().to(x.device)


class Masks(_Adapter):
    def __init__(self, run: runtime.Runner, meta: dict[str, Any]):
        super().__init__(run, meta)
        self.classes = len(meta["classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices = self.run(self.images(x))[0].long()
        return F.one_hot(indices, self.classes).permute(0, 3, 1, 2).float().to(x.device)


class Detections(_Adapter):
    def __init__(self, run: runtime.Runner, meta: dict[str, Any]):
        super().__init__(run, meta)
        h, w = meta["input"]["size"]
        self.register_buffer("scale", torch.tensor([w, h, w, h], dtype=torch.float32))
        self.classes = len(meta["classes"])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.shape[0] != 1:
            raise InputError("an exported detector is run one image at a time here")
        boxes, scores, labels = self.run(self.images(x))
        kept = labels[0] >= 0
        probs = torch.zeros(boxes.shape[1], self.classes + 1)
        probs[:, 0] = 1.0
        rows = kept.nonzero()[:, 0]
        probs[rows, 0] = 1 - scores[0, rows]
        probs[rows, labels[0, rows] + 1] = scores[0, rows]
        anchors = boxes[0] / self.scale
        return (anchors[None].to(x.device), probs.clamp_min(TINY).log()[None].to(x.device),
                torch.zeros(1, boxes.shape[1] * 4, device=x.device))


class Pictures(_Adapter):
    """A style network's export: [0, 1] pixels in and out, as the network itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.images(x))[0].to(x.device)


class ImageLists(nn.Module):
    """Stands in for torchvision's detection model in eval mode, whose labels count background as 0 (+ 1)."""

    def __init__(self, run: runtime.Runner, meta: dict[str, Any]):
        super().__init__()
        self.run = run

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        found = []
        for image in images:
            boxes, scores, labels = (t[0].to(image.device) for t in self.run(image[None]))
            kept = labels >= 0
            found.append({"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept] + 1})
        return found


ADAPTERS = {"classify": Probabilities, "segment": Masks, "detect": Detections, "style": Pictures}  # by family


@dataclass
class Loaded:
    """What ``cvtool predict`` needs, read from an export instead of a checkpoint."""

    spec: TaskSpec
    config: Any
    metadata: dict[str, Any]
    model: nn.Module


def is_export(path: Path) -> bool:
    """Whether ``path`` is named like a model ``cvtool export`` writes (.onnx, .torchscript)."""
    return runtime.format_of(path) is not None


def load(path: Path, device: str = "cpu") -> Loaded:
    fmt = runtime.format_of(path)
    if fmt is None:
        raise InputError(f"{path} is not an exported model (.onnx or .torchscript)")
    meta = runtime.read_meta(path)
    spec = registry.get(meta["task"])
    if spec.family not in ADAPTERS or meta.get("family") != spec.family:
        raise InputError(f"{runtime.meta_path(path)} names model family {meta.get('family')!r}, "
                         f"not {spec.command}'s {spec.family!r}")
    config = cfglib.from_dict(spec.config, meta["config"])
    adapter = ImageLists if meta.get("per_image") else ADAPTERS[spec.family]
    model = adapter(runtime.Runner(path, fmt, device), meta)
    return Loaded(spec, config, meta.get("metadata", {}), model)
