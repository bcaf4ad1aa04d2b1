"""A folder of content photos for train-style: any images, at any depth, no labels.

The style network learns from photos alone (pytorch/examples uses COCO 2014's 83k train
images), so the layout is just "images somewhere under data.root". A fixed, evenly spread
handful is held out for validation, the same ones every run and epoch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from cvtool.data.images import IMAGE_SUFFIXES, check_images, load_rgb, read_or_skip
from cvtool.data.textures import background
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


# --------------------------------------------------------------------------- synthetic


def photo(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A textured background with a few flat-shaded shapes: edges and regions for the content loss to keep."""
    img = background(rng, h, w)
    pen = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.integers(0, w - 8), rng.integers(0, h - 8)
        x1, y1 = x0 + rng.integers(8, max(9, w // 2)), y0 + rng.integers(8, max(9, h // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (pen.ellipse if rng.random() < 0.5 else pen.rectangle)((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0))
    return img


def style_picture(rng: np.random.Generator, size: int) -> Image.Image:
    """Bold diagonal strokes in a few saturated colours: a style whose Gram matrices are far from a photo's."""
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 80, 3)))
    pen = ImageDraw.Draw(img)
    palette = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(4)]
    for _ in range(size // 2):
        x, y = rng.integers(-size // 4, size, 2)
        length = int(rng.integers(size // 8, size // 3))
        pen.line((x, y, x + length, y + length // 2), fill=palette[int(rng.integers(0, 4))], width=int(rng.integers(2, 6)))
    return img


def synthesize(out: Path, *, n: int = 64, size: int = 128, seed: int = 0) -> Path:
    """``out/content/{a,b}/<i>.jpg``: ``n`` photo-like pictures of about ``size`` pixels (mixed aspect,
    two sub-folders, since any depth is read), and ``out/style.png``, a stand-in style image."""
    if n < 2 or size < 16:
        raise InputError(f"synthetic photos: n must be >= 2 and size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    out = Path(out)
    for i in range(n):
        h, w = size, round(size * rng.uniform(1.0, 1.5))
        if i % 3 == 1:
            h, w = w, h
        folder = out / "content" / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        photo(rng, h, w).save(folder / f"{i:04d}.jpg", quality=92)
    style_picture(rng, max(size, 64)).save(out / "style.png")
    return out
