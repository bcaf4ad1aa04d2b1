"""Metric-level parity: the export scored on the validation set beside its checkpoint.

The tensor check (``check.py``) proves an fp32 export computes the checkpoint's numbers on a
few images; this scores both on the whole validation set with the task's own metrics, the
only proof an INT8 model can give, and the one users ask for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cvtool import metrics
from cvtool.export import scoring

DEFAULT_DROP = 0.01  # one point of accuracy, mAP or mIoU


def gates(texts: list[str], baseline: dict[str, Any]) -> list[metrics.Gate]:
    """``--max-drop`` gates, checked against what the export can report; the task's best metric
    by one point when none is given."""
    skipped = scoring.NOT_SCORED.get(scoring.registry.get(baseline["task"]).family, {})
    available = [k for k in baseline["metrics"] if k not in skipped]
    found = metrics.parse(texts, "drop") or [metrics.Gate("drop", baseline["best_metric"], DEFAULT_DROP)]
    metrics.require_known(found, available, "the export's scoring")
    return found


def compare(baseline: dict[str, Any], scored: dict[str, Any], found: list[metrics.Gate]) -> dict[str, Any]:
    """Both sets of metrics, their difference (export - checkpoint) and each gate's record."""
    shared = [k for k in baseline["metrics"] if k in scored["metrics"]]
    records = metrics.failures(found, scored["metrics"], baseline["metrics"])
    return {"data_root": scored["data_root"], "items": scored["items"],
            "checkpoint_metrics": {k: baseline["metrics"][k] for k in shared},
            "export_metrics": {k: scored["metrics"][k] for k in shared},
            "difference": {k: scored["metrics"][k] - baseline["metrics"][k] for k in shared},
            "not_scored": scored.get("not_scored", {}), "gates": records,
            "ok": all(r["passed"] for r in records)}


def baseline(checkpoint: Path, overrides: list[str]) -> dict[str, Any]:
    return scoring.score_checkpoint(checkpoint, overrides, "cpu")


def measure(model: Path, base: dict[str, Any], overrides: list[str], found: list[metrics.Gate]) -> dict[str, Any]:
    return compare(base, scoring.score_export(model, overrides, "cpu"), found)


def summary(parity: dict[str, Any]) -> str:
    """One line: each gated metric, checkpoint -> export."""
    parts = [f"{r['metric']} {r['baseline']:.4g} -> {r['value']:.4g} "
             f"({'ok' if r['passed'] else 'over'} --max-drop {r['bound']:g})" for r in parity["gates"]]
    return f"{parity['items']} validation items from {parity['data_root']}: " + "; ".join(parts)
