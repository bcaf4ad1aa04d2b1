"""Output files for ``predict`` and ``finish``: one naming rule for every task, whole PNGs.

Inputs from different folders can share a stem (``a/coffee.jpg``, ``b/coffee.png``); each
gets its own name in the one output folder: ``coffee``, then ``coffee_1``, ``coffee_2``, ...,
skipping any name an earlier input already took (an input really named ``coffee_1``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

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


def save_png(path: Path, picture: torch.Tensor | np.ndarray | Image.Image) -> Path:
    """A uint8 (3, H, W) tensor, (H, W[, 3]) array or PIL image as a PNG that appears whole."""
    if isinstance(picture, torch.Tensor):
        picture = picture.permute(1, 2, 0).contiguous().numpy()
    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture)
    return atomic_write(path, lambda fh: picture.save(fh, format="PNG"))
