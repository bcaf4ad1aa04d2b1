"""Synthetic stand-ins for the two Kaggle folders, written in exactly their layouts.

One shape per class (ten shapes, hue groups beyond ten classes) on a textured background,
so a small convnet learns them and the real loaders, splits and submissions are exercised
end to end.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cvtool.data.kaggle_layout import CIFAR, CIFAR10_CLASSES, DOGS
from cvtool.data.textures import background


def draw_shape(draw: ImageDraw.ImageDraw, kind: int, box: tuple[float, float, float, float],
               fill: tuple[int, int, int]) -> None:
    """One of ten shapes a small convnet tells apart at 32x32 under crops and flips."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    t = max(2.0, w / 5)
    if kind == 0:
        draw.ellipse(box, fill=fill)
    elif kind == 1:
        draw.rectangle(box, fill=fill)
    elif kind == 2:
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif kind == 3:
        draw.ellipse(box, outline=fill, width=int(t))
    elif kind == 4:
        draw.rectangle((cx - t / 2, y0, cx + t / 2, y1), fill=fill)
        draw.rectangle((x0, cy - t / 2, x1, cy + t / 2), fill=fill)
    elif kind == 5:
        for k in range(3):
            top = y0 + k * h / 3
            draw.rectangle((x0, top, x1, top + h / 6), fill=fill)
    elif kind == 6:
        for k in range(3):
            left = x0 + k * w / 3
            draw.rectangle((left, y0, left + w / 6, y1), fill=fill)
    elif kind == 7:
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    elif kind == 8:
        draw.rectangle(box, outline=fill, width=int(t))
    else:
        draw.line((x0, y0, x1, y1), fill=fill, width=int(t))
        draw.line((x0, y1, x1, y0), fill=fill, width=int(t))


def class_colour(rng: np.random.Generator, hue: float) -> tuple[int, int, int]:
    """A saturated colour near ``hue`` (0..1), jittered so colour alone is a weak cue."""
    h = (hue + rng.normal(0, 0.03)) % 1.0
    rgb = np.clip(np.abs(((h * 6 + np.array([0, 4, 2])) % 6) - 3) - 1, 0, 1)
    value = rng.uniform(0.7, 1.0)
    return tuple(int(c) for c in (rgb * value * 255).astype(np.uint8))


def synth_image(rng: np.random.Generator, cls: int, n_classes: int, w: int, h: int) -> Image.Image:
    img = background(rng, h, w)
    size = rng.uniform(0.45, 0.75) * min(w, h)
    cx = rng.uniform(size / 2, w - size / 2)
    cy = rng.uniform(size / 2, h - size / 2)
    box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
    hue = (cls // 10) / max(1, math.ceil(n_classes / 10)) + 0.37 * (cls % 10)
    draw_shape(ImageDraw.Draw(img), cls % 10, box, class_colour(rng, hue % 1.0))
    return img


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def synthesize_cifar(out: str | Path, *, n_train: int = 1000, n_test: int = 50, seed: int = 0) -> Path:
    """A Kaggle CIFAR-10 folder of synthetic 32x32 PNGs: one shape per class, balanced."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "test").mkdir(parents=True, exist_ok=True)
    labels = rng.permutation(np.arange(n_train) % len(CIFAR10_CLASSES))
    rows = []
    for i, cls in enumerate(labels, start=1):
        synth_image(rng, int(cls), len(CIFAR10_CLASSES), 32, 32).save(out / "train" / f"{i}.png")
        rows.append((i, CIFAR10_CLASSES[cls]))
    write_csv(out / CIFAR.labels_csv, ("id", "label"), rows)
    for i in range(1, n_test + 1):
        cls = int(rng.integers(len(CIFAR10_CLASSES)))
        synth_image(rng, cls, len(CIFAR10_CLASSES), 32, 32).save(out / "test" / f"{i}.png")
    write_csv(out / CIFAR.sample_csv, ("id", "label"), [(i, "cat") for i in range(1, n_test + 1)])
    return out


def synthesize_dogs(out: str | Path, *, n_train: int = 600, n_test: int = 30, classes: int = 120,
                    seed: int = 0) -> Path:
    """A Kaggle dog-breed folder of synthetic JPEGs of varied sizes, ``classes`` breeds."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    breeds = [f"breed_{k:03d}" for k in range(classes)]
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "test").mkdir(parents=True, exist_ok=True)

    def save(folder: str, cls: int) -> str:
        ident = rng.bytes(16).hex()
        w, h = (int(v) for v in rng.integers(96, 257, size=2))
        synth_image(rng, cls, classes, w, h).save(out / folder / f"{ident}.jpg", quality=90)
        return ident

    labels = rng.permutation(np.arange(n_train) % classes)
    write_csv(out / DOGS.labels_csv, ("id", "breed"), [(save("train", int(c)), breeds[c]) for c in labels])
    test = [save("test", int(rng.integers(classes))) for _ in range(n_test)]
    uniform = f"{1 / classes:.8g}"
    write_csv(out / DOGS.sample_csv, ("id", *breeds), [(i, *([uniform] * classes)) for i in test])
    return out
