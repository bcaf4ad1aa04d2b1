"""`cvtool compare`: several runs of one task, side by side.

The picture overlays each metric the runs share (train dashed, val solid, one colour per
run) and names every run by the config values that set it apart, since "exp3" says
nothing; the config keys that are equal everywhere are left out, so what was varied is
what is shown.
"""

from __future__ import annotations

import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from cvtool import gates as gating
from cvtool import metrics
from cvtool import runs as runlib
from cvtool import seeds as seedlib
from cvtool.callable import make_callable
from cvtool.errors import InputError

NOT_CURVES = {"epoch", "step", "lr", "epoch_seconds", "images_per_second"}
LEGEND_KEYS = 3  # differing keys named in a legend entry; the rest are in the table


@dataclass
class Loaded:
    run_dir: Path
    task: str
    config: dict[str, Any]
    rows: list[dict[str, float]]
    best: dict[str, Any]


def load(run_dir: Path) -> Loaded:
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is not a run directory (not a folder)")
    if not (run_dir / "metrics.csv").is_file():
        raise InputError(f"{run_dir} is not a run directory (no metrics.csv)")
    config = runlib.read_config(run_dir)
    info = runlib.read_run(run_dir)
    if info.status == "unreadable":
        raise InputError(f"{run_dir}: {info.reason}")
    if info.task is None:
        raise InputError(f"{run_dir}: cannot tell which task it ran (no summary.json or env.json)")
    best = {"metric": info.best_metric}
    if info.best_metric is not None:
        summary = runlib.read_json(run_dir / "summary.json")
        best["mode"] = (summary.get("best") or {}).get("mode")
    return Loaded(run_dir, info.task, flatten(config), runlib.read_metrics(run_dir), best)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differing(loaded: list[Loaded]) -> dict[str, list[Any]]:
    """Config keys whose values are not the same in every run, with each run's value."""
    keys = sorted(set().union(*(r.config for r in loaded)))
    out = {}
    for key in keys:
        values = [r.config.get(key, "(absent)") for r in loaded]
        if any(v != values[0] for v in values[1:]):
            out[key] = values
    return out


def labels(loaded: list[Loaded], diff: dict[str, list[Any]]) -> list[str]:
    """Each run named by its differing values (the last key part when that is unambiguous)."""
    if not diff:
        return [r.run_dir.name for r in loaded]
    shown = list(diff)[:LEGEND_KEYS]
    tails = [k.split(".")[-1] for k in shown]
    names = tails if len(set(tails)) == len(tails) else shown
    more = f" (+{len(diff) - len(shown)} more)" if len(diff) > len(shown) else ""
    out = [", ".join(f"{n}={diff[k][i]}" for n, k in zip(names, shown)) + more for i in range(len(loaded))]
    if len(set(out)) < len(out):
        out = [f"{r.run_dir.name}: {label}" for r, label in zip(loaded, out)]
    return out


def mode_of(metric: str, loaded: list[Loaded]) -> str:
    for r in loaded:
        if r.best.get("metric") == metric and r.best.get("mode") in ("min", "max"):
            return r.best["mode"]
    return "min" if "loss" in metric else "max"


def best_of(rows: list[dict[str, float]], metric: str, mode: str, x: str) -> tuple[float | None, float | None]:
    points = [(r[metric], r.get(x)) for r in rows if metric in r]
    if not points:
        return None, None
    value, at = (min if mode == "min" else max)(points, key=lambda p: p[0])
    return value, at


def panels(loaded: list[Loaded]) -> dict[str, list[str]]:
    """Metric name -> the shared columns it is drawn from, e.g. loss -> [train_loss, val_loss]."""
    shared = set.intersection(*(set().union(*(r.keys() for r in run.rows)) if run.rows else set()
                                for run in loaded))
    groups: dict[str, list[str]] = {}
    for column in sorted(shared - NOT_CURVES):
        base = column.split("_", 1)[1] if column.startswith(("train_", "val_")) else column
        groups.setdefault(base, []).append(column)
    return groups


def draw(loaded: list[Loaded], names: list[str], groups: dict[str, list[str]], x: str, path: Path,
         title: str) -> Path:
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig = Figure(figsize=(5.2 * cols, 3.8 * rows + 0.9))  # no pyplot: a notebook's backend stays as it is
    axes = fig.subplots(rows, cols, squeeze=False)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, columns) in zip(axes.flat, groups.items()):
        for i, run in enumerate(loaded):
            for column in columns:
                points = [(r[x], r[column]) for r in run.rows if x in r and column in r]
                if not points:
                    continue
                xs, ys = zip(*points)
                style = "--" if column.startswith("train_") else "-"
                ax.plot(xs, ys, style, marker="o", markersize=3, color=colors[i % len(colors)])
        ax.set_title(metric)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        low, high = ax.dataLim.y0, ax.dataLim.y1
        if low > 0 and high / low > 100:  # one diverging run would flatten the others
            ax.set_yscale("log")
            ax.set_ylabel(f"{metric} (log scale)")
    for ax in list(axes.flat)[len(groups):]:
        ax.set_axis_off()
    handles = [Line2D([], [], color="grey", linestyle="--", label="train"),
               Line2D([], [], color="grey", linestyle="-", label="val")]
    handles += [Line2D([], [], color=colors[i % len(colors)], label=name) for i, name in enumerate(names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize="small", frameon=False)
    fig.suptitle("\n".join(textwrap.wrap(title, width=int(5.2 * cols * 11))))
    legend_rows = -(-len(handles) // 3)
    fig.tight_layout(rect=(0, min(0.4, 0.06 * legend_rows + 0.02), 1, 1))
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path


def compare(run_dirs: list[Path], metric: str | None = None, out: Path | None = Path("compare.png"),
            title: str | None = None, drops: list[metrics.Gate] | None = None) -> dict[str, Any]:
    """Overlay the runs' curves into ``out`` (None: no picture); the result names the differing keys
    and each run's best, and with ``drops`` (``--max-drop``) how each later run's best compares with
    the first's. A seed group (DIR/seed-N) draws each seed and, for ``drops``, counts as its seeds' mean best."""
    if len(run_dirs) < 2:
        raise InputError("compare needs at least two runs")
    units = [[load(p) for p in members(Path(d))] for d in run_dirs]
    loaded = [run for unit in units for run in unit]
    tasks = sorted({r.task for r in loaded})
    if len(tasks) > 1:
        which = ", ".join(f"{r.run_dir} ({r.task})" for r in loaded)
        raise InputError(f"runs of different tasks cannot be compared: {which}")
    metric = metric or loaded[0].best.get("metric")
    columns = set().union(*(r.keys() for run in loaded for r in run.rows))
    if metric is None or metric not in columns:
        known = ", ".join(sorted(columns - NOT_CURVES)) or "none"
        raise InputError(f"no run has the metric {metric}; their metrics: {known}")
    metrics.require_known(drops or [], columns - NOT_CURVES, f"{tasks[0]} (in {loaded[0].run_dir})")
    x = "epoch" if all(any("epoch" in r for r in run.rows) for run in loaded) else "step"
    groups = panels(loaded)
    if not groups:
        raise InputError("the runs share no metric to draw (has any of them finished an epoch?)")
    diff = differing(loaded)
    names = labels(loaded, diff)
    mode = mode_of(metric, loaded)
    table = []
    for run, name in zip(loaded, names):
        value, at = best_of(run.rows, metric, mode, x)
        table.append({"run_dir": str(run.run_dir), "label": name, "best": value, x: at,
                      "epochs": max((r.get(x, 0) for r in run.rows), default=0)})
    if out is not None:
        draw(loaded, names, groups, x, out, title or f"{tasks[0]}: {len(loaded)} runs (best {metric}: {mode})")
    return {"task": tasks[0], "metric": metric, "mode": mode, "x": x, "runs": table,
            "differing": diff, "picture": None if out is None else str(out),
            "gates": against_base(units, [Path(d) for d in run_dirs], drops or [], x)}


def members(path: Path) -> list[Path]:
    """A run directory, or a seed group's seed runs."""
    if (path / "metrics.csv").is_file() or not path.is_dir():
        return [path]
    found = [p for _, p in seedlib.members(path)] if any(path.glob("seed-*")) else []
    return found or [path]


def against_base(units: list[list[Loaded]], dirs: list[Path], drops: list[metrics.Gate], x: str) -> list[dict]:
    """Each later run's best of each gated metric (in its own direction; a seed group's mean over its
    seeds) against the first's."""
    def bests(unit: list[Loaded]) -> dict[str, float | None]:
        out = {}
        for gate in drops:
            mode = "min" if metrics.lower_is_better(gate.metric) else "max"
            values = [v for run in unit if (v := best_of(run.rows, gate.metric, mode, x)[0]) is not None]
            out[gate.metric] = statistics.fmean(values) if values else None
        return out

    base = bests(units[0])
    return [{**record, "run_dir": str(where), "baseline_dir": str(dirs[0])}
            for unit, where in zip(units[1:], dirs[1:]) for record in gating.check(drops, bests(unit), base)]


make_callable(__name__)  # cvtool.compare(...) is cvtool.api.compare
