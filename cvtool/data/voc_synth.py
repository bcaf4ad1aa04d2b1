"""A synthetic twin of Pascal VOC segmentation, in its real layout (no torch: ``data synth`` lists it cheaply)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cvtool.data.masks import PALETTE, VOC_CLASSES, VOID
from cvtool.data.textures import background, smooth_noise
from cvtool.errors import InputError

CLASSES = VOC_CLASSES


def palette_image(mask: np.ndarray) -> Image.Image:
    """A class-index array as a VOC palette PNG image."""
    img = Image.fromarray(mask.astype(np.uint8), "P")
    img.putpalette(PALETTE.tobytes())
    return img


# Half-width of the void band around each object, in pixels (VOC's is about 5 wide).
BAND = 3
SHAPES = ("triangle", "disc", "square", "ring", "cross", "diamond")


def draw_shape(kind: str, size: int, margin: int = 0) -> Image.Image:
    """A filled shape as an L mask (255 inside) of size x size, inside ``margin`` empty pixels."""
    mask = Image.new("L", (size + 2 * margin, size + 2 * margin), 0)
    d = ImageDraw.Draw(mask)
    lo, hi = margin, margin + size - 1

    def at(u: float, v: float) -> tuple[float, float]:
        return lo + u * (hi - lo), lo + v * (hi - lo)

    if kind == "triangle":
        d.polygon([at(0.5, 0), at(1, 1), at(0, 1)], fill=255)
    elif kind == "disc":
        d.ellipse([*at(0, 0), *at(1, 1)], fill=255)
    elif kind == "square":
        d.rectangle([*at(0.1, 0.1), *at(0.9, 0.9)], fill=255)
    elif kind == "ring":
        d.ellipse([*at(0, 0), *at(1, 1)], fill=255)
        d.ellipse([*at(0.3, 0.3), *at(0.7, 0.7)], fill=0)
    elif kind == "cross":
        d.rectangle([*at(0.35, 0), *at(0.65, 1)], fill=255)
        d.rectangle([*at(0, 0.35), *at(1, 0.65)], fill=255)
    else:
        d.polygon([at(0.5, 0), at(1, 0.5), at(0.5, 1), at(0, 0.5)], fill=255)
    return mask


def class_colour(rng: np.random.Generator, cls: int, classes: int) -> np.ndarray:
    """A jittered colour whose hue belongs to the class."""
    hue = (cls - 1) / classes + rng.uniform(-0.2, 0.2) / classes
    rgb = colorsys.hsv_to_rgb(hue % 1, rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))
    return np.array(rgb, dtype=np.float32)


def synth_sample(rng: np.random.Generator, h: int, w: int, classes: int) -> tuple[Image.Image, np.ndarray]:
    """A textured background with 1-3 shapes; each object ringed by a void band."""
    image = np.asarray(background(rng, h, w), dtype=np.float32) / 255
    label = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, classes + 1))
        size = int(rng.uniform(0.3, 0.55) * min(h, w))
        shape = draw_shape(SHAPES[(cls - 1) % len(SHAPES)], size, margin=BAND)
        side = shape.height
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        inside = np.asarray(shape) > 127
        grown = np.asarray(shape.filter(ImageFilter.MaxFilter(2 * BAND - 1)))
        band = grown != np.asarray(shape.filter(ImageFilter.MinFilter(2 * BAND - 1)))
        shade = 0.75 + 0.5 * smooth_noise(rng, side, side, 3).mean(-1, keepdims=True)
        region = (slice(top, top + side), slice(left, left + side))
        image[region] = np.where(inside[..., None], class_colour(rng, cls, classes) * shade, image[region])
        label[region] = np.where(band, VOID, np.where(inside, cls, label[region]))
    return Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8), "RGB"), label


def synthesize(out: Path, *, n_train: int = 300, n_val: int = 60, size: int = 128, classes: int = 5,
               seed: int = 0) -> Path:
    """Write a small set in the VOC layout with ``out`` as the VOCdevkit folder; return ``out``.

    ``classes`` object classes (VOC classes 1..classes) each have their own shape and hue;
    the sizes are synth_splits's.
    """
    splits = synth_splits(np.random.default_rng(seed), n_train, n_val, size, classes, "synthetic VOC")
    voc = Path(out) / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    for split, pairs in splits:
        ids = []
        for number, image, label in pairs:
            name = f"2012_{number:06d}"
            image.save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
            palette_image(label).save(voc / "SegmentationClass" / f"{name}.png")
            ids.append(name)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return Path(out)


def synth_splits(rng: np.random.Generator, n_train: int, n_val: int, size: int, classes: int, what: str):
    """("train", pairs), ("val", pairs): each pair (number, RGB image, label values) made as it is iterated.

    Images are about size x 4/3 size (a third portrait), every eighth at half that, so
    smaller than a crop of about ``size``.
    """
    if not 1 <= classes < len(CLASSES):
        raise InputError(f"{what}: classes must be 1..{len(CLASSES) - 1}, got {classes}")
    if size < 32:
        raise InputError(f"{what}: size must be at least 32, got {size}")

    def pairs(first: int, count: int):
        for number in range(first, first + count):
            h, w = size, round(size * rng.uniform(1.15, 1.5))
            if rng.random() < 0.3:
                h, w = w, h
            if number % 8 == 5:
                h, w = h // 2, w // 2
            yield (number, *synth_sample(rng, h, w, classes))

    return (("train", pairs(0, n_train)), ("val", pairs(n_train, n_val)))
