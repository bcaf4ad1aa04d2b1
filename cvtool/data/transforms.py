"""Transform presets (torchvision.transforms.v2), one place for the book's recipes."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def to_normalized(mean: list[float], std: list[float]) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def classify_train(size: int, mean: list[float], std: list[float], scale=(0.08, 1.0),
                   ratio=(3 / 4, 4 / 3)) -> v2.Compose:
    """Random-resized crop and flip: the ImageNet-style training view."""
    return v2.Compose([v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True),
                       v2.RandomHorizontalFlip(), *to_normalized(mean, std)])


def classify_eval(size: int, resize: int, mean: list[float], std: list[float]) -> v2.Compose:
    """Resize to a square, then centre-crop: the book's test view."""
    return v2.Compose([v2.Resize((resize, resize), antialias=True), v2.CenterCrop(size),
                       *to_normalized(mean, std)])
