"""A shuffling sampler whose order is a pure function of (seed, epoch).

That is what makes a mid-epoch resume exact: the resumed run rebuilds the same
permutation and starts where the interrupted one stopped, without replaying batches.
Under torchrun each global batch is cut into one contiguous slice per rank, so N
processes see exactly the batches one process would, and their averaged gradients
are the one-process gradient.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(self, size: int, seed: int, shuffle: bool = True, batch_size: int = 1,
                 rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.batch_size = batch_size
        self.rank = rank
        self.world = world
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and skip this rank's first ``start`` items."""
        self.epoch = epoch
        self.start = start

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=g)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return order
        steps = -(-len(order) // self.batch_size)
        padded = order.repeat(-(-steps * self.batch_size // len(order)))[: steps * self.batch_size]
        per_rank = self.batch_size // self.world
        return padded.view(steps, self.world, per_rank)[:, self.rank].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard(self.order())[self.start:].tolist())

    def __len__(self) -> int:
        full = self.size if self.world == 1 else -(-self.size // self.batch_size) * (self.batch_size // self.world)
        return max(0, full - self.start)
