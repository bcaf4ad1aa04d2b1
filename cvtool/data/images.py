"""Reading images the way every loader should: any mode in, RGB out as a viewer shows it, one-line errors.

Photos carry their rotation in EXIF; viewers and the annotation tools (CVAT, labelImg,
Roboflow) show and label them turned upright, so boxes are in that frame and so are the
pixels and sizes read here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError

from cvtool.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# What Pillow raises on a file that is not an image it can read.
UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)

log = logging.getLogger(__name__)
T = TypeVar("T")
ORIENTATION = 0x0112  # the EXIF tag; values 5-8 turn the image by 90 degrees
BACKGROUND = (255, 255, 255)  # what shows through transparent pixels


def load_rgb(path: str | Path) -> Image.Image:
    """Palette, grey, RGBA, CMYK and 16-bit images are converted, not refused; EXIF rotation is applied."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except FileNotFoundError:
        raise InputError(f"image {path} does not exist") from None
    except UNREADABLE as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB as a viewer shows it: 16-bit grey scaled to 8 bits, transparency over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def header_size(path: str | Path, problem: Callable[[Exception], str]) -> tuple[int, int]:
    """(width, height) as displayed (EXIF rotation applied), from the file header, without decoding the pixels.

    A file that cannot be opened is an InputError worded by ``problem(exc)``, so each
    caller names the file the way its users know it (a CSV line, a list entry).
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            turned = img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
            return (height, width) if turned else (width, height)
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
