"""Output files for ``predict`` and ``finish``: one naming rule for every task, whole PNGs,
small images enlarged so that what is drawn on them stays readable.

Every file ``predict`` writes for an input is ``<stem>_<what>.png`` in ``--out`` (SSD:
``photo_boxes.png``; FCN: ``photo_mask.png`` and ``photo_overlay.png``). Inputs from
different folders can share a stem (``a/coffee.jpg``, ``b/coffee.png``); each gets its own:
``coffee``, then ``coffee_1``, ``coffee_2``, ..., skipping any name an earlier input already
took (an input really named ``coffee_1``). A file already in ``--out`` is never replaced
silently: the call stops (exit 2) naming it before anything is written, unless
``--overwrite`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cvtool.errors import InputError
from cvtool.files import atomic_write


class UniqueStems:
    """Hands out stems not handed out before in this ``predict`` call."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, path: str | Path) -> str:
        stem = Path(path).stem
        name, k = stem, 1
        while name in self.used:
            name, k = f"{stem}_{k}", k + 1
        self.used.add(name)
        return name


def plan(out: Path, paths: list[Path], kinds: tuple[str, ...], overwrite: bool = False) -> list[dict[str, Path]]:
    """Per input, ``{kind: out/<stem>_<kind>.png}``; refused up front if one exists (unless ``overwrite``)."""
    stems = UniqueStems()
    planned = [{kind: out / f"{stem}_{kind}.png" for kind in kinds} for stem in map(stems, paths)]
    refuse_existing([file for files in planned for file in files.values()], overwrite)
    return planned


def refuse_existing(files: list[Path], overwrite: bool) -> None:
    """Stop before writing anything if a file to be written is already there."""
    there = [file for file in files if file.exists()]
    if there and not overwrite:
        more = f" (and {len(there) - 1} more)" if len(there) > 1 else ""
        raise InputError(f"{there[0]} already exists{more}; pass --overwrite to replace, or choose another --out DIR")


def class_name(classes: Sequence[str], index: int) -> str:
    """A predicted index's class name; one outside the list (a model trained on more) by number."""
    return classes[index] if 0 <= index < len(classes) else f"class{index}"


def upscale(image: torch.Tensor, min_side: int) -> torch.Tensor:
    """uint8 (3, H, W) enlarged so its short side is at least ``min_side`` (never shrunk)."""
    height, width = image.shape[-2:]
    scale = max(1.0, min_side / min(height, width))
    if scale == 1:
        return image
    size = (round(height * scale), round(width * scale))
    return F.interpolate(image[None].float(), size=size, mode="bilinear",
                         align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)


def save_png(path: Path, picture: torch.Tensor | np.ndarray | Image.Image) -> Path:
    """A uint8 (3, H, W) tensor, (H, W[, 3]) array or PIL image as a PNG that appears whole."""
    if isinstance(picture, torch.Tensor):
        picture = picture.permute(1, 2, 0).contiguous().numpy()
    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture)
    return atomic_write(path, lambda fh: picture.save(fh, format="PNG"))
