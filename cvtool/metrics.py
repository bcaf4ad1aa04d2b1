"""Metric names: which way is better, and quality gates on them (``--fail-under``, ``--max-drop``).

Light on purpose (no torch): the CLI checks a gate's metric name before any work starts.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

from cvtool.errors import InputError

Kind = Literal["under", "over", "drop"]
OPTION = {"under": "--fail-under", "over": "--fail-over", "drop": "--max-drop"}


def family(key: str) -> str:
    """loss, error (``err``, ``mae``) or score, from a metric's name (``val_loss``, ``val_map50``)."""
    name = key.partition("_")[2] or key
    if "loss" in name:
        return "loss"
    if "err" in name or "mae" in name:
        return "error"
    return "score"


def lower_is_better(key: str) -> bool:
    return family(key) != "score"


@dataclass(frozen=True)
class Gate:
    """One bound: ``metric`` must not fall under / rise over ``value``, or drop by more than it."""

    kind: Kind
    metric: str
    value: float

    def failed(self, measured: float, baseline: float | None = None) -> bool:
        if not math.isfinite(measured) or (baseline is not None and not math.isfinite(baseline)):
            return True  # nothing finite to vouch for
        if self.kind == "under":
            return measured < self.value
        if self.kind == "over":
            return measured > self.value
        assert baseline is not None
        drop = baseline - measured if not lower_is_better(self.metric) else measured - baseline
        return drop > self.value

    def describe(self, measured: float, baseline: float | None = None) -> str:
        if self.kind == "drop":
            return (f"{self.metric} {measured:.6g} against the baseline's {baseline:.6g}: "
                    f"worse by more than {OPTION['drop']} {self.value:g}")
        side = "under" if self.kind == "under" else "over"
        return f"{self.metric} {measured:.6g} is {side} the bound {self.value:g} ({OPTION[self.kind]})"


def parse(texts: Iterable[str], kind: Kind) -> list[Gate]:
    """``METRIC=VALUE`` strings (one option each) to gates; a malformed one is exit 2."""
    gates = []
    for text in texts:
        metric, sep, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not metric.strip() or not math.isfinite(number) or (kind == "drop" and number < 0):
            want = "a number >= 0" if kind == "drop" else "a number"
            raise InputError(f"{OPTION[kind]} {text!r}: expected METRIC=VALUE with {want}, e.g. val_acc=0.9")
        gates.append(Gate(kind, metric.strip(), number))
    return gates


def require_known(gates: Iterable[Gate], available: Iterable[str], where: str) -> None:
    """A gate on a metric ``where`` does not report is exit 2, with the closest name."""
    names = sorted(set(available))
    for gate in gates:
        if gate.metric not in names:
            close = difflib.get_close_matches(gate.metric, names, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else f"; it reports {', '.join(names)}"
            raise InputError(f"{OPTION[gate.kind]}: {where} reports no metric {gate.metric}{hint}")


def failures(gates: Iterable[Gate], measured: Mapping[str, float],
             baseline: Mapping[str, float] | None = None) -> list[dict]:
    """Every gate as a JSON-able record (``passed``, value, bound); the caller raises GateFailed on any failure."""
    records = []
    for gate in gates:
        value = measured[gate.metric]
        base = None if baseline is None else baseline[gate.metric]
        failed = gate.failed(value, base)
        record = {"metric": gate.metric, "kind": gate.kind, "bound": gate.value, "value": value,
                  "passed": not failed}
        if base is not None:
            record["baseline"] = base
        if failed:
            record["message"] = gate.describe(value, base)
        records.append(record)
    return records
