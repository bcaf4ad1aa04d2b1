"""A folder of content photos for train-style: any images, at any depth, no labels.

The style network learns from photos alone (pytorch/examples uses COCO 2014's 83k train
images), so the layout is just "images somewhere under data.root". A fixed, evenly spread
handful is held out for validation, the same ones every run and epoch.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from cvtool.data.images import IMAGE_SUFFIXES, check_images, load_rgb, read_or_skip
from cvtool.data.photos_synth import synthesize  # noqa: F401 - re-exported
from cvtool.errors import InputError, MissingResource

LAYOUT = "images (.jpg, .png, ...) anywhere under the folder"


def find(root: Path) -> list[Path]:
    """Every image under ``root`` (recursively, hidden folders skipped), in path order."""
    root = Path(root)
    if not root.exists():
        raise MissingResource(f"content photo folder {root} does not exist (expected {LAYOUT}); point data.root at "
                              f"a folder of photos (e.g. COCO train2014), or to try it offline: "
                              f"`cvtool data synth photos --out DIR` and data.root=DIR/content")
    if not root.is_dir():
        raise InputError(f"data.root {root} is not a folder (expected {LAYOUT})")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in sorted(files) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def split(files: list[Path], val_count: int) -> tuple[list[Path], list[Path]]:
    """(train, val): ``val_count`` photos spread evenly over the sorted list; at least one left to train on."""
    if len(files) < val_count + 1:
        raise InputError(f"train-style needs more than data.val_count={val_count} photos, found {len(files)}")
    step = len(files) / max(val_count, 1)
    picked = {int(i * step + step / 2) for i in range(val_count)}
    return [f for i, f in enumerate(files) if i not in picked], [f for i, f in enumerate(files) if i in picked]


def view(size: int, train: bool) -> v2.Compose:
    """Shorter side to ``size``, then a ``size`` square: random for training, the centre for validation."""
    crop = v2.RandomCrop(size) if train else v2.CenterCrop(size)
    steps = [v2.Resize(size, antialias=True), crop] + ([v2.RandomHorizontalFlip()] if train else [])
    return v2.Compose(steps)


class Photos(Dataset):
    """uint8 (3, size, size) crops of the photos; ``skip_bad`` decodes each once up front and drops unreadable ones."""

    def __init__(self, files: list[Path], size: int, train: bool, skip_bad: bool = False):
        if skip_bad:
            readable = [f for f in files if read_or_skip(f, load_rgb, skip=True) is not None]
            self.skipped = len(files) - len(readable)
            files = readable
        else:
            check_images(files)
            self.skipped = 0
        if not files:
            raise InputError("no readable content photos are left")
        self.files, self.transform = files, view(size, train)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(TF.pil_to_tensor(load_rgb(self.files[i])))
