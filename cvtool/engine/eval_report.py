"""What a validation pass saw beyond its scalar metrics: a confusion matrix, precision-recall curves.

A task's ``evaluate`` returns numbers; while a caller holds ``collecting()``, it also hands
its confusion matrix (classifiers, segmenters) or its mAP meter (detectors) to ``record``.
Training's per-epoch validation collects nothing; ``cvtool eval`` and the end of training
do, and turn what was collected into ``confusion_matrix.png`` or ``pr_curves.png`` plus the
same numbers for the JSON. A context variable rather than a new ``evaluate`` argument keeps
every task's signature (plugins' included) as it was.
"""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from cvtool.files import atomic_write, json_text
from cvtool.ops.detection_metrics import RECALL_POINTS, MeanAveragePrecision

_held: ContextVar[dict[str, Any] | None] = ContextVar("eval_details", default=None)
PR_IOU = 0.5


@contextlib.contextmanager
def collecting() -> Iterator[dict[str, Any]]:
    """The dict the evaluate calls inside fill in: "confusion" (C, C) counts or "detections"."""
    held: dict[str, Any] = {}
    token = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(token)


def wanted() -> bool:
    """Whether an evaluate call should keep what ``record`` takes (it may skip the work if not)."""
    return _held.get() is not None


def record(kind: str, value: Any) -> None:
    """``kind`` "confusion": rows = truth, columns = prediction; "detections": a MeanAveragePrecision."""
    held = _held.get()
    if held is not None:
        held[kind] = value.detach().cpu() if isinstance(value, torch.Tensor) else value


def names_for(classes: Sequence[Any] | None, count: int) -> list[str]:
    """The data's class names, or the indices where the task has none (or too few)."""
    given = [str(c) for c in classes or []]
    return given + [str(i) for i in range(len(given), count)]


def confusion_numbers(counts: torch.Tensor, names: list[str]) -> dict[str, Any]:
    """Rows normalised (each true class sums to 1; a class absent from the truth is all 0),
    the raw counts, and per class precision, recall and support (NaN where undefined)."""
    m = counts.double()
    truth, predicted, hits = m.sum(1), m.sum(0), m.diagonal()
    rows = torch.where(truth[:, None] > 0, m / truth.clamp(min=1)[:, None], torch.zeros_like(m))
    per_class = {name: {"precision": _ratio(hits[i], predicted[i]), "recall": _ratio(hits[i], truth[i]),
                        "support": int(truth[i])} for i, name in enumerate(names)}
    return {"classes": names, "confusion_matrix": rows.tolist(), "confusion_counts": counts.long().tolist(),
            "per_class": per_class}


def pr_numbers(meter: MeanAveragePrecision, names: list[str]) -> dict[str, Any]:
    """Per class at IoU 0.5: AP, the highest recall reached, and the curve AP is the mean of."""
    curves = meter.curves(PR_IOU)
    return {"iou": PR_IOU, "recall_points": RECALL_POINTS.tolist(),
            "per_class": {names[c]: {"ap50": v["ap"], "max_recall": v["max_recall"], "num_gt": v["num_gt"],
                                     "precision": v["precision"].tolist()} for c, v in curves.items()}}


def _ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a / b) if b > 0 else math.nan


def write(details: dict[str, Any], classes: Sequence[Any] | None, out_dir: Path,
          counts: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """The numbers for the JSON and the files written into ``out_dir`` (name -> path): the
    picture and the same numbers beside it (``confusion_matrix.json``, ``pr_curves.json``)."""
    from cvtool.engine import eval_plots  # matplotlib only once a picture is drawn

    if "confusion" in details:
        matrix = details["confusion"]
        numbers = confusion_numbers(matrix, names_for(classes, matrix.shape[0]))
        picture = eval_plots.confusion(numbers, out_dir / "confusion_matrix.png", counts)
    elif "detections" in details:
        meter = details["detections"]
        known = max([*meter.num_gt, *meter.scores, -1]) + 1
        numbers = {"pr_curves": pr_numbers(meter, names_for(classes, known))}
        picture = eval_plots.pr_curves(numbers["pr_curves"], out_dir / "pr_curves.png")
    else:
        return {}, {}
    data = atomic_write(picture.with_suffix(".json"), json_text(numbers, indent=1) + "\n")
    return numbers, {picture.stem: str(picture), f"{picture.stem}_json": str(data)}
