"""Pascal VOC2012 object detection: the XML annotations, one split as a Dataset.

Layout (DATASETS.md): ``VOC2012/ImageSets/Main/{train,val}.txt`` list ids, each with
``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``. The XML's child order varies between
files and some coordinates are written as floats, so fields are looked up by name and read
as numbers. VOC boxes count 1-based pixels with both ends inside the box; here they become
continuous 0-based corners (xmin - 1, ymin - 1, xmax, ymax), the convention bananas.py
uses, so a box's width stays xmax - xmin + 1 pixels. Every listed id is parsed and checked
up front, so a bad file fails before training, naming the file and the object.

Items match BananaDataset's: a uint8 image resized to image_size, label rows
[class, x1, y1, x2, y2] divided by the image size (padding rows class -1), plus the
per-box ``difficult`` flag the VOC metric needs (difficult objects are neither hits nor misses).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors

from cvtool.data import voc
from cvtool.data.bananas import Augment, load_image
from cvtool.data.images import load_rgb, read_or_skip
from cvtool.errors import InputError

CLASSES: tuple[str, ...] = voc.CLASSES[1:]
LAYOUT = ("VOCdevkit/VOC2012/ImageSets/Main/{train,val}.txt (one id a line), "
          "Annotations/<id>.xml (VOC XML: object name, bndbox, difficult), JPEGImages/<id>.jpg")
COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class VOCObject:
    """One <object>: class index into the class list, 0-based pixel box, VOC's flags."""

    name: str
    label: int
    box: tuple[float, float, float, float]
    difficult: bool = False
    truncated: bool = False


@dataclass
class VOCAnnotation:
    """One XML file; ``size`` is (width, height) from <size>, None when the file has none."""

    path: Path
    filename: str
    size: tuple[int, int] | None
    objects: list[VOCObject]


def find_root(root: str | Path) -> Path | None:
    """The VOC2012 folder holding ImageSets/Main, whether ``root`` names it, VOCdevkit or the folder above."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Main").is_dir():
            return candidate
    return None


def voc_root(root: str | Path) -> Path:
    found = find_root(root)
    if found is None:
        raise InputError(f"{root} is not a VOC2012 detection folder: expected {LAYOUT}")
    return found


def parse_annotation(path: Path, classes: Sequence[str] = CLASSES) -> VOCAnnotation:
    """Read one VOC XML file; anything malformed is an InputError naming the file and the object."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{path}: not valid XML ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if root.tag != "annotation":
        raise InputError(f"{path}: the root element is <{root.tag}>, expected <annotation>")
    index = {name: k for k, name in enumerate(classes)}
    objects = [_parse_object(obj, f"{path} object {k}", index)
               for k, obj in enumerate(root.findall("object"), 1)]
    return VOCAnnotation(path, (root.findtext("filename") or "").strip(), _parse_size(root, path), objects)


def _parse_object(obj: ET.Element, where: str, index: dict[str, int]) -> VOCObject:
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise InputError(f"{where}: no <name>")
    where = f"{where} ({name})"
    if name not in index:
        known = ", ".join(list(index)[:25])
        raise InputError(f"{where}: class {name!r} is not in the class list ({known}); set data.classes")
    box = obj.find("bndbox")
    if box is None:
        raise InputError(f"{where}: no <bndbox>")
    xmin, ymin, xmax, ymax = (_number(box.findtext(key), f"{where} {key}") for key in COORDS)
    if xmin >= xmax or ymin >= ymax:
        raise InputError(f"{where}: bndbox ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) needs xmin < xmax and "
                         f"ymin < ymax")
    if xmin < 0 or ymin < 0:
        raise InputError(f"{where}: bndbox ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) starts outside the image")
    return VOCObject(name, index[name], (max(xmin - 1, 0.0), max(ymin - 1, 0.0), xmax, ymax),
                     difficult=_flag(obj, "difficult", where), truncated=_flag(obj, "truncated", where))


def _number(text: str | None, where: str) -> float:
    if text is None:
        raise InputError(f"{where}: missing")
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {text.strip()!r} is not a finite number")
    return value


def _flag(obj: ET.Element, key: str, where: str) -> bool:
    """VOC's 0/1 flags; a file without the field means 0."""
    text = obj.findtext(key)
    if text is None or not text.strip():
        return False
    value = _number(text, f"{where} {key}")
    if value not in (0, 1):
        raise InputError(f"{where} {key}: {text.strip()!r} is neither 0 nor 1")
    return bool(value)


def _parse_size(root: ET.Element, path: Path) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None or size.find("width") is None or size.find("height") is None:
        return None
    width, height = (_number(size.findtext(key), f"{path} size {key}") for key in ("width", "height"))
    return round(width), round(height)


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image file's header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def check_boxes(ann: VOCAnnotation, width: int, height: int) -> None:
    """Each box inside the image, whose real size must agree with the XML's <size>."""
    if ann.size is not None and ann.size != (width, height):
        raise InputError(f"{ann.path}: <size> says {ann.size[0]}x{ann.size[1]} but the image is {width}x{height}")
    for k, obj in enumerate(ann.objects, 1):
        if obj.box[2] > width or obj.box[3] > height:
            raise InputError(f"{ann.path} object {k} ({obj.name}): bndbox ends at ({obj.box[2]:g}, {obj.box[3]:g}), "
                             f"outside the {width}x{height} image")


def read_ids(list_file: Path) -> list[tuple[int, str]]:
    """(line number, id) for each non-empty line of an ImageSets/Main list."""
    if not list_file.is_file():
        raise InputError(f"{list_file} is missing: expected {LAYOUT}")
    lines = list_file.read_text(encoding="utf-8", errors="replace").splitlines()
    ids = [(n, line.split()[0]) for n, line in enumerate(lines, 1) if line.strip()]
    if not ids:
        raise InputError(f"{list_file} lists no image ids")
    return ids


@dataclass
class Split:
    """One split's checked annotations, in list order; ``skipped`` counts unreadable images left out."""

    ids: list[str]
    images: list[Path]
    sizes: list[tuple[int, int]]
    annotations: list[VOCAnnotation]
    skipped: int = 0


def read_split(root: str | Path, split: str, classes: Sequence[str] = CLASSES, skip: bool = False) -> Split:
    """Parse and check every id of ``ImageSets/Main/<split>.txt``.

    With ``skip`` (data.on_bad_image: skip) each image is decoded once here and the unreadable
    ones are left out; otherwise only headers are read and a bad image fails when it is loaded.
    """
    base = voc_root(root)
    list_file = base / "ImageSets" / "Main" / f"{split}.txt"
    out = Split([], [], [], [])
    for line, name in read_ids(list_file):
        xml, jpg = base / "Annotations" / f"{name}.xml", base / "JPEGImages" / f"{name}.jpg"
        for kind, path in (("annotation", xml), ("image", jpg)):
            if not path.is_file():
                raise InputError(f"{list_file} line {line}: id {name} has no {kind} {path}")
        ann = parse_annotation(xml, classes)
        size = read_or_skip(jpg, (lambda p: load_rgb(p).size) if skip else header_size, skip)
        if size is None:
            out.skipped += 1
            continue
        check_boxes(ann, *size)
        out.ids.append(name)
        out.images.append(jpg)
        out.sizes.append(size)
        out.annotations.append(ann)
    if not out.ids:
        raise InputError(f"{list_file}: no readable image left ({out.skipped} skipped)")
    return out


class VOCDetection(Dataset):
    """One split as {"image": uint8 (3, S, S), "labels": (max_objects, 5), "difficult": (max_objects,) bool}.

    As BananaDataset: rows [class, x1, y1, x2, y2] with coordinates divided by the image's
    width and height, padding rows class -1 and zero box. The labels of the whole split are
    held in ``labels`` and ``difficult``; images are decoded (and resized) as they are asked
    for, since VOC at full size would not fit in memory.
    """

    def __init__(self, root: str | Path, split: str, image_size: int, *, classes: Sequence[str] = CLASSES,
                 augment: Augment | None = None, skip_bad: bool = False):
        self.classes = list(classes)
        data = read_split(root, split, self.classes, skip_bad)
        self.ids, self.paths, self.skipped = data.ids, data.images, data.skipped
        self.image_size = image_size
        self.max_objects = max(1, max(len(a.objects) for a in data.annotations))
        self.labels = torch.zeros(len(self.ids), self.max_objects, 5)
        self.labels[..., 0] = -1
        self.difficult = torch.zeros(len(self.ids), self.max_objects, dtype=torch.bool)
        for i, (ann, (width, height)) in enumerate(zip(data.annotations, data.sizes)):
            if not ann.objects:
                continue
            rows = torch.tensor([[o.label, *o.box] for o in ann.objects], dtype=torch.float32)
            rows[:, 1:] /= torch.tensor([width, height, width, height], dtype=torch.float32)
            self.labels[i, : len(rows)] = rows
            self.difficult[i, : len(rows)] = torch.tensor([o.difficult for o in ann.objects])
        self.augment = augment if augment is not None and augment.enabled() else None
        self._transform = self.augment.transform() if self.augment else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image, _ = load_image(self.paths[i], self.image_size)
        labels, difficult = self.labels[i], self.difficult[i]
        if self._transform is not None:
            image, labels, difficult = self._augmented(image, labels, difficult)
        return {"image": image, "labels": labels, "difficult": difficult}

    def _augmented(self, image: torch.Tensor, labels: torch.Tensor,
                   difficult: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boxes move with the image; class and difficult travel together so dropped boxes lose both."""
        size = self.image_size
        valid = labels[:, 0] >= 0
        boxes = tv_tensors.BoundingBoxes(labels[valid, 1:] * size, format="XYXY", canvas_size=(size, size))
        tags = torch.stack([labels[valid, 0], difficult[valid].float()], dim=1)
        out = self._transform({"image": tv_tensors.Image(image), "boxes": boxes, "labels": tags})
        n = out["labels"].shape[0]
        labels = torch.zeros_like(labels)
        labels[:, 0] = -1
        labels[:n, 0] = out["labels"][:, 0]
        labels[:n, 1:] = out["boxes"].as_subclass(torch.Tensor).clamp(0, size) / size
        flags = torch.zeros_like(difficult)
        flags[:n] = out["labels"][:, 1] > 0
        return out["image"].as_subclass(torch.Tensor), labels, flags
