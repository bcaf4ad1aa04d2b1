"""YOLO txt labels as ultralytics writes them, found through its ``data.yaml``.

``data.yaml`` holds ``path`` (the data set's folder; relative to the YAML's folder),
``train`` and ``val`` (image folders or .txt lists of images, relative to ``path``) and
``names`` (a list, or an id-to-name map). Each image's labels sit at the same place under
``labels/`` as the image under ``images/``, with a .txt suffix: one ``class cx cy w h``
line per object, the box centre and size divided by the image's width and height. A
missing or empty label file is an image without objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cvtool.data.images import IMAGE_SUFFIXES
from cvtool.data.records import Issues, Record, checked_box, image_size
from cvtool.errors import InputError

LAYOUT = ("data.yaml (path, train, val, names) beside images/<split>/ and labels/<split>/<image stem>.txt "
          "(one 'class cx cy w h' line per object, in [0, 1])")
YAML_NAMES = ("data.yaml", "dataset.yaml")


def find(root: Path) -> Path | None:
    """The data set's YAML: ``root`` itself, root/data.yaml, or the one YAML in root naming train and names."""
    if root.is_file() and root.suffix in (".yaml", ".yml"):
        return root
    for name in YAML_NAMES:
        if (root / name).is_file():
            return root / name
    candidates = [p for p in sorted(root.glob("*.y*ml")) if _is_dataset_yaml(p)] if root.is_dir() else []
    return candidates[0] if len(candidates) == 1 else None


def _is_dataset_yaml(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "names" in data and "train" in data


def looks_like(root: Path) -> str | None:
    found = find(root)
    return None if found is None else found.name


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not a readable YAML file ({exc})") from None
    if not isinstance(data, dict) or "names" not in data or "train" not in data:
        raise InputError(f"{path}: a YOLO data.yaml needs train, val and names")
    return data


def names_of(data: dict[str, Any], path: Path) -> list[str]:
    """``names`` as a list, whether given as one or as an id-to-name map with ids 0..n-1."""
    names = data["names"]
    if isinstance(names, dict):
        ids = sorted(names)
        if ids != list(range(len(ids))):
            raise InputError(f"{path}: names ids must be 0..{len(ids) - 1}, got {ids[:6]}")
        names = [names[k] for k in ids]
    if not isinstance(names, list) or not names:
        raise InputError(f"{path}: names must be a non-empty list or an id-to-name map")
    return [str(n) for n in names]


def base_of(data: dict[str, Any], path: Path) -> Path:
    given = Path(str(data.get("path") or "."))
    return given if given.is_absolute() else path.parent / given


def resolve(base: Path, entry: str) -> Path:
    """An entry under ``base``; Roboflow's ``../train/images`` means base/train/images, as ultralytics reads it."""
    candidate = base / entry
    if not candidate.exists() and entry.startswith("../"):
        candidate = base / entry[3:]
    return candidate


def image_files(base: Path, entries: Any, path: Path, key: str) -> list[Path]:
    """The images of a split: each entry a folder (searched recursively) or a .txt list of images."""
    files: list[Path] = []
    for entry in entries if isinstance(entries, list) else [entries]:
        where = resolve(base, str(entry))
        if where.is_dir():
            files += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif where.is_file() and where.suffix == ".txt":
            lines = where.read_text(encoding="utf-8").splitlines()
            files += [resolve(base, line.strip().removeprefix("./")) for line in lines if line.strip()]
        else:
            raise InputError(f"{path}: {key} {entry!r} ({where}) is neither an image folder nor a .txt list")
    return files


def label_file(image: Path) -> Path:
    """images/.../x.jpg -> labels/.../x.txt (the last ``images`` folder on the path)."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_labels(record: Record, count: int, issues: Issues) -> None:
    """Add each line of the image's label file to ``record``."""
    path = label_file(record.image)
    if not path.is_file():
        return
    width, height = record.size
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {line_no}"
        if len(fields) != 5:
            issues.add(path, f"{where}: expected 5 fields (class cx cy w h), got {len(fields)}")
            continue
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            issues.add(path, f"{where}: {line.strip()!r} is not an integer class and four numbers")
            continue
        if not 0 <= cls < count:
            issues.add(path, f"{where}: class {cls} is beyond names (0..{count - 1})")
            continue
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        checked = checked_box(box, record.size, where, path, issues)
        if checked is not None:
            record.add(checked, cls)


def read(root: Path, issues: Issues, skip: bool = False) -> tuple[list[str], dict[str, list[Record]], int, list[str]]:
    """(class names, split -> records, images skipped, notes)."""
    path = find(root)
    if path is None:
        raise InputError(f"{root} holds no YOLO data set: expected {LAYOUT}")
    data = read_yaml(path)
    names = names_of(data, path)
    base = base_of(data, path)
    splits: dict[str, list[Record]] = {}
    skipped = 0
    for split in ("train", "val"):
        issues.split = split
        if split not in data:
            raise InputError(f"{path}: no {split} entry")
        records = []
        for image in image_files(base, data[split], path, split):
            size = image_size(image, skip, f"{path} {split}") if image.is_file() else None
            if size is None:
                if not image.is_file():
                    issues.add(path, f"{split} lists image {image}, which does not exist")
                skipped += image.is_file()
                continue
            record = Record(image, size, where=str(image))
            read_labels(record, len(names), issues)
            records.append(record)
        if not records:
            raise InputError(f"{path}: {split} holds no image")
        splits[split] = records
    return names, splits, skipped, [f"{path.name}"]
