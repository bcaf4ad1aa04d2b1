"""A small multi-class Pascal VOC2012 detection set in the exact real layout.

Each class has its own shape and hue (as data/voc.py's segmentation twin) on a textured
background, several objects an image, none overlapping, so a detector has something real
to learn. VOC's own quirks are kept: XML in both orders VOC writes it (the 2007 files list
folder, filename, source, size, segmented, then objects; later files sort the children,
the object's name first, and add <occluded>), 1-based inclusive pixel boxes, objects cut by the image border
marked truncated, and small faint ones marked difficult.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cvtool.data.masks import VOC_CLASSES
from cvtool.data.textures import background, smooth_noise
from cvtool.data.voc_synth import SHAPES, class_colour, draw_shape
from cvtool.errors import InputError

CLASSES = VOC_CLASSES[1:]  # VOC's object classes (voc_detection.CLASSES): the background left out

POSES = ("Unspecified", "Unspecified", "Left", "Right", "Frontal", "Rear")


@dataclass
class Drawn:
    """One painted object: class index, 1-based inclusive pixel box (xmin, ymin, xmax, ymax), flags."""

    label: int
    box: tuple[int, int, int, int]
    difficult: bool
    truncated: bool
    pose: str


def synthesize_voc_detection(out: str | Path, *, n_train: int = 200, n_val: int = 50, size: int = 160,
                             classes: int = 5, seed: int = 0) -> Path:
    """Write ``out``/VOC2012 (``out`` plays VOCdevkit) with the first ``classes`` VOC classes; return ``out``.

    Images are ``size`` pixels on their long side, landscape or portrait, 2-4 objects each.
    """
    if not 1 <= classes <= len(CLASSES):
        raise InputError(f"synthetic VOC detection: classes must be 1..{len(CLASSES)}, got {classes}")
    if size < 48:
        raise InputError(f"synthetic VOC detection: size must be at least 48, got {size}")
    base = Path(out) / "VOC2012"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lists: dict[str, list[tuple[str, list[Drawn]]]] = {"train": [], "val": []}
    number = 0
    for split, count in (("train", n_train), ("val", n_val)):
        for _ in range(count):
            width, height = size, round(size * rng.uniform(0.7, 0.95))
            if rng.random() < 0.3:
                width, height = height, width
            image, objects = scene(rng, width, height, classes)
            old_style = number % 3 == 0
            name = f"{2007 if old_style else 2008 + number % 4}_{number:06d}"
            number += 1
            image.save(base / "JPEGImages" / f"{name}.jpg", quality=92)
            xml = ET.tostring(annotation_xml(name, width, height, objects, old_style), encoding="unicode")
            (base / "Annotations" / f"{name}.xml").write_text(xml + "\n", encoding="utf-8")
            lists[split].append((name, objects))
    lists["trainval"] = lists["train"] + lists["val"]
    for split, entries in lists.items():
        _write_list(base / "ImageSets" / "Main" / f"{split}.txt", [name for name, _ in entries])
        for k in range(classes):
            _write_list(base / "ImageSets" / "Main" / f"{CLASSES[k]}_{split}.txt",
                        [f"{name} {_presence(objects, k):2d}" for name, objects in entries])
    return Path(out)


def _presence(objects: list[Drawn], k: int) -> int:
    """VOC's per-class list value: 1 present, 0 only as difficult objects, -1 absent."""
    mine = [o for o in objects if o.label == k]
    if not mine:
        return -1
    return 0 if all(o.difficult for o in mine) else 1


def _write_list(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def scene(rng: np.random.Generator, width: int, height: int, classes: int) -> tuple[Image.Image, list[Drawn]]:
    """A textured background with 2-4 non-overlapping objects (at least one) and their boxes."""
    image = np.asarray(background(rng, height, width), dtype=np.float32) / 255
    taken = np.zeros((height, width), dtype=bool)
    objects: list[Drawn] = []
    for _ in range(int(rng.integers(2, 5))):
        drawn = _place(rng, image, taken, classes)
        if drawn is not None:
            objects.append(drawn)
    if not objects:  # a crowded small image: one object is always placed, on a fresh background
        return scene(rng, width, height, classes)
    return Image.fromarray((image.clip(0, 1) * 255).round().astype(np.uint8), "RGB"), objects


def _place(rng: np.random.Generator, image: np.ndarray, taken: np.ndarray, classes: int) -> Drawn | None:
    """Paint one object where its box (plus a margin) is free; None when 30 tries find no room."""
    height, width = taken.shape
    label = int(rng.integers(0, classes))
    difficult = rng.random() < 0.12
    short = min(height, width)
    side = max(8, round(short * (rng.uniform(0.1, 0.15) if difficult else rng.uniform(0.22, 0.42))))
    mask = np.asarray(draw_shape(SHAPES[label % len(SHAPES)], side)) > 127
    overhang = 0 if difficult else side // 3 * int(rng.random() < 0.25)
    for _ in range(30):
        top = int(rng.integers(-overhang, height - side + overhang + 1))
        left = int(rng.integers(-overhang, width - side + overhang + 1))
        t, b, l, r = max(top, 0), min(top + side, height), max(left, 0), min(left + side, width)
        visible = mask[t - top: b - top, l - left: r - left]
        if visible.sum() < 0.5 * mask.sum() or taken[max(t - 3, 0): b + 3, max(l - 3, 0): r + 3].any():
            continue
        shade = 0.8 + 0.4 * smooth_noise(rng, b - t, r - l, 3).mean(-1, keepdims=True)
        colour = class_colour(rng, label + 1, classes) * shade
        alpha = (0.55 if difficult else 1.0) * visible[..., None]
        image[t:b, l:r] = (1 - alpha) * image[t:b, l:r] + alpha * colour
        taken[t:b, l:r] = True
        rows, cols = np.nonzero(visible)
        box = (l + int(cols.min()) + 1, t + int(rows.min()) + 1, l + int(cols.max()) + 1, t + int(rows.max()) + 1)
        truncated = bool(visible.sum() < mask.sum())
        return Drawn(label, box, difficult, truncated, POSES[int(rng.integers(len(POSES)))])
    return None


def annotation_xml(name: str, width: int, height: int, objects: list[Drawn], old_style: bool) -> ET.Element:
    """The XML VOC writes: 2007's order, or (``old_style`` False) as 2008-2012's: children sorted, name first."""
    year = name.split("_")[0]
    fields: list[tuple[str, object]] = [
        ("folder", "VOC2012"), ("filename", f"{name}.jpg"),
        ("source", [("database", f"The VOC{year} Database"), ("annotation", f"PASCAL VOC{year}"),
                    ("image", "flickr")]),
        ("size", [("width", width), ("height", height), ("depth", 3)]),
        ("segmented", 0),
    ]
    for o in objects:
        obj: list[tuple[str, object]] = [("name", CLASSES[o.label]), ("pose", o.pose),
                                         ("truncated", int(o.truncated))]
        if not old_style:
            obj.append(("occluded", 0))
        obj += [("difficult", int(o.difficult)), ("bndbox", list(zip(("xmin", "ymin", "xmax", "ymax"), o.box)))]
        fields.append(("object", obj))
    root = ET.Element("annotation")
    _fill(root, fields, sort=not old_style)
    ET.indent(root, space="\t")
    return root


def _fill(parent: ET.Element, fields: list[tuple[str, object]], sort: bool) -> None:
    for tag, value in sorted(fields, key=lambda f: (f[0] != "name", f[0])) if sort else fields:
        child = ET.SubElement(parent, tag)
        if isinstance(value, list):
            _fill(child, value, sort)
        else:
            child.text = str(value)
