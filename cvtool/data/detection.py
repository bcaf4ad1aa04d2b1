"""Which detection layout a data folder holds (data.format: auto | bananas | voc).

Both detectors read either layout, so the folder, not the command, decides; a folder that
holds neither is named with both layouts, so the fix is plain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cvtool.data import bananas, voc_detection
from cvtool.errors import InputError, MissingResource

Format = Literal["bananas", "voc"]
FORMATS: tuple[str, ...] = ("auto", "bananas", "voc")


def detect_format(root: str | Path) -> Format:
    """"bananas" for bananas_train/label.csv, "voc" for a VOC2012 (or VOCdevkit) folder with ImageSets/Main.

    A missing folder is MissingResource (exit 3); a folder with neither or both layouts is InputError (exit 2).
    """
    root = Path(root)
    layouts = f"either {bananas.LAYOUT}, or {voc_detection.LAYOUT}"
    if not root.is_dir():
        raise MissingResource(f"detection data folder {root} does not exist; expected {layouts}")
    found = [name for name, present in (("bananas", (root / "bananas_train" / "label.csv").is_file()),
                                        ("voc", voc_detection.find_root(root) is not None)) if present]
    if not found:
        raise InputError(f"{root} holds no detection data set: expected {layouts}")
    if len(found) > 1:
        raise InputError(f"{root} holds both a bananas and a VOC layout; set data.format to bananas or voc")
    return found[0]  # type: ignore[return-value]


def resolve_format(root: str | Path, fmt: str) -> Format:
    """``fmt`` as given, or the detected layout for auto."""
    if fmt == "auto":
        return detect_format(root)
    if fmt not in FORMATS:
        raise InputError(f"data.format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt  # type: ignore[return-value]
