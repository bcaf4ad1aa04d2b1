"""Reading images the way every loader should: any mode in, RGB out, one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from PIL import Image, UnidentifiedImageError

from cvtool.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# What Pillow raises on a file that is not an image it can read.
UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)

log = logging.getLogger(__name__)
T = TypeVar("T")


def load_rgb(path: str | Path) -> Image.Image:
    """Palette, grey, RGBA, CMYK and 16-bit images are converted, not refused."""
    try:
        with Image.open(path) as img:
            img.load()
            return rgb(img)
    except FileNotFoundError:
        raise InputError(f"image {path} does not exist") from None
    except UNREADABLE as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def rgb(img: Image.Image) -> Image.Image:
    """Any mode as RGB (16-bit grey scaled to 8 bits first): what every model here reads."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def header_size(path: str | Path, problem: Callable[[Exception], str]) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels.

    A file that cannot be opened is an InputError worded by ``problem(exc)``, so each
    caller names the file the way its users know it (a CSV line, a list entry).
    """
    try:
        with Image.open(path) as img:
            return img.size
    except UNREADABLE as exc:
        raise InputError(problem(exc)) from None


def check_images(files: Sequence[Path]) -> None:
    """Open each file's header (cheap) so a bad file fails before training, not in a worker."""
    for path in files:
        header_size(path, lambda exc: f"{path} is not a readable image: {exc}")


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
