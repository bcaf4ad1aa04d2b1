"""TinySSD: the book's single-shot multibox detector, small enough to train from scratch.

Five feature maps (32, 16, 8, 4 and 1 pixels for a 256-pixel input) each predict, for
every pixel and each of its anchors, num_classes + 1 class scores and 4 box offsets.
Anchor sizes grow with depth so coarse maps look for large objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvtool.models.defaults import RATIOS, SIZES
from cvtool.models.pooling import GlobalMaxPool
from cvtool.ops.boxes import multibox_prior


def down_sample_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv + BN + ReLU, then a 2x2 max-pool that halves height and width."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        layers += [nn.Conv2d(c_in, out_channels, 3, padding=1),
                   nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def _flatten(pred: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W*C) with each pixel's channels together, matching anchor order."""
    return pred.permute(0, 2, 3, 1).flatten(1)


class TinySSD(nn.Module):
    """forward(x) -> (anchors (1, A, 4), cls_preds (B, A, C+1), bbox_preds (B, A*4)).

    ``width`` scales every channel count (1.0 = the book's 16-32-64-128), for quick CPU runs;
    ``sizes`` (one list per feature map, all of one length) and ``ratios`` shape the anchors.
    """

    def __init__(self, num_classes: int = 1, width: float = 1.0,
                 sizes: Sequence[Sequence[float]] = SIZES, ratios: Sequence[float] = RATIOS):
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        if len(sizes) != 5 or len({len(s) for s in sizes}) != 1 or not sizes[0] or not ratios:
            raise ValueError("TinySSD needs five lists of anchor sizes, all of one length, and at least one ratio")
        self.num_classes = num_classes
        self.sizes = tuple(tuple(float(v) for v in s) for s in sizes)
        self.ratios = tuple(float(r) for r in ratios)
        self.num_anchors = len(self.sizes[0]) + len(self.ratios) - 1
        c16, c32, c64, c128 = (max(1, round(c * width)) for c in (16, 32, 64, 128))
        base = nn.Sequential(down_sample_block(3, c16), down_sample_block(c16, c32),
                             down_sample_block(c32, c64))
        self.blocks = nn.ModuleList([
            base, down_sample_block(c64, c128), down_sample_block(c128, c128),
            down_sample_block(c128, c128), GlobalMaxPool()])
        channels = (c64, c128, c128, c128, c128)
        self.cls_predictors = nn.ModuleList(
            nn.Conv2d(c, self.num_anchors * (num_classes + 1), 3, padding=1) for c in channels)
        self.bbox_predictors = nn.ModuleList(
            nn.Conv2d(c, self.num_anchors * 4, 3, padding=1) for c in channels)
        # A plain dict, not a buffer: checkpoints stay as they were, and each device gets its own entry.
        self._anchor_cache: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps, cls_preds, bbox_preds = [], [], []
        for block, cls_head, bbox_head in zip(self.blocks, self.cls_predictors, self.bbox_predictors):
            x = block(x)
            maps.append((x.shape[-2], x.shape[-1]))
            cls_preds.append(_flatten(cls_head(x)))
            bbox_preds.append(_flatten(bbox_head(x)))
        cls = torch.cat(cls_preds, dim=1)
        return (self._anchors(maps, x.device), cls.reshape(cls.shape[0], -1, self.num_classes + 1),
                torch.cat(bbox_preds, dim=1))

    def _anchors(self, maps: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        """Anchors (1, A, 4) of feature maps of these sizes, made once per sizes and device.

        They depend on nothing else (multibox_prior is float32 whatever the input dtype), so
        every eager forward at a training or prediction size reuses the same tensor. Under
        torch.compile they are computed in the graph from the (static) map sizes instead:
        a dict lookup would make dynamo guard on the cache's keys, so the second step (one
        key more) and every new size would recompile every graph.
        """
        if torch.compiler.is_compiling():
            return self._make_anchors(maps, device)
        key = (tuple(maps), device)
        if key not in self._anchor_cache:
            self._anchor_cache[key] = self._make_anchors(maps, device)
        return self._anchor_cache[key]

    def _make_anchors(self, maps: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        empty = [torch.empty(1, 0, h, w, device=device) for h, w in maps]
        return torch.cat([multibox_prior(m, s, self.ratios) for m, s in zip(empty, self.sizes)], dim=1)

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial sizes of the five prediction maps for an input of height x width."""
        sizes = []
        for _ in range(3):
            height, width = height // 2, width // 2
        for _ in range(4):
            sizes.append((height, width))
            height, width = height // 2, width // 2
        sizes.append((1, 1))
        return sizes

    def anchors_for(self, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The anchors forward() returns for this input size, without running the network."""
        return self._anchors(self.feature_sizes(height, width), torch.device(device))
