"""Transform presets (torchvision.transforms.v2): every task's image recipe in one place.

Modelled on torchvision's references/*/presets.py: a preset is a function of the few
numbers a config exposes, returning one v2 transform; the tasks only pick and parametrise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from cvtool.config import ConfigError


def check_crop_scale(scale: Sequence[float], key: str = "data.crop_scale") -> tuple[float, float]:
    """A RandomResizedCrop area range: [low, high] with 0 < low <= high <= 1."""
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ConfigError(f"{key} must be [low, high] with 0 < low <= high <= 1, got {list(scale)}")
    return scale[0], scale[1]


def to_normalized(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    """PIL or uint8 image to a float32 tensor normalised per channel."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


# --------------------------------------------------------------------------- classification


def classification_train(size: int, mean: Sequence[float], std: Sequence[float], *,
                         scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                         jitter: float | None = None) -> v2.Compose:
    """Random-resized crop and flip (the ImageNet-style training view), then colour jitter when given."""
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(size, scale=(scale[0], scale[1]), ratio=(ratio[0], ratio[1]), antialias=True),
        v2.RandomHorizontalFlip()]
    if jitter is not None:
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    return v2.Compose([*steps, *to_normalized(mean, std)])


def classification_eval(size: int, resize: int, mean: Sequence[float], std: Sequence[float], *,
                        square: bool = True) -> v2.Compose:
    """Resize (to a ``resize`` square, or the shorter side to ``resize``), then centre-crop ``size``."""
    return v2.Compose([v2.Resize((resize, resize) if square else resize, antialias=True), v2.CenterCrop(size),
                       *to_normalized(mean, std)])


def squashed(size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Any picture squashed to ``size`` x ``size`` (aspect not kept) and normalised."""
    return v2.Compose([v2.Resize((size, size), antialias=True), *to_normalized(mean, std)])


# --------------------------------------------------------------------------- detection


def detection_train(*, flip: bool = False, scale_jitter: float = 0.0, fill: int = 127) -> v2.Compose:
    """Box-aware flips and a random zoom of +-``scale_jitter``; boxes under 2 px are dropped."""
    steps: list[v2.Transform] = []
    if flip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if scale_jitter > 0:
        steps.append(v2.RandomAffine(degrees=0, scale=(1 - scale_jitter, 1 + scale_jitter), fill=fill))
    steps.append(v2.SanitizeBoundingBoxes(min_size=2))
    return v2.Compose(steps)


# --------------------------------------------------------------------------- segmentation


def segmentation_train(crop_size: Sequence[int], fill: dict, *, flip: bool = False,
                       scale_range: Sequence[float] = (1.0, 1.0)) -> v2.Compose:
    """Optional flip and zoom, then one random crop for image and mask.

    An image smaller than the crop is padded with ``fill`` (per tv_tensor type: a colour
    for the image, the void value for the mask) on both sides by the shortfall, so the
    crop keeps all of it at a random offset.
    """
    steps: list[v2.Transform] = []
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if tuple(scale_range) != (1.0, 1.0):
        steps.append(v2.RandomAffine(degrees=0, scale=tuple(scale_range),
                                     interpolation=v2.InterpolationMode.BILINEAR, fill=fill))
    steps.append(segmentation_eval_crop(crop_size, fill))
    return v2.Compose(steps)


def segmentation_eval_crop(crop_size: Sequence[int], fill: dict) -> v2.RandomCrop:
    """The book's validation view: a random crop, padded with ``fill`` when the image is smaller."""
    return v2.RandomCrop(list(crop_size), pad_if_needed=True, fill=fill)
