"""curves.png: losses and metrics per epoch, readable without opening the CSV."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cvtool.files import atomic_write  # noqa: E402

SKIP = {"epoch", "lr", "epoch_seconds", "images_per_second"}


def curves(rows: list[dict[str, float]], path: Path) -> Path:
    """Loss panel on the left, every other metric on the right."""
    epochs = [r["epoch"] for r in rows]
    keys = [k for k in (rows[0] if rows else {}) if k not in SKIP]
    losses = [k for k in keys if "loss" in k]
    others = [k for k in keys if k not in losses]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, group, title in ((axes[0], losses, "loss"), (axes[1], others, "metrics")):
        for key in group:
            points = [(e, r[key]) for e, r in zip(epochs, rows) if key in r]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize="small")
    try:
        atomic_write(path, lambda fh: fig.savefig(fh, dpi=100, format=path.suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return path
