"""docs/python.md's walkthrough runs as written: every ```python block, in order, in one namespace."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "python.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.S | re.M)


def test_the_walkthrough_runs_as_written(tmp_path, monkeypatch):
    (tmp_path / "configs").symlink_to(REPO / "configs")  # the page runs from the repository's root
    torch.set_num_threads(1)
    found = blocks()
    assert len(found) == 5
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for code in found:
            exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the page's own code
    run, found_boxes, again = namespace["run"], namespace["found"], namespace["again"]
    assert run.status == "completed" and len(run.history) == 2
    assert (tmp_path / "detections.png").is_file()
    assert namespace["path"].resolve() == (tmp_path / "runs/train-ssd/notebook/export/train-ssd.onnx").resolve()
    assert len(again) == len(found_boxes)
    text = printed.getvalue()
    assert "train-ssd ['banana']" in text
    assert "unknown config key optim.lrr; did you mean optim.lr?" in text
