"""Every detection layout behind one call: which one a folder holds, and its records.

data.format: auto | bananas | voc | coco | yolo. The folder, not the command, decides: both
detectors (and ``data check`` / ``data convert``) read through ``read``, so a layout that
one accepts every other reads the same way. ``auto`` looks for each layout's mark (see
MARKS) and says which it found; a folder with none or several is an error listing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

from cvtool.data import bananas, coco, voc_detection, yolo
from cvtool.data.records import Issues, Source, first_difference
from cvtool.errors import InputError, MissingResource

Format = Literal["bananas", "voc", "coco", "yolo"]
FORMATS: tuple[str, ...] = ("auto", "bananas", "voc", "coco", "yolo")
LAYOUTS = {"bananas": bananas.LAYOUT, "voc": voc_detection.LAYOUT, "coco": coco.LAYOUT, "yolo": yolo.LAYOUT}


def _bananas_mark(root: Path) -> str | None:
    return "bananas_train/label.csv" if (root / "bananas_train" / "label.csv").is_file() else None


def _voc_mark(root: Path) -> str | None:
    found = voc_detection.candidates(root)
    return ", ".join(f"{p.name}/ImageSets/Main" for p in found) or None


# What ``auto`` looks for: a function naming the mark it found in a folder, or None.
MARKS: dict[str, Callable[[Path], str | None]] = {
    "bananas": _bananas_mark, "voc": _voc_mark, "coco": coco.looks_like, "yolo": yolo.looks_like}


@dataclass
class Splits:
    """Where each split is, beyond what the layout says (``auto``: as the layout says).

    VOC: an ImageSets/Main list name; COCO: an annotation JSON (relative to the root) and
    its image folder. YOLO's data.yaml and the bananas layout name their own.
    """

    train: str = "auto"
    val: str = "auto"
    train_images: str = "auto"
    val_images: str = "auto"


def detect(root: str | Path) -> tuple[Format, str]:
    """The layout in ``root`` and the mark that shows it.

    A missing folder is MissingResource (exit 3); a folder with none or several layouts is InputError (exit 2).
    """
    root = Path(root)
    looked = "; ".join(f"{name}: {layout}" for name, layout in LAYOUTS.items())
    if not root.exists():
        raise MissingResource(f"detection data folder {root} does not exist; expected one of: {looked}")
    found = {name: mark for name, test in MARKS.items() if (mark := test(root)) is not None}
    if not found:
        raise InputError(f"{root} holds no detection data set: looked for {looked}")
    if len(found) > 1:
        raise InputError(f"{root} holds several layouts ({', '.join(f'{n}: {m}' for n, m in found.items())}); "
                         f"set data.format to one of {', '.join(found)}")
    name, mark = next(iter(found.items()))
    return name, mark  # type: ignore[return-value]


def detect_format(root: str | Path) -> Format:
    return detect(root)[0]


def resolve_format(root: str | Path, fmt: str) -> Format:
    """``fmt`` as given, or the detected layout for auto."""
    if fmt == "auto":
        return detect_format(root)
    if fmt not in FORMATS:
        raise InputError(f"data.format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt  # type: ignore[return-value]


def read(root: str | Path, fmt: str = "auto", *, splits: Splits | None = None,
         classes: Sequence[str] | str = "auto", skip: bool = False, issues: Issues | None = None) -> Source:
    """The data set in ``root`` as records of its train and val splits, classes resolved.

    ``classes`` "auto" takes the data's names; a list given must agree with them (for VOC:
    name every class the XML uses, in the label order wanted; for bananas, whose CSV has
    no names: one per label). ``issues`` collects problems instead of raising (data check).
    Each split's records are sorted by file name, so the same images in two layouts come in
    the same order (mAP breaks ties between equal scores by order, as COCOeval does).
    """
    root = Path(root)
    splits = splits or Splits()
    issues = issues or Issues()
    notes = []
    if fmt == "auto":
        fmt, mark = detect(root)
        notes.append(f"data.format auto: {fmt} (found {mark})")
    else:
        resolve_format(root, fmt)
        if not root.exists():
            raise MissingResource(f"detection data folder {root} does not exist; expected {LAYOUTS[fmt]}")
    reader = {"bananas": _bananas, "voc": _voc, "coco": _coco, "yolo": _yolo}[fmt]
    source = reader(root, splits, classes, skip, issues)
    source.notes[:0] = notes
    for records in source.splits.values():  # one order whatever the layout: equal scores rank alike in mAP
        records.sort(key=lambda r: r.image.name)
    return source


def resolve_classes(given: Sequence[str] | str, found: list[str], where: str) -> list[str]:
    """``found`` (the data's names) when ``given`` is auto; a list given must equal it."""
    if isinstance(given, str):
        if given != "auto":
            raise InputError(f"data.classes must be auto or a list of names, got {given!r}")
        return found
    if list(given) != found:
        raise InputError(f"data.classes disagrees with {where}: {first_difference(list(given), found)}")
    return list(given)


def _bananas(root: Path, splits: Splits, classes: Sequence[str] | str, skip: bool, issues: Issues) -> Source:
    given = None if isinstance(classes, str) else len(classes)
    records = {}
    skipped = 0
    for split in ("train", "val"):
        issues.split = split
        try:
            ann = bananas.read_labels(root / f"bananas_{split}", given, skip)
        except InputError as exc:
            if not issues.collect:
                raise
            issues.add(root / f"bananas_{split}" / "label.csv", str(exc))
            continue
        records[split], skipped = bananas.records(ann), skipped + ann.skipped
    if isinstance(classes, str):
        count = 1 + max((max(r.labels, default=0) for rs in records.values() for r in rs), default=0)
        classes = ["banana"] if count == 1 else [f"class{k}" for k in range(count)]
    return Source("bananas", root, list(classes), records, skipped=skipped)


def _voc(root: Path, splits: Splits, classes: Sequence[str] | str, skip: bool, issues: Issues) -> Source:
    base = voc_detection.voc_root(root)
    train, val, note = voc_detection.split_lists(base, splits.train, splits.val)
    read = {}
    for split, name in (("train", train), ("val", val)):
        issues.split = split
        try:
            read[split] = voc_detection.read_split(base, name, None, skip, issues)
        except InputError as exc:
            if not issues.collect:
                raise
            issues.add(base / "ImageSets" / "Main" / f"{name}.txt", str(exc))
    names = voc_detection.class_names(list(read.values()))
    if not isinstance(classes, str):
        missing = [n for n in names if n not in classes]
        if missing:
            raise InputError(f"data.classes disagrees with {base}: the XML names {missing[0]!r}, which it lacks")
        names = list(classes)
    notes = [f"VOC {base.name}: {train}.txt / {val}.txt" + (f" ({note})" if note else "")]
    return Source("voc", root, names, {s: voc_detection.records(r, names) for s, r in read.items()},
                  notes, sum(r.skipped for r in read.values()))


def _coco(root: Path, splits: Splits, classes: Sequence[str] | str, skip: bool, issues: Issues) -> Source:
    def key(value: str) -> str:
        return "" if value == "auto" else value

    given = {"train": (key(splits.train), key(splits.train_images)), "val": (key(splits.val), key(splits.val_images))}
    names, records, skipped, notes = coco.read(root, given, issues, skip)
    return Source("coco", root, resolve_classes(classes, names, f"the COCO categories of {root}"), records,
                  [f"COCO {', '.join(notes)}"], skipped)


def _yolo(root: Path, splits: Splits, classes: Sequence[str] | str, skip: bool, issues: Issues) -> Source:
    names, records, skipped, notes = yolo.read(root, issues, skip)
    return Source("yolo", root, resolve_classes(classes, names, f"the names of {notes[0]}"), records,
                  [f"YOLO {notes[0]}"], skipped)
