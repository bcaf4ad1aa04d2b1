"""Networks for 32x32 CIFAR images: the book's ResNet-18 and a fast VGG-style net."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvtool.models.pooling import GlobalMaxPool


class Residual(nn.Module):
    """Two 3x3 conv-BN layers plus the input (through a 1x1 conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def cifar_resnet18(num_classes: int, width: int = 64) -> nn.Sequential:
    """The book's ResNet-18 for 32x32 inputs: no 7x7 stride-2 stem and no max-pool."""
    widths = [width, 2 * width, 4 * width, 8 * width]
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for i, w in enumerate(widths):
        layers += [Residual(cin, w, 1 if i == 0 else 2), Residual(w, w, 1)]
        cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]


class Scale(nn.Module):
    """A fixed logit temperature: keeps early logits small under a large learning rate."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def fastnet(num_classes: int, width: int = 64) -> nn.Sequential:
    """A VGG-style net in the spirit of airbench: three conv-pool-conv blocks, max-pooled head.

    Few, wide layers at low resolution keep a GPU busy with large convolutions instead of
    many small kernel launches; about 0.15 GMAC per image at width 64.
    """
    stem, w1, w2 = max(4, width // 2), width, 4 * width
    layers: list[nn.Module] = conv_bn(3, stem)
    for cin, cout in ((stem, w1), (w1, w2), (w2, w2)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                   nn.BatchNorm2d(cout), nn.GELU(), *conv_bn(cout, cout)]
    layers += [GlobalMaxPool(), nn.Flatten(), nn.Linear(w2, num_classes, bias=False), Scale(1 / 8)]
    return nn.Sequential(*layers)
