"""Pascal VOC object detection, any year: the XML annotations, one split as records or a Dataset.

Layout (DATASETS.md): ``VOC<year>/ImageSets/Main/{train,val}.txt`` (or ``trainval``/``test``)
list ids, each with ``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg`` (or the XML's
``<filename>``, as labelImg writes it). The XML's child order varies between
files and some coordinates are written as floats, so fields are looked up by name and read
as numbers. VOC boxes count 1-based pixels with both ends inside the box; here they become
continuous 0-based corners (xmin - 1, ymin - 1, xmax, ymax), the convention bananas.py
uses, so a box's width stays xmax - xmin + 1 pixels. Every listed id is parsed and checked
up front, so a bad file fails before training, naming the file and the object.

Items are BoxDataset's: a uint8 image resized to image_size, label rows [class, x1, y1, x2, y2]
divided by the image size (padding rows class -1), plus the per-box ``difficult`` flag the
metric needs (difficult objects are neither hits nor misses).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cvtool.data import voc
from cvtool.data.box_dataset import Augment, BoxDataset
from cvtool.data.images import header_size, load_rgb, read_or_skip
from cvtool.data.records import Issues, Record
from cvtool.data.segmentation import read_ids
from cvtool.errors import InputError

CLASSES: tuple[str, ...] = voc.CLASSES[1:]
LAYOUT = ("VOCdevkit/VOC<year>/ImageSets/Main/{train,val}.txt or {trainval,test}.txt (one id a line), "
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


def candidates(root: str | Path) -> list[Path]:
    """The VOC year folders holding ImageSets/Main: ``root`` itself, its VOC* folders or VOCdevkit/VOC*."""
    root = Path(root)
    if (root / "ImageSets" / "Main").is_dir():
        return [root]
    found = []
    for parent in (root, root / "VOCdevkit"):
        if parent.is_dir():
            found += [p for p in sorted(parent.glob("VOC*")) if (p / "ImageSets" / "Main").is_dir()]
    return found


def voc_root(root: str | Path) -> Path:
    found = candidates(root)
    if not found:
        raise InputError(f"{root} is not a VOC detection folder: expected {LAYOUT}")
    if len(found) > 1:
        raise InputError(f"{root} holds {len(found)} VOC years ({', '.join(p.name for p in found)}); "
                         f"set data.root to one of them")
    return found[0]


def split_lists(base: Path, train: str, val: str) -> tuple[str, str, str | None]:
    """The split list names to read, and a note when ``auto`` fell back to trainval/test."""
    main = base / "ImageSets" / "Main"
    if train != "auto" and val != "auto":
        return train, val, None
    if (main / "train.txt").is_file() or not (main / "trainval.txt").is_file():
        return ("train" if train == "auto" else train), ("val" if val == "auto" else val), None
    chosen = ("trainval" if train == "auto" else train), ("test" if val == "auto" else val)
    return *chosen, f"no train.txt, so {chosen[0]}.txt trains and {chosen[1]}.txt validates"


def parse_annotation(path: Path, classes: Sequence[str] | None = CLASSES) -> VOCAnnotation:
    """Read one VOC XML file; anything malformed is an InputError naming the file and the object.

    With ``classes`` None any name is taken (label -1), so the names can be gathered first.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{path}: not valid XML ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if root.tag != "annotation":
        raise InputError(f"{path}: the root element is <{root.tag}>, expected <annotation>")
    index = None if classes is None else {name: k for k, name in enumerate(classes)}
    objects = [_parse_object(obj, f"{path} object {k}", index)
               for k, obj in enumerate(root.findall("object"), 1)]
    return VOCAnnotation(path, (root.findtext("filename") or "").strip(), _parse_size(root, path), objects)


def _parse_object(obj: ET.Element, where: str, index: dict[str, int] | None) -> VOCObject:
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise InputError(f"{where}: no <name>")
    where = f"{where} ({name})"
    if index is not None and name not in index:
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
    return VOCObject(name, -1 if index is None else index[name], (max(xmin - 1, 0.0), max(ymin - 1, 0.0), xmax, ymax),
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


def check_boxes(ann: VOCAnnotation, width: int, height: int) -> None:
    """Each box inside the image, whose real size must agree with the XML's <size>."""
    if ann.size is not None and ann.size != (width, height):
        raise InputError(f"{ann.path}: <size> says {ann.size[0]}x{ann.size[1]} but the image is {width}x{height}")
    for k, obj in enumerate(ann.objects, 1):
        if obj.box[2] > width or obj.box[3] > height:
            raise InputError(f"{ann.path} object {k} ({obj.name}): bndbox ends at ({obj.box[2]:g}, {obj.box[3]:g}), "
                             f"outside the {width}x{height} image")


@dataclass
class Split:
    """One split's checked annotations, in list order; ``skipped`` counts unreadable images left out."""

    ids: list[str]
    images: list[Path]
    sizes: list[tuple[int, int]]
    annotations: list[VOCAnnotation]
    skipped: int = 0


def read_split(root: str | Path, split: str, classes: Sequence[str] | None = CLASSES, skip: bool = False,
               issues: Issues | None = None) -> Split:
    """Parse and check every id of ``ImageSets/Main/<split>.txt``.

    With ``skip`` (data.on_bad_image: skip) each image is decoded once here and the unreadable
    ones are left out; otherwise only headers are read and a bad image fails when it is loaded.
    With ``classes`` None every object name is taken (label -1; see ``class_names``). A
    collecting ``issues`` (data check) hears of each bad id and the split goes on without it.
    """
    base = voc_root(root)
    list_file = base / "ImageSets" / "Main" / f"{split}.txt"
    out = Split([], [], [], [])
    for line, name in read_ids(list_file, LAYOUT):
        try:
            found = _read_id(base, list_file, line, name, classes, skip)
        except InputError as exc:
            if issues is None or not issues.collect:
                raise
            issues.add(list_file, str(exc))
            continue
        if found is None:
            out.skipped += 1
            continue
        jpg, size, ann = found
        out.ids.append(name)
        out.images.append(jpg)
        out.sizes.append(size)
        out.annotations.append(ann)
    if not out.ids:
        raise InputError(f"{list_file}: no readable image left ({out.skipped} skipped)")
    return out


def _read_id(base: Path, list_file: Path, line: int, name: str, classes: Sequence[str] | None,
             skip: bool) -> tuple[Path, tuple[int, int], VOCAnnotation] | None:
    xml = base / "Annotations" / f"{name}.xml"
    if not xml.is_file():
        raise InputError(f"{list_file} line {line}: id {name} has no annotation {xml}")
    ann = parse_annotation(xml, classes)
    jpg = image_of(base, name, ann.filename)
    if not jpg.is_file():
        raise InputError(f"{list_file} line {line}: id {name} has no image {jpg}")
    size = read_or_skip(jpg, (lambda p: load_rgb(p).size) if skip else
                        (lambda p: header_size(p, lambda exc: f"cannot read image {p}: {exc}")), skip)
    if size is None:
        return None
    check_boxes(ann, *size)
    return jpg, size, ann


def image_of(base: Path, name: str, filename: str) -> Path:
    """JPEGImages/<id>.jpg, or the XML's <filename> there (labelImg keeps .png and .jpeg as they are)."""
    jpg = base / "JPEGImages" / f"{name}.jpg"
    if not jpg.is_file() and filename and Path(filename).name == filename:
        other = base / "JPEGImages" / filename
        return other if other.is_file() else jpg
    return jpg


def class_names(splits: Sequence[Split]) -> list[str]:
    """The object names of the splits' XML, sorted."""
    return sorted({o.name for s in splits for a in s.annotations for o in a.objects})


def records(split: Split, classes: Sequence[str]) -> list[Record]:
    """The split as records, objects labelled by their place in ``classes``."""
    index = {name: k for k, name in enumerate(classes)}
    out = []
    for path, size, ann in zip(split.images, split.sizes, split.annotations):
        record = Record(path, size, where=str(ann.path))
        for k, obj in enumerate(ann.objects, 1):
            if obj.name not in index:
                raise InputError(f"{ann.path} object {k} ({obj.name}): class {obj.name!r} is not in the class "
                                 f"list ({', '.join(list(index)[:25])}); set data.classes")
            record.add(obj.box, index[obj.name], obj.difficult)
        out.append(record)
    return out


class VOCDetection(BoxDataset):
    """One split, images decoded as they are asked for; items as BoxDataset's ("difficult": VOC's flag)."""

    def __init__(self, root: str | Path, split: str, image_size: int, *, classes: Sequence[str] = CLASSES,
                 augment: Augment | None = None, skip_bad: bool = False):
        self.classes = list(classes)
        data = read_split(root, split, self.classes, skip_bad)
        self.ids = data.ids
        super().__init__(records(data, self.classes), image_size, augment=augment, where=split)
        self.skipped = data.skipped
