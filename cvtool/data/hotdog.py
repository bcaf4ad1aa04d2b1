"""The hotdog dataset layout, and a synthetic stand-in written in exactly that layout.

Synthetic "hotdogs" are a sausage in a bun (with mustard, sometimes) at a random angle;
"not-hotdogs" are other foods and objects. Both sit on textured backgrounds and come in
varying sizes and aspect ratios like the real photos, so the real loader and the real
transforms are exercised end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cvtool.data.textures import background

CLASSES = ["hotdog", "not-hotdog"]
LAYOUT = "hotdog/{train,test}/{hotdog,not-hotdog}/*.png"


def colour(rng: np.random.Generator, base: tuple[int, int, int], spread: int = 25) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in base)


def draw_hotdog(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    layer = Image.new("RGBA", (w, h))
    d = ImageDraw.Draw(layer)
    length, thick = w * rng.uniform(0.55, 0.8), h * rng.uniform(0.16, 0.24)
    cx, cy = w / 2, h / 2
    d.rounded_rectangle([cx - length / 2, cy - thick, cx + length / 2, cy + thick], radius=thick,
                        fill=colour(rng, (222, 178, 110)))
    s_len, s_th = length * 1.08, thick * 0.5
    d.rounded_rectangle([cx - s_len / 2, cy - s_th, cx + s_len / 2, cy + s_th], radius=s_th,
                        fill=colour(rng, (165, 55, 40)))
    if rng.random() < 0.7:
        xs = np.linspace(cx - length * 0.4, cx + length * 0.4, 9)
        ys = cy + np.where(np.arange(9) % 2 == 0, -s_th * 0.4, s_th * 0.4)
        d.line(list(zip(xs.tolist(), ys.tolist())), fill=colour(rng, (235, 200, 30)), width=max(1, int(s_th / 3)))
    return layer.rotate(rng.uniform(-35, 35), resample=Image.BICUBIC)


def draw_other(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    layer = Image.new("RGBA", (w, h))
    d = ImageDraw.Draw(layer)
    kind = rng.integers(4)
    r = min(w, h) * rng.uniform(0.2, 0.38)
    cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2 + rng.uniform(-0.1, 0.1) * h
    if kind == 0:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour(rng, (225, 150, 50)))
        for _ in range(6):
            a, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0, r * 0.7)
            px, py = cx + rr * np.cos(a), cy + rr * np.sin(a)
            d.ellipse([px - r / 7, py - r / 7, px + r / 7, py + r / 7], fill=colour(rng, (180, 30, 30)))
    elif kind == 1:
        d.ellipse([cx - r, cy - r * 0.8, cx + r, cy + r * 0.8], fill=colour(rng, (70, 160, 60)))
    elif kind == 2:
        d.regular_polygon((cx, cy, r), int(rng.integers(3, 7)), rotation=float(rng.uniform(0, 90)),
                          fill=colour(rng, (60, 90, 190), 60))
    else:
        d.rectangle([cx - r, cy - r / 2, cx + r, cy + r / 2], fill=colour(rng, (150, 150, 160), 60))
    return layer


def make_image(rng: np.random.Generator, label: int, size: int) -> Image.Image:
    w = int(size * rng.uniform(0.7, 1.4))
    h = int(size * rng.uniform(0.7, 1.4))
    img = background(rng, h, w)
    layer = draw_hotdog(rng, w, h) if label == 0 else draw_other(rng, w, h)
    img.paste(layer, (0, 0), layer)
    return img


def synthesize(out: Path, *, n: int = 100, size: int = 96, seed: int = 0) -> Path:
    """``n`` training images per class and 0.4 n test images per class (the real 1000/400 ratio)."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    for split, count in (("train", n), ("test", max(1, round(0.4 * n)))):
        for label, name in enumerate(CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                make_image(rng, label, size).save(folder / f"{i}.png")
    return out
