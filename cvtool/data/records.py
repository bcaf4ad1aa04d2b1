"""What every detection reader returns: one record per image, boxes in its pixels.

Readers (bananas, voc_detection, coco, yolo) differ only in how they parse; training,
``data check`` and ``data convert`` all work on these records, so what one accepts the
others read the same way. Boxes are continuous corners (x1, y1, x2, y2) in the pixels of
the image as displayed (EXIF rotation applied), 0 at the image's left/top edge.

A reader reports each problem through an ``Issues``: training's raises the first as an
InputError (exit 2, naming the file and the object or line); ``data check``'s collects them
all and the reader leaves the culprit out and goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from cvtool.data.images import header_size, load_rgb, read_or_skip
from cvtool.errors import InputError

Box = tuple[float, float, float, float]
EDGE_SLACK = 1.0  # pixels a box may overhang its image (float rounding in exports); it is clipped


@dataclass
class Record:
    """One image: its file, (width, height) as displayed, and its objects.

    ``crowd`` marks objects that are neither hits nor misses in mAP (COCO's iscrowd, VOC's
    difficult); ``where`` names each object for messages (a file and line, an annotation id).
    """

    image: Path
    size: tuple[int, int]
    boxes: list[Box] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    crowd: list[bool] = field(default_factory=list)
    where: str = ""

    def add(self, box: Box, label: int, crowd: bool = False) -> None:
        self.boxes.append(box)
        self.labels.append(label)
        self.crowd.append(crowd)


@dataclass
class Source:
    """A whole data set as read: its layout, class names and each split's records.

    ``notes`` are what the run header says about choices made (the layout found, the split
    lists used); ``extra`` holds per split what a reader saw beyond the records (label files
    without images), for ``data check``.
    """

    format: str
    root: Path
    classes: list[str]
    splits: dict[str, list[Record]]
    notes: list[str] = field(default_factory=list)
    skipped: int = 0


@dataclass
class Problem:
    split: str
    file: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"split": self.split, "file": self.file, "message": self.message}


class Issues:
    """Where readers send problems: raised at once (training) or collected (``data check``)."""

    def __init__(self, collect: bool = False):
        self.collect = collect
        self.found: list[Problem] = []
        self.split = ""

    def add(self, file: str | Path, message: str) -> None:
        if not self.collect:
            raise InputError(f"{file}: {message}")
        self.found.append(Problem(self.split, str(file), message))


def checked_box(box: Sequence[float], size: tuple[int, int], where: str | Callable[[], str], file: str | Path,
                issues: Issues) -> Box | None:
    """``box`` (x1, y1, x2, y2) if it is a real box inside its image (slack clipped), else reported and None.

    ``where`` may be a function, so that the words are only made for a problem: a COCO-sized
    file has a million boxes.
    """
    width, height = size
    try:
        x1, y1, x2, y2 = map(float, box)
    except (TypeError, ValueError):
        x1 = y1 = x2 = y2 = math.nan
    if x1 < x2 and y1 < y2 and x1 >= -EDGE_SLACK and y1 >= -EDGE_SLACK and x2 <= width + EDGE_SLACK \
            and y2 <= height + EDGE_SLACK and x1 < width and y1 < height and x2 > 0 and y2 > 0:
        return max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    issues.add(file, f"{where() if callable(where) else where}: {box_problem(box, (x1, y1, x2, y2), size)}")
    return None


def box_problem(given: Sequence[float], box: Box, size: tuple[int, int]) -> str:
    """What is wrong with a box ``checked_box`` refused."""
    if not all(math.isfinite(v) for v in box):
        return f"box {list(given)} is not four finite numbers"
    x1, y1, x2, y2 = box
    text = f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g})"
    if x2 < x1 or y2 < y1:
        return f"{text} has a negative width or height"
    if x2 == x1 or y2 == y1:
        return f"{text} has zero size"
    return f"{text} lies outside the {size[0]}x{size[1]} image"


def image_size(path: Path, skip: bool, where: str) -> tuple[int, int] | None:
    """The displayed size from the header; with ``skip`` the image is decoded so a bad one is left out (None)."""
    if skip:
        loaded = read_or_skip(path, load_rgb, True)
        return None if loaded is None else loaded.size
    return header_size(path, lambda exc: f"{where}: {path} is not a readable image ({exc})")


def first_difference(given: Sequence[str], found: Sequence[str]) -> str:
    """Where two class lists part, in words."""
    for k, (a, b) in enumerate(zip(given, found)):
        if a != b:
            return f"class {k} is {a!r} in data.classes but {b!r} in the data"
    if len(given) > len(found):
        return f"data.classes names {len(given)} classes, the data only {len(found)} (extra: {given[len(found)]!r})"
    return f"the data has {len(found)} classes, data.classes only {len(given)} (missing: {found[len(given)]!r})"
