"""docs/rcnn.md's RoI pooling and RoI Align numbers, checked against torchvision."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import torch
from torchvision.ops import roi_align, roi_pool

DOC = Path(__file__).resolve().parents[1] / "docs" / "rcnn.md"
OPS = {"roi_pool": roi_pool, "roi_align": roi_align}


def doc_lines() -> tuple[dict[str, list], list[tuple[ast.Call, list]]]:
    """The page's X and rois, and each ``op(X, rois, ...) == result`` line as (call, result)."""
    text = DOC.read_text(encoding="utf-8")
    inputs = {name: ast.literal_eval(re.search(rf"^{name} = (\[.*\])$", text, re.M).group(1))
              for name in ("X", "rois")}
    checks = []
    for call, result in re.findall(r"^((?:roi_pool|roi_align)\(X, rois.*?\)) == (\[.*\])$", text, re.M):
        checks.append((ast.parse(call, mode="eval").body, ast.literal_eval(result)))
    return inputs, checks


def test_the_page_holds_the_chapters_example():
    inputs, checks = doc_lines()
    assert inputs["X"] == [list(range(r, r + 4)) for r in range(0, 16, 4)]
    assert inputs["rois"] == [[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]]
    pool = [result for call, result in checks if call.func.id == "roi_pool"]
    assert pool == [[[[5, 6], [9, 10]], [[9, 11], [13, 15]]]]
    assert sum(call.func.id == "roi_align" for call, _ in checks) >= 1


def test_every_roi_line_on_the_page_is_what_torchvision_computes():
    inputs, checks = doc_lines()
    x = torch.tensor(inputs["X"], dtype=torch.float32)[None, None]
    rois = torch.tensor(inputs["rois"], dtype=torch.float32)
    assert len(checks) == 3
    for call, result in checks:
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        got = OPS[call.func.id](x, rois, **kwargs)
        assert got.shape == (2, 1, 2, 2)
        assert torch.allclose(got[:, 0], torch.tensor(result, dtype=torch.float32)), (ast.unparse(call), got)


def test_faster_rcnns_own_sampling_gives_the_default_lines_numbers():
    """The page says torchvision's detectors (sampling_ratio=2, aligned=False) match the default line here."""
    inputs, checks = doc_lines()
    x = torch.tensor(inputs["X"], dtype=torch.float32)[None, None]
    rois = torch.tensor(inputs["rois"], dtype=torch.float32)
    default = next(result for call, result in checks if call.func.id == "roi_align" and len(call.keywords) == 2)
    got = roi_align(x, rois, output_size=(2, 2), spatial_scale=0.1, sampling_ratio=2, aligned=False)
    assert torch.allclose(got[:, 0], torch.tensor(default))
