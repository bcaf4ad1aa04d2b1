"""Global max-pooling with a deterministic backward, and models free of nondeterministic layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvtool.models.cifar import cifar_resnet18, fastnet
from cvtool.models.fcn import FCN
from cvtool.models.pooling import GlobalMaxPool
from cvtool.models.tinyssd import TinySSD

# Layers whose CUDA backward torch.use_deterministic_algorithms refuses (its documented list).
NONDETERMINISTIC = (nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.FractionalMaxPool2d, nn.FractionalMaxPool3d,
                    nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.MaxUnpool2d, nn.ReflectionPad2d)


@pytest.mark.parametrize("channels_last", [False, True])
def test_global_max_pool_is_adaptive_max_pool_in_value_and_gradient(channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, 6)  # continuous values: every maximum is unique
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    weight = torch.randn(3, 5, 1, 1)
    out_a, out_b = GlobalMaxPool()(a), nn.AdaptiveMaxPool2d(1)(b)
    assert out_a.shape == out_b.shape == (3, 5, 1, 1)
    assert torch.equal(out_a, out_b)
    (out_a * weight).sum().backward()
    (out_b * weight).sum().backward()
    assert torch.equal(a.grad, b.grad)


def test_global_max_pool_keeps_the_dtype_under_bf16_autocast():
    x = torch.randn(2, 4, 3, 3, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = GlobalMaxPool()(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, nn.AdaptiveMaxPool2d(1)(x))


@pytest.mark.parametrize("build", [lambda: fastnet(10, 8), lambda: cifar_resnet18(10, 8),
                                   lambda: TinySSD(1, 0.25), lambda: FCN(5, 8)],
                         ids=["fastnet", "resnet18", "tinyssd", "fcn"])
def test_models_have_no_layer_without_a_deterministic_cuda_backward(build):
    model = build()
    bad = [name for name, m in model.named_modules() if isinstance(m, NONDETERMINISTIC)]
    # AdaptiveAvgPool2d to 1x1 is a mean (deterministic); to any other size it is not.
    bad += [name for name, m in model.named_modules()
            if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1))]
    assert bad == []


def test_fastnet_checkpoints_keep_their_keys():
    """The pool has no parameters and keeps its place in the Sequential, so old checkpoints still load."""
    old = nn.Sequential(*[nn.AdaptiveMaxPool2d(1) if isinstance(m, GlobalMaxPool) else m for m in fastnet(10, 8)])
    fastnet(10, 8).load_state_dict(old.state_dict())
