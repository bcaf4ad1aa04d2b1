"""VGG-19 as a frozen feature extractor for style transfer.

Only the layers up to the deepest one asked for are built, and none of them needs
gradients: the image is optimised, not the network. A convolution's index stands for
its rectified activation (the ReLU after it), the convention of Gatys et al.; the book
gets the same values for all but its last layer through torchvision's in-place ReLUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvtool.errors import InputError
from cvtool.models.weights import is_none, load_state

# torchvision's VGG-19 ``features``: output channels of each 3x3 conv (+ ReLU), "M" = 2x2 max-pool.
PLAN: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                               512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def layer_kinds() -> list[tuple[str, int]]:
    """(kind, channels out) of every module of ``features`` in order: conv, relu or pool."""
    kinds: list[tuple[str, int]] = []
    channels = 3
    for item in PLAN:
        if item == "M":
            kinds.append(("pool", channels))
        else:
            channels = int(item)
            kinds += [("conv", channels), ("relu", channels)]
    return kinds


NUM_LAYERS = len(layer_kinds())


def check_layers(layers: Sequence[int], key: str) -> None:
    for i in layers:
        if not 0 <= i < NUM_LAYERS:
            raise InputError(f"{key}: layer {i} is not a VGG-19 feature layer (0..{NUM_LAYERS - 1})")


def tap_index(i: int) -> int:
    """Where layer ``i``'s activation is read: after the ReLU that follows a conv."""
    kinds = layer_kinds()
    return i + 1 if kinds[i][0] == "conv" else i


def build_layers(upto: int) -> nn.Sequential:
    """``features[: upto + 1]`` with torchvision's module indices, so its state-dict keys match."""
    modules: list[nn.Module] = []
    channels = 3
    for kind, out in layer_kinds()[: upto + 1]:
        if kind == "conv":
            conv = nn.Conv2d(channels, out, kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            modules.append(conv)
            channels = out
        elif kind == "relu":
            modules.append(nn.ReLU(inplace=True))
        else:
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*modules)


class VGGFeatures(nn.Module):
    """Activations of the requested layers from one forward pass, keyed by layer index."""

    def __init__(self, body: nn.Sequential, layers: Sequence[int]):
        super().__init__()
        self.layers = sorted(set(layers))
        self.taps: dict[int, list[int]] = {}
        for i in self.layers:
            self.taps.setdefault(tap_index(i), []).append(i)
        self.body = body[: max(self.taps) + 1]
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for j, layer in enumerate(self.body):
            x = layer(x)
            for i in self.taps.get(j, ()):
                out[i] = x
        return out


def vgg19_features(weights: str | None, layers: Sequence[int]) -> VGGFeatures:
    """A frozen VGG-19 trunk for ``layers``; weights as in cvtool.models.weights (or none: random)."""
    check_layers(layers, "model layers")
    if not layers:
        raise InputError("model layers: at least one VGG-19 layer is needed")
    body = build_layers(max(tap_index(i) for i in layers))
    if not is_none(weights):
        state, source = load_state("vgg19", str(weights))
        picked = {k: state.get(f"features.{k}") for k in body.state_dict()}
        missing = [k for k, v in picked.items() if v is None]
        if missing:
            raise InputError(f"weights {source} do not fit vgg19: no features.{missing[0]}")
        try:
            body.load_state_dict(picked)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "mismatched shapes"
            raise InputError(f"weights {source} do not fit vgg19: {first}") from None
    return VGGFeatures(body, layers)


def activation_elements(height: int, width: int, upto: int) -> tuple[int, int]:
    """Elements of every module output up to ``upto`` (inclusive) and of the largest one."""
    total = largest = 3 * height * width
    h, w = height, width
    for kind, channels in layer_kinds()[: upto + 1]:
        if kind == "pool":
            h, w = h // 2, w // 2
        n = channels * h * w
        total += n
        largest = max(largest, n)
    return total, largest


def min_side(upto: int) -> int:
    """The smallest input side that still leaves one pixel at layer ``upto``."""
    pools = sum(1 for kind, _ in layer_kinds()[: upto + 1] if kind == "pool")
    return 2 ** pools


def parameter_count(upto: int) -> int:
    count, channels = 0, 3
    for kind, out in layer_kinds()[: upto + 1]:
        if kind == "conv":
            count += channels * out * 9 + out
            channels = out
    return count
