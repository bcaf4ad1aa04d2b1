"""One detection split as a Dataset, whatever layout its records came from.

Items are {"image": uint8 (3, S, S), "labels": (M, 5), "difficult": (M,) bool}: label rows
[class, x1, y1, x2, y2] with coordinates divided by the image's width and height, padding
rows class -1 and zero box, M the split's largest object count (so the default collate
stacks them). In memory the rows of all images lie in one compact (objects, 5) tensor with
per-image offsets, so a split of COCO's size costs its objects, not images x M.

Images decode as they are asked for (in DataLoader workers), or, with ``cache``, once at
start-up into one uint8 tensor: the book's bananas fit in a few hundred MB, a user's set
may not (data.cache decides; see tasks/detect.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from cvtool.data import presets
from cvtool.data.images import load_rgb, read_or_skip
from cvtool.data.records import Record
from cvtool.errors import InputError


def to_tensor(img: Image.Image, size: int | None = None) -> torch.Tensor:
    """An RGB PIL image as uint8 (3, H, W), resized to size x size when ``size`` is given."""
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


def load_image(path: Path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """An image as uint8 (3, size, size) and its displayed (width, height)."""
    img = load_rgb(path)
    return to_tensor(img, size), img.size


@dataclass
class Augment:
    """Box-aware augmentation: horizontal flips and a random zoom of +-scale_jitter."""

    flip: bool = False
    scale_jitter: float = 0.0

    def enabled(self) -> bool:
        return self.flip or self.scale_jitter > 0

    def transform(self) -> v2.Transform:
        return presets.detection_train(flip=self.flip, scale_jitter=self.scale_jitter)


def decoded_bytes(count: int, image_size: int) -> int:
    """Memory a cached split of ``count`` images takes."""
    return count * 3 * image_size * image_size


class BoxDataset(Dataset):
    """``records`` as items; ``skip_bad`` with ``cache`` leaves out the images that fail to decode."""

    def __init__(self, records: Sequence[Record], image_size: int, *, augment: Augment | None = None,
                 cache: bool = False, skip_bad: bool = False, where: str = "the split"):
        self.image_size = image_size
        self.images: torch.Tensor | None = None
        self.skipped = 0  # images a cached decode left out (data.on_bad_image: skip)
        if cache:
            records = self._decode(records, skip_bad)
        if not records:
            raise InputError(f"{where} holds no readable image")
        self.paths = [r.image for r in records]
        self.sizes = [r.size for r in records]
        counts = np.fromiter((len(r.boxes) for r in records), np.int64, len(records))
        total = int(counts.sum())
        boxes = np.array([b for r in records for b in r.boxes], dtype=np.float64).reshape(-1, 4)
        boxes /= np.tile(np.repeat(np.array([r.size for r in records], np.float64).reshape(-1, 2), counts, axis=0), 2)
        labels = np.fromiter((k for r in records for k in r.labels), np.float64, total)
        self.rows = torch.from_numpy(np.concatenate([labels[:, None], boxes], axis=1).astype(np.float32))
        self.crowd = torch.from_numpy(np.fromiter((c for r in records for c in r.crowd), np.bool_, total))
        self.offsets = torch.from_numpy(np.concatenate([[0], counts.cumsum()]))
        self.max_objects = max(1, int(counts.max()))
        self.augment = augment if augment is not None and augment.enabled() else None
        self._transform = self.augment.transform() if self.augment else None

    def _decode(self, records: Sequence[Record], skip_bad: bool) -> list[Record]:
        size = self.image_size
        images = torch.empty(len(records), 3, size, size, dtype=torch.uint8)
        kept = []
        for record in records:
            loaded = read_or_skip(record.image, lambda p: load_image(p, size)[0], skip_bad)
            if loaded is not None:
                images[len(kept)] = loaded
                kept.append(record)
        self.images = images if len(kept) == len(records) else images[: len(kept)].clone()
        self.skipped = len(records) - len(kept)
        return kept

    def __len__(self) -> int:
        return len(self.paths)

    def padded(self, start: int = 0, stop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Label rows (B, M, 5) and crowd flags (B, M) of images start..stop, -1 padded."""
        stop = len(self) if stop is None else min(stop, len(self))
        labels = torch.zeros(max(stop - start, 0), self.max_objects, 5)
        labels[..., 0] = -1
        flags = torch.zeros(labels.shape[:2], dtype=torch.bool)
        for k, i in enumerate(range(start, stop)):
            a, b = int(self.offsets[i]), int(self.offsets[i + 1])
            labels[k, : b - a] = self.rows[a:b]
            flags[k, : b - a] = self.crowd[a:b]
        return labels, flags

    @property
    def labels(self) -> torch.Tensor:
        """Every image's padded label rows (N, M, 5), built when asked for."""
        return self.padded()[0]

    @property
    def difficult(self) -> torch.Tensor:
        return self.padded()[1]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = self.images[i] if self.images is not None else load_image(self.paths[i], self.image_size)[0]
        labels, difficult = (t[0] for t in self.padded(i, i + 1))
        if self._transform is not None:
            image, labels, difficult = self._augmented(image, labels, difficult)
        return {"image": image, "labels": labels, "difficult": difficult}

    def _augmented(self, image: torch.Tensor, labels: torch.Tensor,
                   difficult: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boxes move with the image; class and crowd flag travel together so dropped boxes lose both."""
        size = self.image_size
        valid = labels[:, 0] >= 0
        boxes = tv_tensors.BoundingBoxes(labels[valid, 1:] * size, format="XYXY", canvas_size=(size, size))
        tags = torch.stack([labels[valid, 0], difficult[valid].float()], dim=1)
        out = self._transform({"image": tv_tensors.Image(image), "boxes": boxes, "labels": tags})
        n = out["labels"].shape[0]
        labels = torch.zeros_like(labels)
        labels[:, 0] = -1
        labels[:n, 0] = out["labels"][:, 0]
        labels[:n, 1:] = out["boxes"].as_subclass(torch.Tensor).clamp(0, size) / size
        flags = torch.zeros_like(difficult)
        flags[:n] = out["labels"][:, 1] > 0
        return out["image"].as_subclass(torch.Tensor), labels, flags
