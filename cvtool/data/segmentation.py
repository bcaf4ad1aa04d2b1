"""Segmentation layouts on disk: VOC (any year) and an images/ + masks/ folder pair.

Both give, per split, (id, image, mask) pairs plus what is wrong with the listing (an
image without a mask, a mask without an image), so training can refuse the first problem
and ``data check`` can report them all. The folders where a classes.txt or labelmap.txt
may sit travel with the layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cvtool.data.images import IMAGE_SUFFIXES
from cvtool.errors import InputError

Format = Literal["auto", "voc", "folders"]
VOC_LAYOUT = ("VOCdevkit/VOC<year>/ImageSets/Segmentation/{train,val}.txt (one id a line), "
              "JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNG, 255 = void)")
FOLDERS_LAYOUT = "images/{train,val}/<stem>.<jpg|png|...> and masks/{train,val}/<stem>.png, matched by stem"
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")
DEFAULT_SPLITS = ("train", "val")
FALLBACK_SPLITS = ("trainval", "test")


@dataclass
class Split:
    """One split's pairs and the problems of its listing, each (file, message)."""

    name: str
    source: Path  # the list file or the images folder
    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)

    def require_clean(self) -> None:
        if self.problems:
            raise InputError(self.problems[0][1])


@dataclass
class Layout:
    format: str
    root: Path  # the VOC year folder, or the folder holding images/ and masks/
    splits: dict[str, Split]  # keyed by role: "train", "val"
    name_folders: list[Path]  # where classes.txt / labelmap.txt may be
    note: str = ""  # said once when training starts (e.g. which split lists stood in)


# --------------------------------------------------------------------------- VOC


def voc_years(root: Path) -> list[Path]:
    """VOC year folders at ``root``: the folder itself, its VOC* children, or VOCdevkit/VOC*."""
    if (root / "ImageSets" / "Segmentation").is_dir():
        return [root]
    for base in (root, root / "VOCdevkit"):
        years = sorted(p for p in base.glob("VOC*") if (p / "ImageSets" / "Segmentation").is_dir())
        if years:
            return years
    return []


def voc_root(root: Path) -> Path:
    """The one VOC year folder ``root`` names or holds."""
    years = voc_years(root)
    if not years:
        raise InputError(f"{root} is not a VOC2012 folder (nor another year's): expected {VOC_LAYOUT}")
    if len(years) > 1:
        raise InputError(f"{root} holds {', '.join(p.name for p in years)}: set data.root to the year to use, "
                         f"e.g. {years[-1]}")
    return years[0]


def read_ids(list_file: Path, layout: str = VOC_LAYOUT) -> list[tuple[int, str]]:
    """(line number, id) for each non-empty line of a VOC ImageSets list (detection's too)."""
    if not list_file.is_file():
        raise InputError(f"{list_file} is missing: expected {layout}")
    lines = list_file.read_text(encoding="utf-8", errors="replace").splitlines()
    ids = [(n, line.split()[0]) for n, line in enumerate(lines, 1) if line.strip()]
    if not ids:
        raise InputError(f"{list_file} lists no image ids")
    return ids


def voc_split_names(lists: Path, names: tuple[str, str]) -> tuple[tuple[str, str], str]:
    """The split lists to read; VOC2007-style trainval/test stand in for a missing train/val."""
    if names == DEFAULT_SPLITS and not any((lists / f"{n}.txt").is_file() for n in names) \
            and all((lists / f"{n}.txt").is_file() for n in FALLBACK_SPLITS):
        return FALLBACK_SPLITS, (f"{lists} has no train.txt/val.txt: training on trainval.txt, "
                                 f"validating on test.txt")
    return names, ""


def voc_split(year: Path, list_name: str) -> Split:
    list_file = year / "ImageSets" / "Segmentation" / f"{list_name}.txt"
    split = Split(list_name, list_file)
    for line, name in read_ids(list_file):
        image, mask = year / "JPEGImages" / f"{name}.jpg", year / "SegmentationClass" / f"{name}.png"
        missing = [(kind, path) for kind, path in (("image", image), ("label", mask)) if not path.is_file()]
        present = [path for path in (image, mask) if path.is_file()]
        for kind, path in missing:  # the culprit: the file left without its partner, else the list
            culprit = present[0] if present else list_file
            split.problems.append((culprit, f"{list_file} line {line}: id {name} has no {kind} {path}"))
        if not missing:
            split.pairs.append((name, image, mask))
    return split


def open_voc(root: Path, names: tuple[str, str]) -> Layout:
    year = voc_root(root)
    names, note = voc_split_names(year / "ImageSets" / "Segmentation", names)
    splits = {role: voc_split(year, name) for role, name in zip(DEFAULT_SPLITS, names)}
    folders = [year / "SegmentationClass", year, *([root] if root != year else [])]
    return Layout("voc", year, splits, folders, note)


# --------------------------------------------------------------------------- folder pair


def by_stem(folder: Path, suffixes: tuple[str, ...], problems: list[tuple[Path, str]]) -> dict[str, Path]:
    """Files of ``folder`` keyed by stem; two files sharing a stem are a problem (which is meant?)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        if path.stem in found:
            problems.append((path, f"{path} and {found[path.stem].name} share the stem {path.stem!r}; keep one"))
            continue
        found[path.stem] = path
    return found


def folder_split(root: Path, name: str) -> Split:
    images, masks = root / "images" / name, root / "masks" / name
    split = Split(name, images)
    for folder in (images, masks):
        if not folder.is_dir():
            raise InputError(f"{folder} is missing: expected {FOLDERS_LAYOUT}")
    pictures = by_stem(images, IMAGE_SUFFIXES, split.problems)
    labels = by_stem(masks, MASK_SUFFIXES, split.problems)
    for stem, image in pictures.items():
        if stem in labels:
            split.pairs.append((stem, image, labels[stem]))
        else:
            split.problems.append((image, f"{image} has no mask in {masks} (a file named {stem}.png)"))
    for stem in sorted(labels.keys() - pictures.keys()):
        split.problems.append((labels[stem], f"{labels[stem]} has no image in {images} (a file named {stem}.*)"))
    if not pictures and not labels:
        raise InputError(f"{images} holds no images: expected {FOLDERS_LAYOUT}")
    return split


def open_folders(root: Path, names: tuple[str, str]) -> Layout:
    splits = {role: folder_split(root, name) for role, name in zip(DEFAULT_SPLITS, names)}
    return Layout("folders", root, splits, [root / "masks", root])


# --------------------------------------------------------------------------- either


def detect_format(root: Path) -> str | None:
    """``voc`` or ``folders`` when ``root`` looks like one, else None."""
    if voc_years(root):
        return "voc"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folders"
    return None


def open_layout(root: Path, fmt: Format = "auto", splits: tuple[str, str] = DEFAULT_SPLITS) -> Layout:
    """The layout at ``root`` (``fmt`` auto: found from the folders) with its train and val splits."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data.root {root} is not a folder")
    found = detect_format(root) if fmt == "auto" else fmt
    if found is None:
        raise InputError(f"{root} is neither a VOC folder ({VOC_LAYOUT}) nor a folder pair ({FOLDERS_LAYOUT})")
    return open_voc(root, splits) if found == "voc" else open_folders(root, splits)
