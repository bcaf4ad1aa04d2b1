"""Pixel normalisation shared by every task, with the statistics kept on the device."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cvtool.data.stats import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401 - re-exported

_Key = tuple[tuple[float, ...], tuple[float, ...], torch.device, torch.dtype]
_STATS: dict[_Key, tuple[torch.Tensor, torch.Tensor]] = {}


def _stats(mean: Sequence[float], std: Sequence[float], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, 1, 1) mean and std on ``like``'s device and dtype, copied there once, not every step."""
    key = (tuple(float(m) for m in mean), tuple(float(s) for s in std), like.device, like.dtype)
    found = _STATS.get(key)
    if found is None:
        found = (torch.tensor(key[0], dtype=like.dtype).view(-1, 1, 1).to(like.device),
                 torch.tensor(key[1], dtype=like.dtype).view(-1, 1, 1).to(like.device))
        _STATS[key] = found
    return found


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (0..255) or float (0..1) pixels, (C, H, W) or (B, C, H, W), to ``(x - mean) / std``.

    uint8 becomes float32; a float input keeps its dtype.
    """
    if not x.is_floating_point():
        x = x.float() / 255
    m, s = _stats(mean, std, x)
    return (x - m) / s


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The inverse of :func:`normalize` for float pixels, clamped to 0..1."""
    m, s = _stats(mean, std, x)
    return (x * s + m).clamp(0, 1)
