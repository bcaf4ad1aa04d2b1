"""Quality gates applied: measured values against cvtool.metrics' gates, and the exit-4 error.

Shared by the train commands (the best epoch), ``cvtool eval``, ``cvtool compare --max-drop``
and a seed group's mean (or min). Light on purpose (no torch).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from cvtool import metrics
from cvtool.errors import GateFailed


def number(value: Any) -> float:
    """A measured value; a missing or null one (a non-finite result) is NaN, which fails every gate."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def check(gates: Iterable[metrics.Gate], measured: Mapping[str, Any],
          baseline: Mapping[str, Any] | None = None) -> list[dict]:
    """Every gate as a JSON-able record (cvtool.metrics.failures)."""
    gates = list(gates)
    names = {g.metric for g in gates}
    now = {name: number(measured.get(name)) for name in names}
    base = None if baseline is None else {name: number(baseline.get(name)) for name in names}
    return metrics.failures(gates, now, base)


def enforce(records: list[dict]) -> None:
    """Exit 4 with one line per failed gate."""
    failed = [r for r in records if not r["passed"]]
    if failed:
        raise GateFailed("\n".join(f"gate failed: {r['message']}" for r in failed))
