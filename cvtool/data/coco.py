"""COCO detection JSON: the 2017 release's layout and the per-split folders labelling tools export.

Layouts (either; data.train_annotations / data.train_images and the val keys name others):
- ``annotations/instances_{train,val}2017.json`` beside ``{train,val}2017/`` (the release);
- ``train/_annotations.coco.json`` with the split's images beside it, ``valid/`` or ``val/``
  likewise (Roboflow, CVAT and MMDetection exports).

Category ids map to contiguous labels in id order; ``iscrowd`` objects are kept as crowd
(neither hits nor misses in mAP, as COCOeval treats them); images without annotations are
negatives. Sizes are the JSON's width/height (the frame the boxes were drawn in); an image
without them has its header read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cvtool.data.records import Issues, Record, checked_box, image_size
from cvtool.errors import InputError

LAYOUT = ("annotations/instances_{train,val}2017.json beside {train,val}2017/ (the COCO release), or "
          "{train,valid|val}/_annotations.coco.json with each split's images beside it (tool exports)")
EXPORT_NAME = "_annotations.coco.json"
EXPORT_SPLITS = {"train": ("train",), "val": ("valid", "val")}


def find(root: Path) -> dict[str, tuple[Path, Path]]:
    """split -> (annotation file, image folder) for the layouts found, or {}."""
    found: dict[str, tuple[Path, Path]] = {}
    for split in ("train", "val"):
        release = sorted((root / "annotations").glob(f"instances_{split}*.json"))
        if release:
            found[split] = (release[0], root / release[0].stem.removeprefix("instances_"))
            continue
        for folder in EXPORT_SPLITS[split]:
            if (root / folder / EXPORT_NAME).is_file():
                found[split] = (root / folder / EXPORT_NAME, root / folder)
                break
    return found


def looks_like(root: Path) -> str | None:
    """What marks ``root`` as COCO (for data.format: auto's header line), or None."""
    found = find(root)
    return f"{found['train'][0].relative_to(root)}" if "train" in found else None


def split_paths(root: Path, given: dict[str, tuple[str, str]]) -> dict[str, tuple[Path, Path]]:
    """Each split's (annotation file, image folder): the keys given, else the layout found."""
    found = find(root)
    out = {}
    for split, (annotations, images) in given.items():
        json_path = root / annotations if annotations else found.get(split, (None, None))[0]
        if json_path is None:
            raise InputError(f"{root} has no COCO {split} annotations: expected {LAYOUT}, "
                             f"or name the file with data.{split}_split")
        if not json_path.is_file():
            raise InputError(f"COCO annotation file {json_path} does not exist")
        if images:
            folder = root / images
        elif annotations:
            folder = images_beside(json_path, root)
        else:
            folder = found[split][1]
        out[split] = (json_path, folder)
    return out


def images_beside(json_path: Path, root: Path) -> Path:
    """The image folder of an annotation file named by hand: root/<x> for annotations/instances_<x>.json
    (the release's naming), else the folder the file sits in (the exports')."""
    named = root / json_path.stem.removeprefix("instances_")
    return named if json_path.stem.startswith("instances_") and named.is_dir() else json_path.parent


def load_json(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable COCO JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("categories"), list):
        raise InputError(f"{path}: not COCO detection JSON (needs 'images' and 'categories' lists)")
    return data


def categories(data: dict[str, Any], path: Path) -> list[tuple[int, str]]:
    """(id, name) in id order."""
    out = []
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise InputError(f"{path}: categories[{k}] needs an integer id and a name")
        out.append((cat["id"], cat["name"]))
    ids = [i for i, _ in out]
    if len(set(ids)) != len(ids):
        raise InputError(f"{path}: two categories share an id")
    return sorted(out)


def parse(data: dict[str, Any], path: Path, folder: Path, issues: Issues) -> tuple[list[tuple[int, str]], list[Record]]:
    """The categories and one record per image (in file order); files on disk are not looked at."""
    cats = categories(data, path)
    label_of = {cat_id: k for k, (cat_id, _) in enumerate(cats)}
    by_id: dict[Any, Record] = {}
    prefix = str(path)
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            issues.add(path, f"images[{k}] needs an id and a file_name")
            continue
        size = (img.get("width"), img.get("height"))
        known = all(isinstance(v, int) and v > 0 for v in size)
        by_id[img["id"]] = Record(folder / img["file_name"], size if known else (0, 0),  # type: ignore[arg-type]
                                  where=f"{prefix} image {img['id']}")
    for k, ann in enumerate(data.get("annotations") or []):
        _add_annotation(ann, k, by_id, label_of, path, issues)
    return cats, list(by_id.values())


def _add_annotation(ann: Any, k: int, by_id: dict[Any, Record], label_of: dict[int, int], path: Path,
                    issues: Issues) -> None:
    if not isinstance(ann, dict):
        issues.add(path, f"annotations[{k}] is not an object")
        return
    where = _Name(ann, k)
    record = by_id.get(ann.get("image_id"))
    if record is None:
        issues.add(path, f"{where}: image_id {ann.get('image_id')!r} is not among the images")
        return
    label = label_of.get(ann.get("category_id"))  # type: ignore[arg-type]
    if label is None:
        issues.add(path, f"{where}: category_id {ann.get('category_id')!r} is not among the categories")
        return
    bbox = ann.get("bbox")
    try:
        x, y, w, h = map(float, bbox)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        issues.add(path, f"{where}: bbox {bbox!r} is not [x, y, width, height]")
        return
    if record.size == (0, 0):  # sized later from the file; checked then
        record.add((x, y, x + w, y + h), label, bool(ann.get("iscrowd", 0)))
        return
    box = checked_box((x, y, x + w, y + h), record.size, lambda: f"{where} (image {record.image.name})", path,
                      issues)
    if box is not None:
        record.add(box, label, bool(ann.get("iscrowd", 0)))


class _Name:
    """An annotation's name in messages, made only when one is written."""

    def __init__(self, ann: dict[str, Any], k: int):
        self.ann, self.k = ann, k

    def __str__(self) -> str:
        return f"annotation {self.ann['id']}" if "id" in self.ann else f"annotations[{self.k}]"

    __format__ = lambda self, spec: str(self)  # noqa: E731 - f-strings ask for __format__


def with_files(records: list[Record], path: Path, issues: Issues, skip: bool) -> tuple[list[Record], int]:
    """Records whose image exists (and, with ``skip``, decodes); images without a size get it from their header."""
    kept, skipped = [], 0
    for record in records:
        if not record.image.is_file():
            issues.add(path, f"{record.where.removeprefix(f'{path} ')}: image {record.image} does not exist")
            continue
        if record.size == (0, 0) or skip:
            size = image_size(record.image, skip, record.where)
            if size is None:
                skipped += 1
                continue
            if record.size == (0, 0):
                record = _sized(record, size, path, issues)
        kept.append(record)
    return kept, skipped


def _sized(record: Record, size: tuple[int, int], path: Path, issues: Issues) -> Record:
    out = Record(record.image, size, where=record.where)
    for box, label, crowd in zip(record.boxes, record.labels, record.crowd):
        checked = checked_box(box, size, f"{record.where.removeprefix(f'{path} ')}", path, issues)
        if checked is not None:
            out.add(checked, label, crowd)
    return out


def read(root: Path, given: dict[str, tuple[str, str]], issues: Issues,
         skip: bool = False) -> tuple[list[str], dict[str, list[Record]], int, list[str]]:
    """(class names, split -> records, images skipped, notes) for the splits in ``given``."""
    names: list[tuple[int, str]] | None = None
    first: Path | None = None
    splits: dict[str, list[Record]] = {}
    skipped = 0
    notes = []
    for split, (path, folder) in split_paths(root, given).items():
        issues.split = split
        cats, records = parse(load_json(path), path, folder, issues)
        if names is None:
            names, first = cats, path
        elif cats != names:
            raise InputError(f"{path}: its categories differ from {first}'s; both splits need the same list")
        splits[split], lost = with_files(records, path, issues, skip)
        skipped += lost
        notes.append(f"{split}: {_short(path, root)}")
    return [name for _, name in names or []], splits, skipped, notes


def _short(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
