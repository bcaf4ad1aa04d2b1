"""Datasets over what is already decoded (tensors) or listed (image files with targets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset, default_collate

from cvtool.data.images import load_rgb


class Batch(tuple):
    """A ready-made batch: collation passes it through and pinning skips device tensors."""

    def pin_memory(self) -> "Batch":
        return Batch(t.pin_memory() if t.device.type == "cpu" else t for t in self)


class TensorBatches(Dataset):
    """Rows of in-memory tensors (decoded images, cached features), fetched a batch at a time.

    ``__getitems__`` makes the DataLoader gather a whole batch with one indexing op
    instead of N ``__getitem__`` calls and a stack; with the tensors on the GPU the
    batch never leaves it.
    """

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        if len(inputs) != len(labels):
            raise ValueError("inputs and labels differ in length")
        self.inputs = inputs
        self.labels = labels.to(inputs.device)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = self.index(indices)
        return Batch((self.inputs[idx], self.labels[idx]))

    def index(self, indices: list[int]) -> torch.Tensor:
        """The indices on the tensors' device. Built on the host and, for a GPU, pinned and copied
        without blocking: ``torch.tensor(list, device="cuda")`` would wait for the GPU every batch."""
        idx = torch.tensor(indices, dtype=torch.int64)
        device = self.inputs.device
        if device.type == "cuda":
            return idx.pin_memory().to(device, non_blocking=True)
        return idx.to(device)


def collate(batch: Any) -> Any:
    """The task's collate_fn: ready batches as they are, lists of samples stacked."""
    return batch if isinstance(batch, Batch) else default_collate(batch)


class ImageRows(Dataset):
    """Image files with one integer target each (a class, or a row number for test images)."""

    def __init__(self, files: Sequence[Path], targets: torch.Tensor, transform: Callable):
        self.files = list(files)
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(load_rgb(self.files[i])), self.targets[i]
