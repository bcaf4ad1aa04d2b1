"""A fully convolutional network: ResNet-18 features, a 1x1 class conv, a 32x transposed conv.

The transposed convolution starts as bilinear interpolation, so an untrained head already
turns the coarse 1/32-resolution class scores into a smooth full-size map and training
only has to refine it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

STRIDE = 32


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """ConvTranspose2d weights (in, out, k, k) that upsample each channel bilinearly by k // 2."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float32) - center).abs() / factor
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    channels = torch.arange(min(in_channels, out_channels))
    weight[channels, channels] = taps[:, None] * taps[None, :]
    return weight


def resnet18_trunk(width: int = 64) -> nn.Sequential:
    """ResNet-18 without avgpool and fc, ``width`` channels in its first stage.

    At width 64 the module names and shapes are torchvision's resnet18, so its ImageNet
    weights load as they are; narrower trunks are for quick CPU demos.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(3, width, 7, 2, 3, bias=False),
        bn1=nn.BatchNorm2d(width),
        relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(3, 2, 1),
    )
    cin = width
    for stage, stride in enumerate((1, 2, 2, 2)):
        cout = width * 2**stage
        down = None
        if stride != 1 or cin != cout:
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        layers[f"layer{stage + 1}"] = nn.Sequential(BasicBlock(cin, cout, stride, down),
                                                    BasicBlock(cout, cout))
        cin = cout
    trunk = nn.Sequential(layers)
    for m in trunk.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return trunk


class FCN(nn.Module):
    """Per-pixel class scores (N, num_classes, H, W) for normalized images (N, 3, H, W).

    Inputs whose sides are not multiples of 32 are zero-padded (zero = the mean colour after
    normalization) and the scores cropped back, so any image size works.
    """

    def __init__(self, num_classes: int = 21, width: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = resnet18_trunk(width)
        self.classifier = nn.Conv2d(8 * width, num_classes, 1)
        self.upsample = nn.ConvTranspose2d(num_classes, num_classes, 2 * STRIDE, STRIDE, STRIDE // 2)
        with torch.no_grad():
            self.upsample.weight.copy_(bilinear_kernel(num_classes, num_classes, 2 * STRIDE))
            self.upsample.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE))
        return self.upsample(self.classifier(self.backbone(x)))[..., :h, :w]

    def load_backbone(self, resnet: nn.Module) -> None:
        """Copy a torchvision ResNet-18's weights (its fc dropped) into the trunk."""
        state = {k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
        self.backbone.load_state_dict(state)
