"""``data check`` for detection: what the training readers see in a folder, and what is wrong with it.

The same readers as training (detection.read), told to collect problems instead of stopping
at the first, so a clean check means training reads every object. The report has the shape
seg_check's has: {"format", "root", "classes", "splits": {split: stats}, "problems": [{split,
file, message}]}. Problems: what a reader refused (each named by file and object or line),
labels without images, duplicate images (by content hash) within and across splits. Images
without labels are counted, not a problem: COCO and YOLO keep them as negatives.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torchvision.ops import box_iou

from cvtool.data import detection, yolo
from cvtool.data.images import IMAGE_SUFFIXES
from cvtool.data.records import Issues, Problem, Record, Source


@dataclass
class Checked:
    """The report and what its pictures need: per split, boxes (N, 4) divided by their image's size."""

    report: dict[str, Any]
    boxes: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]


def check(root: str | Path, *, fmt: str = "auto", classes: Sequence[str] | str = "auto",
          anchors: torch.Tensor | None = None) -> Checked:
    """Read ``root`` collecting problems; ``anchors`` (A, 4) in [0, 1] adds each split's share of boxes
    that no anchor overlaps at IoU >= 0.5 (the SSD's training could never match them)."""
    issues = Issues(collect=True)
    source = detection.read(root, fmt, classes=classes, issues=issues)
    problems = list(issues.found)
    problems += orphan_labels(source)
    problems += duplicates(source)
    boxes = {split: normalised(records) for split, records in source.splits.items()}
    labels = {split: torch.tensor([k for r in records for k in r.labels], dtype=torch.int64)
              for split, records in source.splits.items()}
    splits = {split: split_stats(records, source.classes, boxes[split], anchors)
              for split, records in source.splits.items()}
    report = {"format": source.format, "root": str(source.root), "classes": list(source.classes),
              "notes": source.notes, "splits": splits, "problems": [p.as_dict() for p in problems]}
    return Checked(report, boxes, labels)


def normalised(records: list[Record]) -> torch.Tensor:
    rows = [[x1 / w, y1 / h, x2 / w, y2 / h] for r in records for (x1, y1, x2, y2), (w, h) in
            zip(r.boxes, [r.size] * len(r.boxes))]
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


def split_stats(records: list[Record], classes: list[str], boxes: torch.Tensor,
                anchors: torch.Tensor | None) -> dict[str, Any]:
    counts = Counter(k for r in records for k in r.labels)
    pixels = torch.tensor([[x2 - x1, y2 - y1] for r in records for x1, y1, x2, y2 in r.boxes],
                          dtype=torch.float64).reshape(-1, 2)
    stats: dict[str, Any] = {
        "images": len(records), "objects": int(sum(counts.values())),
        "objects_per_class": {name: counts.get(k, 0) for k, name in enumerate(classes)},
        "crowd_objects": sum(sum(r.crowd) for r in records),
        "images_without_labels": sum(not r.boxes for r in records),
        "box_width_px": spread(pixels[:, 0]), "box_height_px": spread(pixels[:, 1]),
        "box_side_share": spread(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()),
    }
    if anchors is not None:
        stats["unreached_by_anchors"] = unreached(boxes, anchors)
    return stats


def spread(values: torch.Tensor) -> dict[str, float] | None:
    if values.numel() == 0:
        return None
    return {"min": round(float(values.min()), 4), "median": round(float(values.median()), 4),
            "max": round(float(values.max()), 4)}


def unreached(boxes: torch.Tensor, anchors: torch.Tensor, threshold: float = 0.5) -> float | None:
    """The share of boxes whose best anchor has IoU < threshold (advice: SSD assigns by IoU)."""
    if boxes.numel() == 0:
        return None
    best = torch.cat([box_iou(chunk.float(), anchors.float()).amax(dim=1) for chunk in boxes.split(4096)])
    return round(float((best < threshold).double().mean()), 4)


def orphan_labels(source: Source) -> list[Problem]:
    """YOLO label files that no image of their split has (the other layouts name images in their labels)."""
    if source.format != "yolo":
        return []
    problems = []
    for split, records in source.splits.items():
        used = {yolo.label_file(r.image) for r in records}
        for folder in sorted({p.parent for p in used}):
            for label in sorted(folder.glob("*.txt")):
                if label not in used and not any(label.with_suffix(s).exists() for s in IMAGE_SUFFIXES):
                    problems.append(Problem(split, str(label), "a label file without an image"))
    return problems


def digest(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def duplicates(source: Source) -> list[Problem]:
    """Images with the same bytes: twice in a split, or in two splits (validation would score training images)."""
    seen: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for split, records in source.splits.items():
        for record in records:
            seen[digest(record.image)].append((split, record.image))
    problems = []
    for copies in seen.values():
        if len(copies) < 2:
            continue
        (first_split, first), rest = copies[0], copies[1:]
        for split, path in rest:
            if path.resolve() == first.resolve() and split == first_split:
                continue
            where = "in the same split" if split == first_split else f"in {first_split} and {split}"
            problems.append(Problem(split, str(path), f"the same image as {first} ({where})"))
    return problems


def plot(checked: Checked, path: str | Path) -> Path:
    """The class histogram per split, box centres and box sizes (as shares of their image's side)."""
    from matplotlib.figure import Figure  # not pyplot: a notebook keeps its matplotlib backend

    from cvtool.files import atomic_write

    report = checked.report
    classes = report["classes"]
    fig = Figure(figsize=(15, 4.6))
    hist, centres, sizes = fig.subplots(1, 3)
    width = 0.8 / max(1, len(report["splits"]))
    for k, (split, stats) in enumerate(report["splits"].items()):
        counts = [stats["objects_per_class"][name] for name in classes]
        hist.bar([i + k * width for i in range(len(classes))], counts, width, label=f"{split} ({stats['objects']})")
        b = checked.boxes[split]
        if len(b):
            centres.scatter((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, s=4, alpha=0.4, label=split)
            sizes.scatter(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], s=4, alpha=0.4, label=split)
    hist.set_xticks([i + 0.4 - width / 2 for i in range(len(classes))], classes,
                    rotation=90 if len(classes) > 8 else 0, fontsize="small" if len(classes) > 20 else "medium")
    hist.set(title="objects per class", ylabel="objects")
    centres.set(title="box centres (share of image width, height)", xlim=(0, 1), ylim=(1, 0), aspect="equal")
    sizes.set(title="box sizes (share of image width, height)", xlabel="width", ylabel="height",
              xlim=(0, 1), ylim=(0, 1), aspect="equal")
    for ax in (hist, centres, sizes):
        ax.legend(fontsize="small")
    fig.suptitle(f"{report['root']} ({report['format']}): {len(report['problems'])} problem(s)")
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=100, format="png"))
    return path
