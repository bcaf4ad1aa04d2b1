"""``data convert``: any detection layout written as any other, read back the same.

Records come from the shared readers (detection.read), so a conversion carries exactly what
training would read. Coordinates are written at full float precision, so boxes come back
to well within 1e-6 of the image size; class names and their order are kept (COCO ids
1..n in label order, YOLO names, VOC object names - which read back sorted, so a VOC
target needs sorted names). Images are linked (symbolic links to the originals) or, with
``copy``, copied. What a target cannot hold is said in the returned notes: bananas CSV has
no class names and lists only images with objects; YOLO has no crowd flag.
"""

from __future__ import annotations

import csv
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import yaml

from cvtool.data import bananas, detection
from cvtool.data.records import Record, Source
from cvtool.errors import InputError
from cvtool.files import json_text

TARGETS = ("coco", "yolo", "voc", "bananas")


def place(image: Path, target: Path, copy: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(image, target)
    else:
        os.symlink(image.resolve(), target)


def unique_names(source: Source, shared: bool = False) -> dict[tuple[str, int], str]:
    """A file name per (split, index), the image's own unless two images in one folder (each split's,
    or with ``shared`` one for all) would share it."""
    names: dict[tuple[str, int], str] = {}
    taken: set[str] = set()
    for split, records in source.splits.items():
        if not shared:
            taken = set()
        for k, record in enumerate(records):
            name = record.image.name
            if name in taken or Path(name).stem in taken:
                name = f"{split}_{k}_{name}"
            taken.add(Path(name).stem)
            taken.add(name)
            names[split, k] = name
    return names


def num(value: float) -> str:
    return repr(float(value))


def write_coco(source: Source, out: Path, copy: bool) -> list[str]:
    """annotations/instances_<split>.json beside <split>/ (what coco.find looks for)."""
    names = unique_names(source)
    cats = [{"id": k + 1, "name": name, "supercategory": "none"} for k, name in enumerate(source.classes)]
    ann_id = 0
    for split, records in source.splits.items():
        images, annotations = [], []
        for k, record in enumerate(records):
            place(record.image, out / split / names[split, k], copy)
            images.append({"id": k + 1, "file_name": names[split, k], "width": record.size[0],
                           "height": record.size[1]})
            for (x1, y1, x2, y2), label, crowd in zip(record.boxes, record.labels, record.crowd):
                ann_id += 1
                annotations.append({"id": ann_id, "image_id": k + 1, "category_id": label + 1,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                    "iscrowd": int(crowd)})
        path = out / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json_text({"images": images, "annotations": annotations, "categories": cats}))
    return []


def write_yolo(source: Source, out: Path, copy: bool) -> list[str]:
    """data.yaml, images/<split>/ and labels/<split>/<stem>.txt."""
    names = unique_names(source)
    crowd = 0
    for split, records in source.splits.items():
        for k, record in enumerate(records):
            image = out / "images" / split / names[split, k]
            place(record.image, image, copy)
            width, height = record.size
            lines = [f"{label} {num((x1 + x2) / 2 / width)} {num((y1 + y2) / 2 / height)} "
                     f"{num((x2 - x1) / width)} {num((y2 - y1) / height)}\n"
                     for (x1, y1, x2, y2), label in zip(record.boxes, record.labels)]
            crowd += sum(record.crowd)
            label_file = out / "labels" / split / f"{Path(names[split, k]).stem}.txt"
            label_file.parent.mkdir(parents=True, exist_ok=True)
            label_file.write_text("".join(lines))
    spec = {"path": ".", "train": "images/train", "val": "images/val", "names": list(source.classes)}
    (out / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return [f"YOLO has no crowd flag: {crowd} crowd/difficult objects are now plain objects"] if crowd else []


def write_voc(source: Source, out: Path, copy: bool) -> list[str]:
    """A VOC year folder: Annotations/, JPEGImages/, ImageSets/Main/<split>.txt."""
    if list(source.classes) != sorted(source.classes):
        raise InputError(f"VOC has no class list, its names read back sorted; {source.root}'s classes "
                         f"({', '.join(source.classes[:4])}, ...) are not in sorted order")
    names = unique_names(source, shared=True)
    for split, records in source.splits.items():
        ids = []
        for k, record in enumerate(records):
            name = names[split, k]
            place(record.image, out / "JPEGImages" / name, copy)
            ids.append(Path(name).stem)
            xml = voc_xml(record, name, source.classes)
            (out / "Annotations").mkdir(parents=True, exist_ok=True)
            ET.ElementTree(xml).write(out / "Annotations" / f"{Path(name).stem}.xml", encoding="utf-8")
        main = out / "ImageSets" / "Main"
        main.mkdir(parents=True, exist_ok=True)
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return []


def voc_xml(record: Record, filename: str, classes: list[str]) -> ET.Element:
    """VOC's 1-based inclusive pixels: a 0-based corner x1 is written as x1 + 1 (voc_detection reads it back)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for key, value in (("width", record.size[0]), ("height", record.size[1]), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for (x1, y1, x2, y2), label, crowd in zip(record.boxes, record.labels, record.crowd):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[label]
        ET.SubElement(obj, "difficult").text = str(int(crowd))
        box = ET.SubElement(obj, "bndbox")
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(box, key).text = num(value)
    return root


def write_bananas(source: Source, out: Path, copy: bool) -> list[str]:
    """bananas_<split>/label.csv and images/: only images with objects, no names."""
    names = unique_names(source)
    notes = []
    for split, records in source.splits.items():
        folder = out / f"bananas_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        negatives = 0
        with (folder / "label.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(bananas.HEADER)
            for k, record in enumerate(records):
                if not record.boxes:
                    negatives += 1
                    continue
                place(record.image, folder / "images" / names[split, k], copy)
                for box, label in zip(record.boxes, record.labels):
                    writer.writerow([names[split, k], label, *map(num, box)])
        if negatives:
            notes.append(f"{split}: {negatives} images without objects left out (a bananas CSV lists objects)")
    crowd = sum(sum(r.crowd) for rs in source.splits.values() for r in rs)
    if crowd:
        notes.append(f"bananas has no crowd flag: {crowd} crowd/difficult objects are now plain objects")
    return notes + [f"bananas has no class names: labels 0..{len(source.classes) - 1} stand for "
                    f"{', '.join(source.classes)}"]


WRITERS: dict[str, Callable[[Source, Path, bool], list[str]]] = {
    "coco": write_coco, "yolo": write_yolo, "voc": write_voc, "bananas": write_bananas}


def convert(src: str | Path, to: str, out: str | Path, *, fmt: str = "auto", copy: bool = False,
            splits: detection.Splits | None = None) -> tuple[Source, list[str]]:
    """Read ``src`` (any layout) and write it as ``to`` into the new folder ``out``; (what was read, notes)."""
    if to not in WRITERS:
        raise InputError(f"--to {to!r} is not one of {', '.join(TARGETS)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} already holds files; choose an empty or new folder")
    source = detection.read(src, fmt, splits=splits)
    out.mkdir(parents=True, exist_ok=True)
    return source, source.notes + WRITERS[to](source, out, copy)
