"""configs/demo/rcnn.yaml does what its comment says: from random weights it learns visibly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvtool.data.bananas import synthesize

REPO = Path(__file__).resolve().parents[1]
UNTRAINED_MAP50 = 0.0018  # the demo's model before its first step, as the config states


@pytest.mark.slow
def test_the_rcnn_demo_reaches_its_stated_map(cli, tmp_path):
    """The whole demo, unchanged but for where its data is (about 3.5 minutes on 2 idle cores)."""
    root = synthesize(tmp_path / "banana-detection", size=96)  # what `cvtool data synth bananas --size 96` writes
    code, _, err = cli("train-rcnn", "--config", REPO / "configs" / "demo" / "rcnn.yaml",
                       "--set", f"data.root={root}", "--out", tmp_path / "demo")
    assert code == 0, err
    best = json.loads((tmp_path / "demo" / "summary.json").read_text())["best"]
    assert best["metric"] == "val_map50" and best["value"] >= 0.02 > 10 * UNTRAINED_MAP50, best  # stated: 0.048
