"""The feed-forward style network of Johnson et al. (2016), as pytorch/examples builds it.

A 9x9 convolution, two stride-2 convolutions down, residual blocks, two nearest
upsamplings each followed by a convolution (instead of the paper's transposed
convolutions, which leave checkerboard artefacts), a 9x9 convolution to RGB. Instance
normalisation (Ulyanov et al.) replaces the paper's batch normalisation, and reflection
padding keeps borders clean. It takes [0, 1] RGB pixels of any size and returns pixels
of the same size (unclamped: the loss sees them raw, pictures clamp them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class InstanceNorm(nn.InstanceNorm2d):
    """Instance norm that keeps a channels_last picture in place at inference: for one picture it is
    batch norm over that picture, while torch's instance_norm copies a channels_last input to NCHW
    and back (40% of the network's time in bf16 at 854x480). Same parameters, same numbers. Training
    and exports (never under inference_mode) take torch's own, so an export's graph is unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_inference_mode_enabled() and len(x) == 1:
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return super().forward(x)


def conv_norm_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(conv(cin, cout, kernel, stride), InstanceNorm(cout, affine=True), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """x + conv-norm-relu-conv-norm(x), channel count kept."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_norm_relu(channels, channels, 3), conv(channels, channels, 3),
                                  InstanceNorm(channels, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def channels(width: float) -> tuple[int, int, int]:
    """The three stages' channels: 32, 64, 128 times ``width`` (at least 4 each)."""
    return tuple(max(4, round(base * width)) for base in (32, 64, 128))  # type: ignore[return-value]


class TransformerNet(nn.Module):
    def __init__(self, width: float = 1.0, residual_blocks: int = 5):
        super().__init__()
        c1, c2, c3 = channels(width)
        self.stem = conv_norm_relu(3, c1, 9)
        self.down1 = conv_norm_relu(c1, c2, 3, 2)
        self.down2 = conv_norm_relu(c2, c3, 3, 2)
        self.blocks = nn.Sequential(*(Residual(c3) for _ in range(residual_blocks)))
        self.up1 = conv_norm_relu(c3, c2, 3)
        self.up2 = conv_norm_relu(c2, c1, 3)
        self.head = conv(c1, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each upsampling goes back to the exact size of the matching stage, so any H x W comes out as it went in."""
        a = self.stem(x)
        b = self.down1(a)
        y = self.blocks(self.down2(b))
        y = self.up1(F.interpolate(y, size=b.shape[-2:], mode="nearest"))
        y = self.up2(F.interpolate(y, size=a.shape[-2:], mode="nearest"))
        return self.head(y)
