"""Data augmentation for a whole batch at once, on the device the batch already sits on.

Per-image PIL transforms in DataLoader workers cost a Python call chain per picture and
compete with the model for the CPU; on 32x32 images they dominate a fast GPU step. Here
each transform is a handful of tensor ops over the batch: random crops become one
``affine_grid``/``grid_sample`` with a per-image matrix, translations one gather.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from cvtool.data.transforms import normalize

Kind = Literal["none", "book", "flip_translate"]


def hflip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    mask = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)


def translate(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels in x and y, filling with the mirrored border."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x if x.is_floating_point() else x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def resized_crop(x: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """The book's Resize(40) + square RandomResizedCrop(32, scale) as one resample per image.

    A crop covering a fraction ``a`` of the resized image's area is a window of side
    sqrt(a) of the original in normalised coordinates, whatever the resize size, so the
    upscale and the crop fold into one bilinear ``grid_sample``. Both run in fp32 even under
    autocast: a bf16 grid puts sample points up to 1/16 px off.
    """
    b = x.shape[0]
    area = torch.empty(b, device=x.device).uniform_(*scale)
    side = area.sqrt()
    offset = torch.rand(b, 2, device=x.device) * (1 - side[:, None])
    centre = 2 * (offset + side[:, None] / 2) - 1
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = side
    theta[:, 1, 1] = side
    theta[:, :, 2] = centre
    with torch.autocast(x.device.type, enabled=False):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


class BatchAugment:
    """uint8 batch in, normalised float batch out; random only when ``train``."""

    def __init__(self, kind: Kind, mean: Sequence[float], std: Sequence[float], *,
                 scale: tuple[float, float] = (0.64, 1.0), pad: int = 2):
        self.kind = kind
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.scale = scale
        self.pad = pad

    def __call__(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.kind == "flip_translate":
            images = translate(hflip(images), self.pad)
        x = normalize(images, self.mean, self.std)
        if train and self.kind == "book":
            x = hflip(resized_crop(x, self.scale))
        return x
