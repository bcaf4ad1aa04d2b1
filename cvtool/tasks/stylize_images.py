"""stylize's pictures: files to (1, 3, H, W) float pixels and back, checked before any work."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from cvtool.data import transforms
from cvtool.data.images import load_rgb
from cvtool.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cvtool.errors import InputError
from cvtool.files import atomic_write


def to_pixels(img: Image.Image) -> torch.Tensor:
    return TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True).unsqueeze(0)


def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return TF.resize(x, list(hw), antialias=True).clamp(0, 1)


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    return transforms.normalize(pixels, IMAGENET_MEAN, IMAGENET_STD)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    return transforms.denormalize(x, IMAGENET_MEAN, IMAGENET_STD)


def to_image(pixels: torch.Tensor) -> Image.Image:
    data = pixels[0].detach().float().cpu().mul(255).round().clamp(0, 255).to(torch.uint8)
    return TF.to_pil_image(data)


def image_format(path: Path) -> str:
    fmt_name = Image.registered_extensions().get(path.suffix.lower())
    if fmt_name is None or fmt_name not in Image.SAVE:
        raise InputError(f"output {path}: cannot tell the image format from {path.suffix or 'no extension'!r}; "
                         "use .png, .jpg, .webp, .bmp or .tif")
    return fmt_name


def check_output(path: Path) -> None:
    """Refuse an output that could not be written before spending minutes on the picture."""
    if path.is_dir():
        raise InputError(f"output {path} is a folder; give a file name such as {path / 'stylized.png'}")
    image_format(path)
    parent = next(p for p in [path.absolute().parent, *path.absolute().parents] if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"output {path} cannot be written: {parent} is not a writable folder")


def save_image(img: Image.Image, path: Path) -> None:
    """Written atomically: a reader never sees half a picture."""
    fmt_name = image_format(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: img.save(fh, format=fmt_name))
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc}") from None


def read_image(path: Path, role: str) -> torch.Tensor:
    img = load_rgb(path)
    if img.width == 0 or img.height == 0:
        raise InputError(f"{role} image {path} is empty")
    return to_pixels(img)
