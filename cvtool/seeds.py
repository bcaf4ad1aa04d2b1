"""A seed group: the same run with several seeds, ``DIR/seed-0``, ``seed-1``, ... and ``DIR/seeds.json``.

On small data one seed's result is mostly noise, so a group reports each metric's spread over
the seeds: mean, standard deviation, min, max and a 95% Student-t interval for the mean. Its
seeds may have run here one after another (``--seeds``) or anywhere else (one job per seed), as
long as each left its run directory in the group folder. Light on purpose (no torch).
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

from cvtool import metrics
from cvtool import runs as runlib
from cvtool.errors import InputError
from cvtool.files import atomic_write, json_text

FILE = "seeds.json"
FOLDER = re.compile(r"seed-(\d+)$")
NOT_METRICS = {"epoch", "lr"}


def parse(text: str) -> list[int]:
    """``--seeds 0,1,2``: distinct non-negative integers."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds {text!r}: expected distinct seeds >= 0 separated by commas, e.g. 0,1,2")
    return seeds


def folder(group: Path, seed: int) -> Path:
    return Path(group) / f"seed-{seed}"


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (p > 0.5): bisection on the CDF, its density integrated by Simpson's rule."""
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(t: float, steps: int = 400) -> float:
        h = t / steps
        ys = [scale * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
        return 0.5 + h / 3 * (ys[0] + ys[-1] + 4 * sum(ys[1:-1:2]) + 2 * sum(ys[2:-1:2]))

    low, high = 0.0, 1.0
    while cdf(high) < p:
        low, high = high, high * 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


def spread(values: list[float]) -> dict[str, Any]:
    """n, mean, std (sample), min, max and the 95% t-interval of the mean (null for one value)."""
    n, mean = len(values), statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else None
    half = t_quantile(0.975, n - 1) * std / math.sqrt(n) if std is not None else None
    return {"n": n, "mean": mean, "std": std, "min": min(values), "max": max(values),
            "ci95": [mean - half, mean + half] if half is not None else None}


def stats(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each metric's spread over the rows that hold a finite value of it."""
    names = sorted({k for row in rows for k in row} - NOT_METRICS)
    out = {}
    for name in names:
        values = [float(row[name]) for row in rows if isinstance(row.get(name), (int, float))
                  and math.isfinite(row[name])]
        if values:
            out[name] = spread(values)
    return out


def members(group: Path) -> list[tuple[int, Path]]:
    """The group's seed folders that hold a run, by seed."""
    if not Path(group).is_dir():
        raise InputError(f"{group} is not a folder")
    found = [(int(m.group(1)), p) for p in Path(group).iterdir() if (m := FOLDER.match(p.name)) and runlib.is_run(p)]
    if not found:
        raise InputError(f"{group} holds no seed folders (seed-0, seed-1, ... each a run directory)")
    return sorted(found)


def summarise(group: Path) -> dict[str, Any]:
    """The group's seeds.json record (written by ``write``): completed seeds make the statistics."""
    seeds, best, final, tasks = [], [], [], set()
    best_metric = mode = None
    for seed, path in members(group):
        summary = runlib.read_json(path / "summary.json") if (path / "summary.json").is_file() else {}
        info = runlib.read_run(path)
        tasks.add(info.task)
        record = {"seed": seed, "run_dir": str(path), "status": info.status, "best_epoch": info.best_epoch,
                  "best": summary.get("best_row") or {}, "final": summary.get("final") or {}}
        seeds.append(record)
        if info.status == "completed":
            best.append(record["best"])
            final.append(record["final"])
            best_metric, mode = (summary.get("best") or {}).get("metric"), (summary.get("best") or {}).get("mode")
    if len(tasks) > 1:
        raise InputError(f"{group} mixes runs of {', '.join(sorted(map(str, tasks)))}")
    return {"group": str(group), "task": tasks.pop(), "best_metric": best_metric, "mode": mode,
            "completed": len(best), "seeds": seeds, "best": stats(best), "final": stats(final)}


def gated(record: dict[str, Any], gates: list[metrics.Gate], on: str) -> dict[str, float]:
    """What the gates check: each metric's mean over the seeds' best epochs, or with ``on`` = min
    the worst seed (the minimum for --fail-under, the maximum for --fail-over)."""
    out = {}
    for gate in gates:
        spread_ = record["best"].get(gate.metric)
        if spread_ is not None:
            out[gate.metric] = spread_["mean"] if on == "mean" else spread_["min" if gate.kind == "under" else "max"]
    return out


def write(group: Path, record: dict[str, Any]) -> Path:
    return atomic_write(Path(group) / FILE, json_text(record, indent=2) + "\n")


def table(record: dict[str, Any]) -> str:
    """The spread of the task's metrics (best epoch of each seed, then the last), one line each."""
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4g}"

    lines = [f"{record['task']}: {record['completed']} of {len(record['seeds'])} seeds completed in "
             f"{record['group']} (95% t-interval of the mean)",
             f"  {'metric':<24} {'mean':>9} {'std':>9} {'min':>9} {'max':>9}  95% interval"]
    for which in ("best", "final"):
        for name, s in record[which].items():
            if name.startswith(("train_", "val_")):
                interval = "-" if s["ci95"] is None else f"[{fmt(s['ci95'][0])}, {fmt(s['ci95'][1])}]"
                lines.append(f"  {which + ' ' + name:<24} {fmt(s['mean']):>9} {fmt(s['std']):>9} {fmt(s['min']):>9}"
                             f" {fmt(s['max']):>9}  {interval}")
    return "\n".join(lines)
