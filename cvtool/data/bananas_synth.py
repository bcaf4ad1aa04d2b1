"""A synthetic twin of the banana detection set, in its real layout (no torch: ``data synth`` lists it cheaply)."""

from __future__ import annotations

import colorsys
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from cvtool.data.textures import background
from cvtool.errors import InputError

HEADER = ("img_name", "label", "xmin", "ymin", "xmax", "ymax")  # label.csv's, which the reader checks


def synthesize(out: str | Path, *, n_train: int = 1000, n_val: int = 100, size: int = 256,
               classes: int = 1, seed: int = 0) -> Path:
    """Write a banana-detection look-alike into ``out`` (bananas_train, bananas_val), real layout.

    With ``classes`` > 1 each image's banana gets a random label k, shown by its hue.
    """
    out = Path(out)
    if size < 32:
        raise InputError(f"synthetic bananas need --size >= 32, got {size}")
    if classes < 1:
        raise InputError(f"synthetic bananas need --classes >= 1, got {classes}")
    for split, count, stream in (("train", n_train, 0), ("val", n_val, 1)):
        rng = np.random.default_rng([seed, stream])
        split_dir = out / f"bananas_{split}"
        (split_dir / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(count):
            label = int(rng.integers(classes)) if classes > 1 else 0
            image, box = banana_scene(rng, size, label / classes)
            name = f"{i}.png"
            image.save(split_dir / "images" / name)
            rows.append((name, label, *box))
        with (split_dir / "label.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            writer.writerows(rows)
    return out


def banana_scene(rng: np.random.Generator, size: int,
                 hue_shift: float = 0.0) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """One banana on a textured background, and its tight pixel box (xmin, ymin, xmax, ymax)."""
    color, alpha = banana_sprite(rng, size, hue_shift)
    patch = alpha.shape[0]
    rows, cols = np.nonzero(alpha > 0.5)
    # Place the sprite so that its visible part lies wholly inside the image.
    x0 = int(rng.integers(-cols.min(), size - cols.max()))
    y0 = int(rng.integers(-rows.min(), size - rows.max()))
    canvas_alpha = np.zeros((size + 2 * patch, size + 2 * patch), np.float32)
    canvas_color = np.zeros((size + 2 * patch, size + 2 * patch, 3), np.float32)
    canvas_alpha[patch + y0: 2 * patch + y0, patch + x0: 2 * patch + x0] = alpha
    canvas_color[patch + y0: 2 * patch + y0, patch + x0: 2 * patch + x0] = color
    a = canvas_alpha[patch: patch + size, patch: patch + size, None]
    c = canvas_color[patch: patch + size, patch: patch + size]
    bg = np.asarray(background(rng, size, size), dtype=np.float32) / 255.0
    img = (1 - a) * bg + a * c
    rows, cols = np.nonzero(a[..., 0] > 0.5)
    box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8), "RGB"), box


def banana_sprite(rng: np.random.Generator, size: int, hue_shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A curved, tapered, shaded yellow banana with brown tips, randomly sized and rotated.

    ``hue_shift`` (a fraction of the colour wheel) turns the yellow into another class's colour.

    Returns colour (P, P, 3) in [0, 1] and a soft alpha (P, P) on a square patch whose
    centre is the middle of the banana's arc.
    """
    length = rng.uniform(0.2, 0.55) * size  # chord between the tips, in pixels
    half_angle = rng.uniform(0.45, 1.0)  # how strongly it curves
    radius = length / (2 * np.sin(half_angle))
    thickness = length * rng.uniform(0.17, 0.27)
    patch = int(np.ceil(length + thickness)) + 4
    centre_y = radius * (1 + np.cos(half_angle)) / 2  # puts the arc's middle at the patch centre
    coords = np.arange(patch, dtype=np.float32) - (patch - 1) / 2
    y, x = np.meshgrid(coords, coords, indexing="ij")
    turn = rng.uniform(0, 2 * np.pi)
    u = np.cos(turn) * x + np.sin(turn) * y
    v = -np.sin(turn) * x + np.cos(turn) * y
    dy = v - centre_y
    r = np.hypot(u, dy)
    angle = np.arctan2(u, -dy) / half_angle  # -1 .. 1 from tip to tip
    taper = np.clip(1 - angle**2, 0, 1) ** 0.4
    half_t = thickness / 2 * taper
    across = (r - radius) / np.maximum(half_t, 1e-3)  # -1 inner edge .. 1 outer edge
    alpha = np.clip(half_t - np.abs(r - radius) + 0.5, 0, 1) * (np.abs(angle) <= 1)
    green = rng.uniform(0, 0.35)
    base = (1 - green) * np.array([0.98, 0.84, 0.22]) + green * np.array([0.62, 0.78, 0.2])
    if hue_shift:
        hue, saturation, value = colorsys.rgb_to_hsv(*base)
        base = np.array(colorsys.hsv_to_rgb((hue + hue_shift) % 1, saturation, value))
    shade = 0.55 + 0.45 * np.sqrt(np.clip(1 - across**2, 0, 1)) + 0.18 * np.exp(-((across + 0.35) / 0.3) ** 2)
    color = base[None, None] * shade[..., None]
    tip = np.clip((np.abs(angle) - 0.82) / 0.12, 0, 1)[..., None]
    color = (1 - tip) * color + tip * np.array([0.35, 0.24, 0.1])
    return np.clip(color, 0, 1).astype(np.float32), alpha.astype(np.float32)
