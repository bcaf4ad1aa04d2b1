"""train-style's perceptual loss (Johnson et al.): VGG features of the output against the
content photo's (content) and against the style image's Gram matrices (style).

The same frozen VGG-19 trunk, Gram matrix and total variation as ``cvtool stylize``
(cvtool.models.vgg, cvtool.ops.style); only the network makes the picture here. The
network runs under the trainer's autocast, the Grams and losses are fp32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cvtool.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from cvtool.models import vgg
from cvtool.ops.style import gram, tv_loss

PARTS = ("content_loss", "style_loss", "tv_loss")


class Perceptual:
    """``loss(output, content) -> (B, 3)`` per-image weighted (content, style, tv) terms.

    ``style`` is the style image as (1, 3, H, W) [0, 1] pixels; its Grams are computed once
    per device. The VGG trunk follows the batch to its device on first use.
    """

    def __init__(self, net: vgg.VGGFeatures, style: torch.Tensor, content_layers: Sequence[int],
                 style_layers: Sequence[int], weights: tuple[float, float, float]):
        self.net, self.style = net, style
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        self.weights = torch.tensor(weights)
        self.grams: dict[int, torch.Tensor] = {}

    def features(self, pixels: torch.Tensor) -> dict[int, torch.Tensor]:
        if next(self.net.parameters()).device != pixels.device:
            self.net.to(pixels.device)
            self.grams = {}
        return self.net(normalize(pixels, IMAGENET_MEAN, IMAGENET_STD))

    def targets(self, device: torch.device) -> dict[int, torch.Tensor]:
        if not self.grams:
            with torch.no_grad():
                feats = self.features(self.style.to(device))
                self.grams = {i: gram(feats[i].float()) for i in self.style_layers}
        return self.grams

    def __call__(self, output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        grams = self.targets(output.device)
        with torch.no_grad():
            wanted = self.features(content)
            wanted = {i: wanted[i].float() for i in self.content_layers}
        got = self.features(output)
        per_image = lambda a, b: F.mse_loss(a, b, reduction="none").flatten(1).mean(1)  # noqa: E731
        content_loss = sum(per_image(got[i].float(), wanted[i]) for i in self.content_layers)
        style_loss = sum(per_image(gram(got[i].float()), grams[i].expand(len(output), -1, -1))
                         for i in self.style_layers)
        tv = torch.stack([tv_loss(o.float()) for o in output])
        return torch.stack([content_loss, style_loss, tv], 1) * self.weights.to(output.device)
