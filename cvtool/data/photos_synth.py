"""Stand-ins for train-style's content photos and style image (no torch: ``data synth`` lists it cheaply)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cvtool.data.textures import background
from cvtool.errors import InputError


def photo(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A textured background with a few flat-shaded shapes: edges and regions for the content loss to keep."""
    img = background(rng, h, w)
    pen = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.integers(0, w - 8), rng.integers(0, h - 8)
        x1, y1 = x0 + rng.integers(8, max(9, w // 2)), y0 + rng.integers(8, max(9, h // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (pen.ellipse if rng.random() < 0.5 else pen.rectangle)((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0))
    return img


def style_picture(rng: np.random.Generator, size: int) -> Image.Image:
    """Bold diagonal strokes in a few saturated colours: a style whose Gram matrices are far from a photo's."""
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 80, 3)))
    pen = ImageDraw.Draw(img)
    palette = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(4)]
    for _ in range(size // 2):
        x, y = rng.integers(-size // 4, size, 2)
        length = int(rng.integers(size // 8, size // 3))
        pen.line((x, y, x + length, y + length // 2), fill=palette[int(rng.integers(0, 4))], width=int(rng.integers(2, 6)))
    return img


def synthesize(out: Path, *, n: int = 64, size: int = 128, seed: int = 0) -> Path:
    """``out/content/{a,b}/<i>.jpg``: ``n`` photo-like pictures of about ``size`` pixels (mixed aspect,
    two sub-folders, since any depth is read), and ``out/style.png``, a stand-in style image."""
    if n < 2 or size < 16:
        raise InputError(f"synthetic photos: n must be >= 2 and size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    out = Path(out)
    for i in range(n):
        h, w = size, round(size * rng.uniform(1.0, 1.5))
        if i % 3 == 1:
            h, w = w, h
        folder = out / "content" / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        photo(rng, h, w).save(folder / f"{i:04d}.jpg", quality=92)
    style_picture(rng, max(size, 64)).save(out / "style.png")
    return out
