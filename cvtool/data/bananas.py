"""The banana detection dataset: loader for the real layout (its synthetic twin: cvtool.data.bananas_synth).

Layout (DATASETS.md): ``bananas_{train,val}/label.csv`` with the header
``img_name,label,xmin,ymin,xmax,ymax`` (pixel coordinates, one row per object) and the
images in ``bananas_{train,val}/images/``. The set is small (1000 + 100 images of 256x256),
so a split is decoded once into a uint8 tensor; pixels stay 0-255 as the book feeds them.
Every label row is checked up front so a bad file fails before training, naming its line.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from cvtool.data.bananas_synth import HEADER, synthesize  # noqa: F401 - re-exported
from cvtool.data.box_dataset import Augment, BoxDataset, load_image, to_tensor  # noqa: F401 - re-exported
from cvtool.data.images import header_size, read_or_skip
from cvtool.data.records import Record
from cvtool.errors import InputError

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
