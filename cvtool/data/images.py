"""Reading images the way every loader should: any mode in, RGB out, one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, TypeVar

from PIL import Image, UnidentifiedImageError

from cvtool.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

log = logging.getLogger(__name__)
T = TypeVar("T")


def load_rgb(path: str | Path) -> Image.Image:
    """Palette, grey, RGBA, CMYK and 16-bit images are converted, not refused."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                img = img.point(lambda v: v / 256).convert("L")
            return img.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def read_or_skip(path: Path, read: Callable[[Path], T], skip: bool) -> T | None:
    """``read(path)``; with ``skip`` (data.on_bad_image: skip) an unreadable image is logged and None returned.

    A missing file is not a bad image: it stays an error either way.
    """
    try:
        return read(path)
    except InputError as exc:
        if not skip or not Path(path).is_file():
            raise
        log.warning("skipped: %s (data.on_bad_image: skip)", exc)
        return None
