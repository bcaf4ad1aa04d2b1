"""Pascal VOC semantic segmentation: VOC's names and palette, its layout's dataset (synthetic twin: voc_synth).

Labels are the palette indices of ``SegmentationClass/<id>.png`` (0..20, 255 = void), read
as indices rather than matched by colour (cvtool.data.masks); the layout of any year
(cvtool.data.segmentation) and the dataset every segmenter reads (cvtool.data.seg_dataset)
are shared with the other mask layouts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cvtool.data import segmentation
from cvtool.data.masks import PALETTE, VOC_CLASSES, VOID, MaskFormat, colormap, read_mask
from cvtool.data.seg_dataset import MEAN_RGB, MaskDataset, fill, pad_collate, random_crop, train_transform
from cvtool.data.voc_synth import palette_image, synthesize

__all__ = ["CLASSES", "FILL", "LAYOUT", "MEAN_RGB", "PALETTE", "VOID", "VOCSegmentation", "colorize", "colormap",
           "pad_collate", "palette_image", "random_crop", "read_label", "synthesize", "train_transform"]

CLASSES = VOC_CLASSES
FILL = fill(VOID)
LAYOUT = segmentation.VOC_LAYOUT


def colorize(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """Class indices (H, W) to VOC colours (H, W, 3)."""
    return PALETTE[np.asarray(mask, dtype=np.uint8)]


def read_label(path: Path, num_classes: int = len(CLASSES)) -> np.ndarray:
    """Class indices (H, W) uint8 of a palette, grayscale or RGB (VOC colours) label PNG."""
    return read_mask(path, MaskFormat(num_classes))


class VOCSegmentation(MaskDataset):
    """One split of a VOC folder (any year; ``root`` the year folder or the VOCdevkit above it)."""

    def __init__(self, root: Path, split: str, transform: Callable | None = None,
                 *, num_classes: int = len(CLASSES), min_size: tuple[int, int] | None = None,
                 skip_bad: bool = False) -> None:
        self.root = segmentation.voc_root(Path(root))
        super().__init__(segmentation.voc_split(self.root, split), MaskFormat(num_classes), transform,
                         min_size=min_size, skip_bad=skip_bad)
