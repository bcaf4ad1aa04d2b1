"""Frame-to-frame steadiness of a video's outputs: a flicker measure and a blend that lowers it.

A style network sees each frame alone, so sensor noise and compression changes that are
invisible in the input come out as brush strokes that shimmer. Where the input barely
changed since the previous frame, the output is blended with the previous (already
blended) output; where it moved, the new output is kept as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TOLERANCE = 0.04  # mean per-pixel input change (in [0, 1] units, over a 5x5 window) at which blending stops


def flicker(previous: torch.Tensor, current: torch.Tensor) -> float:
    """Mean absolute difference of two uint8 (3, H, W) frames, in 0..255 levels."""
    return (current.float() - previous.float()).abs().mean().item()


def blend_weight(previous_in: torch.Tensor, current_in: torch.Tensor, strength: float,
                 tolerance: float = TOLERANCE) -> torch.Tensor:
    """(1, H, W) weight of the previous output: ``strength`` where the input stood still, falling
    linearly to 0 as its local change reaches ``tolerance``."""
    change = (current_in.float() - previous_in.float()).abs().mean(0, keepdim=True) / 255
    local = F.avg_pool2d(change[None], 5, stride=1, padding=2, count_include_pad=False)[0]
    return strength * (1 - local / tolerance).clamp(0, 1)


def blend(previous_out: torch.Tensor, current_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """uint8 (3, H, W): ``weight`` of the previous output, the rest of the current one."""
    mixed = weight * previous_out.float() + (1 - weight) * current_out.float()
    return mixed.round().clamp(0, 255).to(torch.uint8)
