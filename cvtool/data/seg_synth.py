"""Synthetic twins of the other mask layouts: an images/ + masks/ folder pair of index masks.

The pictures are data/voc.py's (each class its own shape and hue, a void band around each
object); the masks are single-channel class indices 0..classes with 255 = void and no
palette, as mmsegmentation and most labelling tools write them, and no names file: a
run on it must be given data.classes (or a classes.txt written beside it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cvtool.data.voc_synth import synth_splits


def synthesize_folders(out: Path, *, n_train: int = 300, n_val: int = 60, size: int = 128, classes: int = 4,
                       seed: int = 0) -> Path:
    """Write images/{train,val}/<n>.jpg and masks/{train,val}/<n>.png (mode L: values 0..classes,
    255 = void) under ``out``; ``classes`` object classes plus background. Return ``out``."""
    rng = np.random.default_rng(seed)
    for split, pairs in synth_splits(rng, n_train, n_val, size, classes, "synthetic mask folders"):
        images, masks = Path(out) / "images" / split, Path(out) / "masks" / split
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        for number, image, label in pairs:
            image.save(images / f"{number:05d}.jpg", quality=90)
            Image.fromarray(label, "L").save(masks / f"{number:05d}.png")
    return Path(out)
