"""The image math of neural style transfer: Gram matrices, total variation, YCbCr colour.

Pure tensor functions of (B, C, H, W) batches, differentiable where the optimisation
needs them.
"""

from __future__ import annotations

import torch


def gram(x: torch.Tensor) -> torch.Tensor:
    """Channel correlations of (B, C, H, W) features, divided by C*H*W as in the book."""
    b, ch, h, w = x.shape
    f = x.reshape(b, ch, h * w)
    return f @ f.transpose(1, 2) / (ch * h * w)


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


# Full-range BT.601 (JPEG) RGB -> YCbCr, with Cb and Cr centred on 0.
YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                      [-0.168736, -0.331264, 0.5],
                      [0.5, -0.418688, -0.081312]])


def to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", YCBCR.to(rgb), rgb)


def from_ycbcr(ycc: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(YCBCR.double()).to(ycc), ycc)


def luminance(rgb: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Grey RGB of the luma; with ``like``, shifted and scaled to its luma's mean and std."""
    y = to_ycbcr(rgb)[:, :1]
    if like is not None:
        ref = to_ycbcr(like)[:, :1]
        y = (y - y.mean()) / y.std().clamp_min(1e-6) * ref.std() + ref.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1)


def with_chroma(rgb: torch.Tensor, chroma_from: torch.Tensor) -> torch.Tensor:
    """``rgb``'s luma with ``chroma_from``'s Cb and Cr."""
    y = to_ycbcr(rgb)[:, :1]
    return from_ycbcr(torch.cat([y, to_ycbcr(chroma_from)[:, 1:]], 1)).clamp(0, 1)
