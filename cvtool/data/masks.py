"""Segmentation masks as class indices, whatever their PNG mode, and where class names come from.

A palette PNG is read by its palette *index* (VOC's own files are such), a single-channel
mask by its value, an RGB mask through a colour table (the data's labelmap.txt, the
config's ``data.palette`` or VOC's colours). Void (255 unless ``data.void`` says otherwise)
is never a class; any other value outside the classes is an error naming the file and the
value: never a silent relabel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from cvtool.data.images import UNREADABLE
from cvtool.errors import InputError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
VOID = 255
NAME_FILES = ("labelmap.txt", "classes.txt")
SINGLE_CHANNEL = ("P", "L", "1", "I;16", "I;16B", "I;16L", "I")


def colormap(n: int = 256) -> np.ndarray:
    """The VOC palette (n, 3) uint8: bit k of the index sets bit 7 - k // 3 of channel k % 3."""
    index = np.arange(n)
    cmap = np.zeros((n, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            cmap[:, channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return cmap.astype(np.uint8)


PALETTE = colormap()


@dataclass(frozen=True)
class MaskFormat:
    """How to read one dataset's masks: ``count`` classes (0..count-1), the void value and,
    for RGB masks, the colour of each class (None: VOC's colours, VOC's void colour = void)."""

    count: int
    void: int = VOID
    colours: np.ndarray | None = None
    names_from: str = ""
    colours_from: str = ""

    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted colour codes (r << 16 | g << 8 | b) and the label value of each."""
        if self.colours is None:
            values = np.r_[np.arange(min(self.count, len(VOC_CLASSES))), VOID]
            colours = PALETTE[values]
            values = np.where(values == VOID, self.void, values)
        else:
            values, colours = np.arange(len(self.colours)), self.colours
        codes = (np.asarray(colours, dtype=np.int64) << [16, 8, 0]).sum(1)
        order = np.argsort(codes)
        return codes[order], values[order]


def rgb_to_index(rgb: np.ndarray, fmt: MaskFormat, path: Path) -> np.ndarray:
    """Map colours (H, W, 3) to label values through a sorted lookup of colour codes."""
    codes, values = fmt.codes()
    pixels = (rgb.astype(np.int64) << [16, 8, 0]).sum(-1)
    pos = np.searchsorted(codes, pixels).clip(max=len(codes) - 1)
    unknown = codes[pos] != pixels
    if unknown.any():
        y, x = np.argwhere(unknown)[0]
        table = f"a class colour of {fmt.colours_from or 'the given palette'}" if fmt.colours is not None \
            else "a VOC class colour (give data.palette for other colours)"
        raise InputError(f"{path}: colour {tuple(int(c) for c in rgb[y, x])} at x={x}, y={y} is not {table}")
    return values[pos].astype(np.uint8)


def raw_values(img: Image.Image, path: Path) -> np.ndarray:
    """A single-channel mask's values as stored: palette indices (never their colours), grey levels."""
    if img.mode in ("LA", "PA"):
        img = img.getchannel(0)
    if img.mode not in SINGLE_CHANNEL:
        raise InputError(f"{path}: label mode {img.mode} is neither palette, grayscale nor RGB")
    return np.asarray(img).astype(np.int64 if img.mode.startswith("I") else np.uint8)


def open_mask(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise InputError(f"label {path} does not exist") from None
    except UNREADABLE as exc:
        raise InputError(f"{path}: not a readable label image ({exc.__class__.__name__})") from None


def decode(path: Path, fmt: MaskFormat | None = None) -> np.ndarray:
    """Label values (H, W) of any mask file, unchecked (int64 for 16-bit masks)."""
    with open_mask(path) as img:
        if img.mode in ("RGB", "RGBA"):
            return rgb_to_index(np.asarray(img.convert("RGB")), fmt or MaskFormat(len(VOC_CLASSES)), path)
        return raw_values(img, path)


def outside(mask: np.ndarray, fmt: MaskFormat) -> list[int]:
    """The values that are neither a class nor void, smallest first."""
    bad = (mask >= fmt.count) & (mask != fmt.void)
    return np.unique(mask[bad]).tolist() if bad.any() else []


def read_mask(path: Path, fmt: MaskFormat) -> np.ndarray:
    """Class indices (H, W) uint8; a value neither a class nor void is an InputError naming it."""
    mask = decode(path, fmt)
    values = outside(mask, fmt)
    if values:
        where = f"; classes from {fmt.names_from}" if fmt.names_from else ""
        raise InputError(f"{path}: label values {values[:5]} outside 0..{fmt.count - 1} and {fmt.void} (void)"
                         f"{where}")
    return mask.astype(np.uint8)


# --------------------------------------------------------------------------- names


@dataclass(frozen=True)
class NameFile:
    """Class names read from a classes.txt or labelmap.txt (line order = class index)."""

    path: Path
    names: list[str]
    colours: np.ndarray | None  # (K, 3) uint8 from a labelmap, None from classes.txt
    lines: list[int]  # the file line of each name


def read_name_file(path: Path) -> NameFile:
    """classes.txt: one name a line. labelmap.txt (CVAT, VOC export): ``name:r,g,b:parts:actions``
    lines after ``#`` comments; a labelmap's colours are the colour of each class in RGB masks."""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    labelmap = path.name == "labelmap.txt"
    names, colours, lines = [], [], []
    for number, line in enumerate(text, 1):
        if not line.strip() or (labelmap and line.lstrip().startswith("#")):
            continue
        if not labelmap:
            names.append(line.strip())
            lines.append(number)
            continue
        name, _, rest = line.partition(":")
        colour = rest.partition(":")[0].strip()
        try:
            rgb = [int(v) for v in colour.split(",")] if colour else None
        except ValueError:
            rgb = None
        if rgb is not None and (len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb)) or (colour and rgb is None):
            raise InputError(f"{path} line {number}: colour {colour!r} is not r,g,b in 0..255")
        names.append(name.strip())
        colours.append(rgb)
        lines.append(number)
    if not names:
        raise InputError(f"{path} names no classes")
    empty = [lines[k] for k, name in enumerate(names) if not name]
    if empty:
        raise InputError(f"{path} line {empty[0]}: empty class name")
    table = np.array(colours, dtype=np.uint8) if colours and all(c is not None for c in colours) else None
    return NameFile(path, names, table, lines)


def find_name_file(folders: list[Path]) -> NameFile | None:
    """The first labelmap.txt or classes.txt in ``folders``; two that disagree are an error."""
    found = [read_name_file(folder / name) for folder in folders for name in NAME_FILES
             if (folder / name).is_file()]
    for other in found[1:]:
        if other.names != found[0].names:
            raise InputError(f"{found[0].path} and {other.path} name different classes "
                             f"({first_difference(found[0].names, other.names)}); keep one")
    return found[0] if found else None


def first_difference(a: list[str], b: list[str]) -> str:
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"class {k}: {x!r} against {y!r}"
    return f"{len(a)} classes against {len(b)}"


def is_voc_coloured(path: Path) -> bool:
    """Whether a mask's colours are VOC's for the values present: a palette PNG whose palette
    entries for its indices are VOC's colormap, or an RGB mask in VOC's class colours."""
    with open_mask(path) as img:
        if img.mode == "P":
            values = np.unique(np.asarray(img))
            palette = np.array(img.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
            return len(palette) > values.max() and bool((palette[values] == PALETTE[values]).all())
        if img.mode in ("RGB", "RGBA"):
            colours = np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)
            known = PALETTE[[*range(len(VOC_CLASSES)), VOID]]
            return bool((colours[:, None] == known[None]).all(-1).any(1).all())
    return False


@dataclass(frozen=True)
class Names:
    """A dataset's class names, their colours when the data gives them, and where they came from."""

    names: list[str]
    colours: np.ndarray | None
    source: str


def resolve_names(given: list[str] | str, count: int | str, name_file: NameFile | None, voc_coloured: bool,
                  values_found: Callable[[], str], where: Path) -> Names:
    """``choose_names``, refusing a class name given twice (its metrics and legend would merge)."""
    names = choose_names(given, count, name_file, voc_coloured, values_found, where)
    twice = next((name for k, name in enumerate(names.names) if name in names.names[:k]), None)
    if twice is not None or "" in names.names:
        what = f"{twice!r} twice" if twice is not None else "an empty name"
        raise InputError(f"{names.source} names {what}; give each class its own name")
    return names


def choose_names(given: list[str] | str, count: int | str, name_file: NameFile | None, voc_coloured: bool,
                 values_found: Callable[[], str], where: Path) -> Names:
    """``data.classes`` against the data: a names file is the data's word (a list by hand must
    match it); else a list by hand; else VOC's names for VOC-coloured masks (``model.num_classes``
    N keeps VOC's first N); else an error naming the values found and asking for data.classes."""
    if name_file is not None:
        if given != "auto" and list(given) != name_file.names:
            k = next((i for i, (a, b) in enumerate(zip(given, name_file.names)) if a != b), None)
            detail = (f"data.classes[{k}] is {given[k]!r} but {name_file.path} line {name_file.lines[k]} names "
                      f"{name_file.names[k]!r}" if k is not None else
                      f"data.classes names {len(given)} classes but {name_file.path} names {len(name_file.names)}")
            raise InputError(f"{detail}; use data.classes: auto or fix one of them")
        return Names(name_file.names, name_file.colours, str(name_file.path))
    if given != "auto":
        return Names(list(given), None, "data.classes")
    if voc_coloured:
        n = len(VOC_CLASSES) if count == "auto" else int(count)
        if n > len(VOC_CLASSES):
            raise InputError(f"model.num_classes is {n} but {where}'s masks are in VOC's colours, which name "
                             f"{len(VOC_CLASSES)} classes; give data.classes for more")
        return Names(list(VOC_CLASSES[:n]), None, "VOC's palette" + ("" if count == "auto" else
                                                                      f" (its first {n} classes: model.num_classes)"))
    raise InputError(f"{where}: the masks hold class indices {values_found()} but no class names (no "
                     f"{' or '.join(NAME_FILES)} beside them, and their colours are not VOC's); "
                     f"give data.classes: [name of 0, name of 1, ...], one name per class index")
