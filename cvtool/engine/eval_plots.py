"""confusion_matrix.png and pr_curves.png, drawn from the numbers ``eval_report`` puts in the JSON.

matplotlib's Figure API (no pyplot): nothing global is touched, so drawing is safe inside
a long-lived process. Both stay legible from 2 classes to the dog breeds' 120: past
``FULL_UP_TO`` classes the matrix keeps only the classes in the largest confusions and lists
those confusions beside it; past ``LEGEND_UP_TO`` curves only the best and worst are named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cvtool.files import atomic_write

FULL_UP_TO = 30  # classes drawn as a whole matrix, every cell written in
TOP_CONFUSIONS = 20  # listed for more classes than that
SHOWN_CLASSES = 24  # drawn then: those of the largest confusions, as many as fit
LEGEND_UP_TO = 12  # curves named in the legend; past that the best and worst few
NAMED_EACH_END = 5


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=100, format="png"))
    return path


def short(count: float) -> str:
    """A cell's count in at most 4 characters: pixel counts run to millions."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.0f}{unit}" if count >= 10 * size else f"{count / size:.1f}{unit}"
    return f"{count:.0f}"


def largest_confusions(rows: list[list[float]], counts: list[list[int]], n: int) -> list[tuple[int, int]]:
    """(true, predicted) off-diagonal cells with the most items, the larger share first on a tie."""
    cells = [(i, j) for i, row in enumerate(counts) for j, v in enumerate(row) if i != j and v > 0]
    return sorted(cells, key=lambda ij: (-counts[ij[0]][ij[1]], -rows[ij[0]][ij[1]]))[:n]


def involved(cells: list[tuple[int, int]], most: int) -> set[int]:
    """The classes of the first cells, stopping before a cell would bring in more than ``most``."""
    found: set[int] = set()
    for cell in cells:
        if len(found | set(cell)) > most:
            break
        found |= set(cell)
    return found


def confusion(numbers: dict[str, Any], path: Path, counts: bool = False) -> Path:
    """Rows = true class normalised to 1 (the colour); cells write the share, or the count with ``counts``."""
    names, rows, raw = numbers["classes"], numbers["confusion_matrix"], numbers["confusion_counts"]
    total = sum(map(sum, raw))
    hits = sum(raw[i][i] for i in range(len(raw)))
    title = f"confusion matrix: {len(names)} classes, accuracy {hits / total:.3f} over {short(total)}" if total else \
        "confusion matrix: nothing counted"
    if len(names) <= FULL_UP_TO:
        shown = list(range(len(names)))
        fig = Figure(figsize=(max(4.5, 0.42 * len(names) + 2.8), max(3.8, 0.42 * len(names) + 2.2)),
                     constrained_layout=True)
        ax = fig.add_subplot()
    else:
        top = largest_confusions(rows, raw, TOP_CONFUSIONS)
        shown = sorted(involved(top, SHOWN_CLASSES))
        if not shown:  # every item right: nothing to draw but the fact
            fig = Figure(figsize=(6, 2))
            fig.text(0.5, 0.5, f"{title}\nno confusions", ha="center", va="center")
            return save(fig, path)
        side = 0.42 * len(shown) + 2.8
        fig = Figure(figsize=(side + 5, side), constrained_layout=True)
        ax, listing = fig.subplots(1, 2, width_ratios=(side, 5))
        list_confusions(listing, top, names, rows, raw)
        title += f"; drawn: the {len(shown)} classes of its largest confusions"
    draw_matrix(ax, [[rows[i][j] for j in shown] for i in shown], [[raw[i][j] for j in shown] for i in shown],
                [names[i] for i in shown], counts and len(shown) <= FULL_UP_TO, len(shown) <= FULL_UP_TO)
    fig.suptitle(title, fontsize="medium")
    return save(fig, path)


def draw_matrix(ax: Any, rows: list[list[float]], raw: list[list[int]], names: list[str], counts: bool,
                written: bool) -> None:
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1, aspect="equal")
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    ticks = range(len(names))
    size = "small" if len(names) <= 12 else "x-small"
    ax.set_xticks(ticks, names, rotation=90 if max(map(len, names), default=0) > 3 else 0, fontsize=size)
    ax.set_yticks(ticks, names, fontsize=size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if not written:
        return
    for i, row in enumerate(rows):
        for j, share in enumerate(row):
            if raw[i][j] or (i == j and sum(raw[i])):
                text = short(raw[i][j]) if counts else f"{share:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if share > 0.5 else "black")


def list_confusions(ax: Any, top: list[tuple[int, int]], names: list[str], rows: list[list[float]],
                    raw: list[list[int]]) -> None:
    """The largest confusions as bars of the true class's share, largest on top."""
    labels = [f"{names[i]} → {names[j]} ({raw[i][j]})" for i, j in top]
    ax.set_axisbelow(True)
    ax.barh(range(len(top)), [rows[i][j] for i, j in top], height=0.6, color="#c62828")
    ax.set_yticks(range(len(top)), labels, fontsize="x-small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the true class")
    ax.set_title("largest confusions: true → predicted (items)", fontsize="small")
    ax.grid(axis="x", alpha=0.3)


def pr_curves(numbers: dict[str, Any], path: Path) -> Path:
    """One interpolated curve per class (the one its AP averages), AP in the legend, the mean in black."""
    recall, classes = numbers["recall_points"], numbers["per_class"]
    fig = Figure(figsize=(7.5 if len(classes) > LEGEND_UP_TO else 6.5, 5), constrained_layout=True)
    ax = fig.add_subplot()
    ranked = sorted(classes.items(), key=lambda kv: -kv[1]["ap50"])
    named = {n for n, _ in ranked} if len(ranked) <= LEGEND_UP_TO else \
        {n for n, _ in ranked[:NAMED_EACH_END] + ranked[-NAMED_EACH_END:]}
    for name, c in ranked:
        if name in named:
            ax.plot(recall, c["precision"], linewidth=1.5, label=f"{name}  AP50 {c['ap50']:.3f}")
        else:
            ax.plot(recall, c["precision"], linewidth=0.8, color="0.75")
    if len(ranked) > 1:
        mean = [sum(c["precision"][k] for _, c in ranked) / len(ranked) for k in range(len(recall))]
        ax.plot(recall, mean, color="black", linewidth=2.5, label=f"all classes  mAP50 {sum(mean) / len(mean):.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    rest = "" if len(ranked) <= LEGEND_UP_TO else f" ({len(ranked) - len(named)} middle classes in grey)"
    count = f"{len(ranked)} class" + ("es" if len(ranked) != 1 else "")
    ax.set_title(f"precision-recall at IoU {numbers['iou']:g}, {count}{rest}", fontsize="medium")
    if ranked:
        ax.legend(fontsize="small", loc="lower left" if len(ranked) <= 4 else "center left",
                  bbox_to_anchor=None if len(ranked) <= 4 else (1.01, 0.5))
    return save(fig, path)
