"""The banana detection dataset: loader for the real layout and a synthetic twin.

Layout (DATASETS.md): ``bananas_{train,val}/label.csv`` with the header
``img_name,label,xmin,ymin,xmax,ymax`` (pixel coordinates, one row per object) and the
images in ``bananas_{train,val}/images/``. The set is small (1000 + 100 images of 256x256),
so a split is decoded once into a uint8 tensor; pixels stay 0-255 as the book feeds them.
Every label row is checked up front so a bad file fails before training, naming its line.
"""

from __future__ import annotations

import colorsys
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cvtool.data.box_dataset import Augment, BoxDataset, load_image, to_tensor  # noqa: F401 - re-exported
from cvtool.data.images import header_size, read_or_skip
from cvtool.data.records import Record
from cvtool.data.textures import background
from cvtool.errors import InputError

HEADER = ("img_name", "label", "xmin", "ymin", "xmax", "ymax")
LAYOUT = ("banana-detection/bananas_{train,val}/label.csv (header img_name,label,xmin,ymin,xmax,ymax; "
          "pixel coordinates, one row per object) and bananas_{train,val}/images/<img_name>")


@dataclass
class Annotations:
    """One split's label file: image paths and, per image, rows [class, x1, y1, x2, y2] in pixels."""

    paths: list[Path]
    objects: list[list[list[float]]]
    skipped: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)


def read_labels(split_dir: Path, num_classes: int | None = None, skip: bool = False) -> Annotations:
    """Parse and check ``split_dir/label.csv``; errors name the file and line.

    With ``skip`` the rows of an image whose header cannot be read are left out (logged once).
    """
    csv_path = split_dir / "label.csv"
    if not csv_path.is_file():
        raise InputError(f"{csv_path} is missing; expected layout: {LAYOUT}")
    objects: dict[str, list[list[float]]] = {}
    sizes: dict[str, tuple[int, int] | None] = {}
    try:
        with csv_path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != HEADER:
                raise InputError(f"{csv_path} line 1: expected header {','.join(HEADER)}, got "
                                 f"{','.join(header or []) or 'nothing'}")
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                name, cls, box = _parse_row(row, csv_path, line, num_classes)
                if name not in sizes:
                    sizes[name] = read_or_skip(split_dir / "images" / name,
                                               lambda path: _image_size(path, csv_path, line), skip)
                size = sizes[name]
                if size is None:
                    continue
                width, height = size
                if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
                    raise InputError(f"{csv_path} line {line}: box {_fmt(box)} lies outside the "
                                     f"{width}x{height} image {name}")
                objects.setdefault(name, []).append([float(cls), *box])
    except UnicodeDecodeError:
        raise InputError(f"{csv_path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"{csv_path}: {exc}") from None
    if not objects:
        raise InputError(f"{csv_path} lists no objects")
    names = list(objects)
    skipped = sum(size is None for size in sizes.values())
    return Annotations([split_dir / "images" / n for n in names], [objects[n] for n in names], skipped,
                       [sizes[n] for n in names])  # type: ignore[misc]


def _parse_row(row: list[str], csv_path: Path, line: int,
               num_classes: int | None) -> tuple[str, int, list[float]]:
    if len(row) != len(HEADER):
        raise InputError(f"{csv_path} line {line}: expected {len(HEADER)} fields, got {len(row)}")
    name = row[0].strip()
    if not name or Path(name).name != name:
        raise InputError(f"{csv_path} line {line}: img_name {name!r} must be a file name in images/")
    try:
        cls = int(row[1])
    except ValueError:
        raise InputError(f"{csv_path} line {line}: label {row[1]!r} is not an integer") from None
    if cls < 0 or (num_classes is not None and cls >= num_classes):
        limit = f" (model.num_classes is {num_classes})" if num_classes is not None else ""
        raise InputError(f"{csv_path} line {line}: label {cls} is not a valid class index{limit}")
    box = []
    for key, cell in zip(HEADER[2:], row[2:]):
        try:
            value = float(cell)
        except ValueError:
            raise InputError(f"{csv_path} line {line}: {key} {cell!r} is not a number") from None
        if not math.isfinite(value):
            raise InputError(f"{csv_path} line {line}: {key} {cell!r} is not a finite number")
        box.append(value)
    if box[0] >= box[2] or box[1] >= box[3]:
        raise InputError(f"{csv_path} line {line}: box {_fmt(box)} needs xmin < xmax and ymin < ymax")
    return name, cls, box


def _image_size(path: Path, csv_path: Path, line: int) -> tuple[int, int]:
    if not path.is_file():
        raise InputError(f"{csv_path} line {line}: image {path} does not exist")
    return header_size(path, lambda _: f"{csv_path} line {line}: {path} is not a readable image")


def _fmt(box: list[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"


class BananaDataset(BoxDataset):
    """One split's images, decoded into memory at start-up (the set is small); see BoxDataset for items.

    ``skip_bad`` leaves out the images that cannot be read, counted in ``skipped``.
    """

    def __init__(self, root: str | Path, split: str, image_size: int, *,
                 num_classes: int | None = None, augment: Augment | None = None, skip_bad: bool = False):
        self.split_dir = Path(root) / f"bananas_{split}"
        ann = read_labels(self.split_dir, num_classes, skip_bad)
        super().__init__(records(ann), image_size, augment=augment, cache=True, skip_bad=skip_bad,
                         where=str(self.split_dir))
        self.skipped += ann.skipped


def records(ann: Annotations) -> list[Record]:
    """The label file's images as records (boxes in pixels)."""
    out = []
    for path, size, objs in zip(ann.paths, ann.sizes, ann.objects):
        record = Record(path, size)
        for cls, *box in objs:
            record.add(tuple(box), int(cls))  # type: ignore[arg-type]
        out.append(record)
    return out


# --------------------------------------------------------------------------- synthetic data


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
