"""curves.png: losses and metrics per epoch, readable without opening the CSV.

Metrics are grouped by scale, one panel per family, so that a 0.003 box error does not lie
flat under a 0-1 mAP: losses (log scale when they span a decade, so an epoch-1 spike does
not flatten the rest), errors (``err``, ``mae``: log scale likewise) and scores (accuracy,
mAP, IoU on 0-1). Per-class figures (``val_iou/cat``) stay in metrics.csv. The best
epoch is marked on every panel.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from cvtool.files import atomic_write
from cvtool.metrics import family  # noqa: E402

SKIP = {"epoch", "lr", "epoch_seconds", "images_per_second"}
FAMILIES = ("loss", "error", "score")
MARKERS_UP_TO = 30  # epochs; past that, markers only clutter the lines


class PlainLog(LogFormatter):
    """Log-axis labels as plain numbers (0.3, 0.006, 20), on the ticks LogFormatter labels."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def groups(rows: list[dict[str, float]]) -> dict[str, list[str]]:
    """The plotted keys by family, in column order; per-class keys and families with none left out."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in SKIP and "/" not in k))
    found = {name: [k for k in keys if family(k) == name] for name in FAMILIES}
    return {name: found[name] for name in FAMILIES if found[name]}


def spans_a_decade(values: list[float]) -> bool:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) >= 10


def curves(rows: list[dict[str, float]], path: Path, best: dict[str, Any] | None = None) -> Path:
    """One panel per metric family; ``best`` (the summary's {"metric", "epoch", "value"}) is marked."""
    found = groups(rows)
    panels = max(1, len(found))
    fig = Figure(figsize=(4.2 * panels + 0.8, 3.8), constrained_layout=True)  # no pyplot: a notebook keeps its backend
    axes = fig.subplots(1, panels, squeeze=False)
    marker = "o" if len(rows) <= MARKERS_UP_TO else None
    epochs = [r["epoch"] for r in rows if "epoch" in r]
    for ax, (name, keys) in zip(axes[0], found.items()):
        values = []
        for key in keys:
            points = [(r["epoch"], r[key]) for r in rows if key in r and "epoch" in r]
            if points:
                xs, ys = zip(*points)
                values += ys
                ax.plot(xs, ys, marker=marker, markersize=4, label=key)
        if name != "score" and spans_a_decade(values):
            ax.set_yscale("log")
            for axis_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis_formatter(PlainLog(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
            name += " (log scale)"
        mark_best(ax, best)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs:  # half an epoch each side: one epoch is a point in the middle, not at an edge
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    if best and best.get("epoch") is not None and best.get("value") is not None:
        fig.suptitle(f"best {best['metric']} = {best['value']:.4g} at epoch {best['epoch']}", fontsize="medium")
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=100, format=path.suffix.lstrip(".") or "png"))
    return path


def mark_best(ax: Any, best: dict[str, Any] | None) -> None:
    if best and best.get("epoch") is not None:
        ax.axvline(best["epoch"], color="grey", linestyle="--", linewidth=1, label=f"best epoch {best['epoch']}")
