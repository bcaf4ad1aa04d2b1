"""TinySSD under torch.compile: the anchors must not make dynamo recompile step after step."""

from __future__ import annotations

import pytest
import torch

from cvtool.models.tinyssd import TinySSD

pytestmark = pytest.mark.slow


def test_compiled_tinyssd_compiles_once_per_batch_kind_and_matches_eager(one_thread):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = TinySSD(num_classes=1, width=0.125)
    net = torch.compile(model, backend="eager")
    for batch in (4, 4, 3):
        x = torch.randn(batch, 3, 64, 64)
        compiled = net(x)
        for a, b in zip(compiled, model(x)):  # train mode: batch statistics, equal whatever ran before
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    model.eval()
    with torch.no_grad():
        anchors, cls, bbox = net(x)
        for a, b in zip((anchors, cls, bbox), model(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # One graph for batch 4 in training, one (dynamic batch) for 3, one for eval: the anchor
    # cache once added a recompile at the second step and for every new key.
    assert counters["stats"]["unique_graphs"] <= 3, dict(counters["stats"])
    assert torch.equal(anchors, model.anchors_for(64, 64)) and cls.shape[0] == bbox.shape[0] == 3
