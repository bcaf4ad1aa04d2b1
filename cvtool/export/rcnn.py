"""The export graph of a torchvision two-stage detector (train-rcnn's Faster R-CNN).

Its proposal and detection counts depend on the image, and it loops over the images of a
batch, so it is scripted for TorchScript (any batch) and exported to ONNX by torch.onnx's
TorchScript-based exporter at a batch of 1 (the torch.export-based one stops at the first
data-dependent count). Outputs are padded to ``detect.max_detections`` rows, label -1 for
padding, so they have TinySSD's layout and the same parity check applies.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from cvtool.errors import InputError
from cvtool.export.graphs import Graph
from cvtool.tasks.registry import TaskSpec


def padded(detections: list[dict[str, torch.Tensor]], rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's per-image detections as (N, rows, 4) boxes, (N, rows) scores and labels
    (index into the classes: torchvision's label - 1; -1 below the image's detections)."""
    boxes, scores, labels = [], [], []
    for found in detections:
        box = found["boxes"]
        boxes.append(torch.cat([box, box.new_zeros([rows, 4])])[:rows])
        scores.append(torch.cat([found["scores"], box.new_zeros([rows])])[:rows])
        label = found["labels"] - 1
        labels.append(torch.cat([label, torch.full([rows], -1, dtype=label.dtype, device=label.device)])[:rows])
    return torch.stack(boxes), torch.stack(scores), torch.stack(labels)


class TwoStage(nn.Module):
    """images -> boxes (N, R, 4) in input pixels, scores (N, R), labels (N, R), best first.

    GeneralizedRCNN's eval forward taken apart, because scripted it returns a (losses,
    detections) pair and eagerly only the detections; its transform normalises the images.
    """

    def __init__(self, net: GeneralizedRCNN, rows: int, min_score: float):
        super().__init__()
        self.net, self.rows, self.min_score = net, rows, min_score

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pictures = list(images.unbind(0))
        sizes = [(int(p.shape[-2]), int(p.shape[-1])) for p in pictures]
        batch, _ = self.net.transform(pictures)
        features = self.net.backbone(batch.tensors)
        proposals, _ = self.net.rpn(batch, features)
        found, _ = self.net.roi_heads(features, proposals, batch.image_sizes)
        return padded(self.net.transform.postprocess(found, batch.image_sizes, sizes), self.rows)


def build(spec: TaskSpec, net: GeneralizedRCNN, cfg: Any, classes: list[str], size: tuple[int, int],
          half: bool) -> Graph:
    """The graph of ``net`` (loaded, eval mode) at ``size``; its reference is ``net`` itself on lists."""
    if half:
        raise InputError(f"--half is not supported for {spec.command}: torchvision's detection ops "
                         f"(RoI align, NMS) are exported and checked in float32 only")
    # the network's own resize then keeps inputs of the export size as they are
    net.transform.min_size, net.transform.max_size = (size[0],), size[0]
    rows = cfg.detect.max_detections
    mean = [float(v) for v in net.transform.image_mean]
    std = [float(v) for v in net.transform.image_std]
    outputs = [
        {"name": "boxes", "dtype": "float32", "shape": ["batch", rows, 4],
         "meaning": "x1, y1, x2, y2 in pixels of the input image, clipped to it; detections first, best first, then zeros"},
        {"name": "scores", "dtype": "float32", "shape": ["batch", rows],
         "meaning": "the detection's class score (0 on padding rows)"},
        {"name": "labels", "dtype": "int64", "shape": ["batch", rows],
         "meaning": f"index into `classes`; -1 = padding (the image has fewer than {rows} detections scoring at "
                    f"least {cfg.detect.min_score} after NMS at IoU {cfg.detect.nms_threshold})"},
    ]

    def reference(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return padded(net(list(x)), rows)

    module = TwoStage(net, rows, cfg.detect.min_score).eval()
    return Graph(spec.command, spec.family, module, size, mean, std, False, outputs, reference, classes,
                 per_image=True)
