"""Pooling with a deterministic CUDA backward.

nn.AdaptiveMaxPool2d's backward has no deterministic CUDA kernel (it scatters with atomics),
so ``train.deterministic`` could not make a run that uses it reproducible.
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalMaxPool(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1): the maximum over each channel, as nn.AdaptiveMaxPool2d(1).

    amax's backward is element-wise (the gradient goes to the positions equal to the
    maximum), hence deterministic. The value is the same function; the gradient is the
    same wherever the maximum is unique, and where several positions tie it is shared
    among them instead of going to the first one.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(-2, -1), keepdim=True)
