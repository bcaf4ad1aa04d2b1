"""Reading images the way every loader should: any mode in, RGB out, one-line errors."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cvtool.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


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
