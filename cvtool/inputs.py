"""Images as the Python API takes them: paths, PIL images, HxWx3 uint8 arrays, 3xHxW tensors.

Every task's ``predict`` reads image files, as ``cvtool predict`` hands them over. An image
given in memory is written once, losslessly (PNG), into a private folder and read back by the
same code, so a picture gives exactly what ``cvtool predict`` gives on a file of those pixels.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageOps

from cvtool.data.images import IMAGE_SUFFIXES, to_rgb
from cvtool.errors import InputError


@dataclass
class Staged:
    """One input: the file predict reads, its own path (None: given in memory) and its pixels."""

    path: Path
    source: str | None
    image: Image.Image | None


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given (images or videos); a folder stands for the images directly inside it, in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise InputError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found += inside
        elif not path.exists():
            raise InputError(f"image {path} does not exist")
        elif not path.is_file():
            raise InputError(f"image {path} is not a file")
        else:
            found.append(path)
    return found


def is_video(path: Path) -> bool:
    from cvtool.data.video import is_video as video

    return video(path)


def check_video_options(videos: list[Path], every: int | None, smooth: float | None) -> None:
    """``--every`` and ``--smooth`` need a video, and values in range."""
    from cvtool.data.video import VIDEO_SUFFIXES

    if (every is not None or smooth is not None) and not videos:
        raise InputError(f"--{'every' if every is not None else 'smooth'} is for video inputs "
                         f"({', '.join(VIDEO_SUFFIXES)}); none was given")
    if every is not None and every < 1:
        raise InputError(f"--every expects a whole number >= 1, got {every}")
    if smooth is not None and not 0 <= smooth < 1:
        raise InputError(f"--smooth expects a strength in [0, 1), got {smooth}")


def as_list(images: Any) -> list[Any]:
    """One image or several: a list or tuple, or a batch (an N x H x W x 3 array, N x 3 x H x W tensor)."""
    if isinstance(images, (list, tuple)):
        return list(images)
    if getattr(images, "ndim", None) == 4:
        return list(images)
    return [images]


def to_pil(item: Any, index: int) -> Image.Image:
    """An in-memory image as RGB; anything else is an error naming the input and what it got."""
    if isinstance(item, Image.Image):
        return to_rgb(ImageOps.exif_transpose(item))  # as load_rgb reads a file
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise InputError(f"image {index}: a numpy array must be H x W x 3 uint8 (RGB), "
                             f"got shape {item.shape} {item.dtype}")
        return Image.fromarray(np.ascontiguousarray(item), "RGB")
    if type(item).__module__.split(".")[0] == "torch":
        return tensor_to_pil(item, index)
    raise InputError(f"image {index}: expected a path, a PIL image, an H x W x 3 uint8 array or a "
                     f"3 x H x W tensor, got {type(item).__name__}")


def tensor_to_pil(tensor: Any, index: int) -> Image.Image:
    """3 x H x W, uint8 (0-255) or floating point in [0, 1] (torchvision's convention)."""
    import torch

    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise InputError(f"image {index}: a tensor must be 3 x H x W (RGB), got shape {tuple(tensor.shape)}")
    x = tensor.detach().cpu()
    if x.is_floating_point():
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise InputError(f"image {index}: a floating-point tensor must hold values in [0, 1], "
                             f"got {float(x.min()):.3g} to {float(x.max()):.3g}")
        x = (x * 255).round().to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise InputError(f"image {index}: a tensor must be uint8 or floating point, got {x.dtype}")
    return Image.fromarray(x.permute(1, 2, 0).contiguous().numpy(), "RGB")


@contextmanager
def staged(images: Any) -> Iterator[tuple[list[Staged], Path]]:
    """Every input as a file (folders expanded), and a private folder that is gone afterwards.

    In-memory images become ``image<i>.png`` (``i``: their place in the call), which is the
    name the files predict writes for them start with.
    """
    items = as_list(images)
    if not items:
        raise InputError("give at least one image")
    with tempfile.TemporaryDirectory(prefix="cvtool-") as folder:
        private = Path(folder)
        inputs: list[Staged] = []
        for index, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                inputs += [Staged(path, str(path), None) for path in expand_images([Path(item)])]
                continue
            picture = to_pil(item, index)
            path = private / "images" / f"image{index}.png"
            path.parent.mkdir(exist_ok=True)
            picture.save(path, format="PNG")
            inputs.append(Staged(path, None, picture))
        yield inputs, private
