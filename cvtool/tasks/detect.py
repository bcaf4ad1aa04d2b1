"""What every detector shares: mAP plumbing, pictures, the predict loop and its file names.

A detector task supplies its model, its loss (``train_step``) and one ``Detector``: a
function ``detector(model, images, device) -> list[Detection]`` that turns uint8 (3, H, W)
images of any size into per-image detections in those images' own pixels, kept
detections only, best first. Everything else here works on that and nothing more.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor
from torchvision.utils import draw_bounding_boxes, make_grid

from cvtool import config as c
from cvtool.data import bananas, detection, voc_detection
from cvtool.data.box_dataset import Augment, BoxDataset, decoded_bytes
from cvtool.data.detection import Splits
from cvtool.data.images import load_rgb
from cvtool.data.records import Source
from cvtool.data.video import Frame
from cvtool.errors import InputError
from cvtool.files import atomic_write
from cvtool.ops.detection_metrics import MeanAveragePrecision
from cvtool.tasks import outputs
from cvtool.tasks.specs.detect import DetectionData


class Detection(NamedTuple):
    """One image's detections: (N, 4) corner boxes (x1, y1, x2, y2), (N,) scores, (N,) labels.

    Labels index the task's class names (background is not a class here).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


Detector = Callable[[nn.Module, list[torch.Tensor], torch.device], list[Detection]]
# The first n validation images as (uint8 (3, H, W), true boxes (M, 4) in its pixels) pairs.
Samples = Callable[[int], list[tuple[torch.Tensor, torch.Tensor]]]
EPOCH_PICTURES = 8  # images in the per-epoch TensorBoard grid


def update_map(meter: MeanAveragePrecision, detections: Iterable[Detection],
               truths: Iterable[tuple[torch.Tensor, ...]]) -> None:
    """Add a batch to ``meter``: per image its detections and its true (boxes, labels[, difficult]).

    Any one coordinate system shared by an image's detections and truth will do; difficult
    boxes (VOC) are neither hits nor misses.
    """
    for found, truth in zip(detections, truths):
        meter.update(found.boxes.cpu(), found.scores.cpu(), found.labels.cpu().long(), *truth)


def per_class_ap50(meter: MeanAveragePrecision, classes: list[str]) -> dict[str, float]:
    """``val_ap50/<name>`` for each class with ground truth: the per-class figures, named as the data names them."""
    first = next(i for i, t in enumerate(meter.iou_thresholds) if abs(t - 0.5) < 1e-9)
    return {f"val_ap50/{outputs.class_name(classes, c)}": float(ap[first]) for c, ap in meter.per_class().items()}


def truths(labels: torch.Tensor, size: float = 1,
           difficult: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Padded label rows (B, M, 5) to each image's true (boxes x size, classes, difficult flags or None)."""
    real = [lab[:, 0] >= 0 for lab in labels]
    flags = [None] * len(real) if difficult is None else [d[keep] for d, keep in zip(difficult, real)]
    return [(lab[keep, 1:] * size, lab[keep, 0].long(), f) for lab, keep, f in zip(labels, real, flags)]


# --------------------------------------------------------------------------- data


def read_source(d: DetectionData) -> Source:
    """``d.root``'s records through the shared readers, fetched first when missing and ``d.download`` allows."""
    from cvtool.data import hub

    root = Path(d.root)
    if not root.exists() and d.format in ("auto", "bananas", "voc"):
        name, layout = (("voc2012", voc_detection.LAYOUT) if d.format == "voc"
                        else ("banana-detection", bananas.LAYOUT))
        hub.ensure(root, name, d.download, layout)
    splits = Splits(d.train_split, d.val_split, d.train_images, d.val_images)
    return detection.read(root, d.format, splits=splits, classes=d.classes, skip=d.on_bad_image == "skip")


def use_cache(d: DetectionData, images: int) -> tuple[bool, str]:
    """data.cache resolved for ``images`` decoded at image_size, and why, for the run header."""
    need = decoded_bytes(images, d.image_size)
    if d.cache != "auto":
        return d.cache == "on", f"data.cache {d.cache}"
    budget = min(d.cache_budget_mb * 2**20, available_memory() // 2)
    verdict = "on" if need <= budget else "off: images decode as they are needed"
    return need <= budget, f"data.cache auto: {verdict} ({need / 2**20:.0f} MB decoded vs {budget / 2**20:.0f} MB budget)"


def available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**33


def prepare(cfg: Any) -> tuple[Any, BoxDataset, BoxDataset, dict[str, Any]]:
    """The config with data.classes and model.num_classes taken from the data, both splits, and metadata.

    Items are {"image": uint8 (3, S, S), "labels": (M, 5) [class, x1, y1, x2, y2] / S, -1 padded,
    "difficult": (M,) crowd/difficult flags}.
    """
    d = cfg.data
    source = read_source(d)
    for split in ("train", "val"):
        if not source.splits.get(split):
            raise InputError(f"{d.root}: the {split} split holds no image")
    shown = ", ".join(source.classes[:4]) + (", ..." if len(source.classes) > 4 else "")
    cfg = c.with_num_classes(cfg, len(source.classes), f"{d.root} ({source.format}; data.classes: {shown})")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(d, classes=list(source.classes)))
    cache, why = use_cache(d, sum(len(r) for r in source.splits.values()))
    skip = d.on_bad_image == "skip"
    train = BoxDataset(source.splits["train"], d.image_size, cache=cache, skip_bad=skip, where=f"{d.root} train",
                       augment=Augment(flip=d.flip, scale_jitter=d.scale_jitter))
    val = BoxDataset(source.splits["val"], d.image_size, cache=cache, skip_bad=skip, where=f"{d.root} val")
    metadata = {"classes": list(source.classes), "image_size": d.image_size, "format": source.format,
                "skipped_images": source.skipped + train.skipped + val.skipped,
                "data": "; ".join([*source.notes, why])}
    return cfg, train, val, metadata


def class_total(cfg: Any) -> int:
    """model.num_classes for a model built without reading the data (a checkpoint's config holds both)."""
    names = cfg.data.classes
    return c.class_count(cfg.model.num_classes, 1 if isinstance(names, str) else len(names))


def first_samples(data: Dataset) -> Samples:
    """A validation split's first images with their true boxes in pixels, for predictions.png."""

    def samples(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        items = [data[i] for i in range(min(n, len(data)))]  # type: ignore[arg-type]
        return [(item["image"], truths(item["labels"][None], item["image"].shape[-1])[0][0]) for item in items]

    return samples


# --------------------------------------------------------------------------- pictures


TRUTH, FOUND = "lime", "red"


def draw(image: torch.Tensor, found: Detection, threshold: float, classes: list[str],
         truth: torch.Tensor | None = None, min_side: int = 256) -> torch.Tensor:
    """uint8 (3, H, W) image with true boxes (green) and detections >= threshold (red, scored).

    Boxes are in the image's pixels; the picture is upscaled to at least ``min_side`` pixels
    so that labels on small images stay readable. When no detection reaches the threshold,
    the best one is drawn faded and labelled as below it, so an empty tile is not a mystery.
    """
    height, width = image.shape[-2:]
    image = outputs.upscale(image, min_side)
    stretch = torch.tensor([image.shape[-1] / width, image.shape[-2] / height] * 2)
    line = max(1, round(min(image.shape[-2:]) / 128))
    if truth is not None and truth.numel():
        image = draw_bounding_boxes(image, truth.float().cpu() * stretch, colors=TRUTH, width=line)
    keep = found.scores >= threshold
    if keep.any():
        labels = [f"{outputs.class_name(classes, int(k))} {s:.2f}"
                  for k, s in zip(found.labels[keep].tolist(), found.scores[keep].tolist())]
        return draw_bounding_boxes(image, found.boxes[keep].float().cpu() * stretch, labels=labels,
                                   colors=FOUND, width=line, label_colors="white", fill_labels=True)
    if len(found.scores):
        best = int(found.scores.argmax())
        label = f"{outputs.class_name(classes, int(found.labels[best]))} {float(found.scores[best]):.2f} < {threshold:.2f}"
        boxed = draw_bounding_boxes(image, found.boxes[best:best + 1].float().cpu() * stretch, labels=[label],
                                    colors=FOUND, width=line, label_colors="white", fill_labels=True)
        image = ((image.float() + boxed.float()) / 2).round().to(torch.uint8)  # half-way: faded
    return image


def make_grid_of(detector: Detector, samples: Samples, classes: list[str], threshold: float, count: int = 16):
    """A function drawing the first ``count`` validation images with true and found boxes as one
    uint8 (3, H, W) grid: the picture behind predictions.png and the per-epoch TensorBoard image."""

    def grid(model: nn.Module, device: torch.device) -> torch.Tensor:
        pairs = samples(count)
        found = detect_all(detector, model, [image for image, _ in pairs], device)
        tiles = [draw(image, f, threshold, classes, truth=truth)
                 for (image, truth), f in zip(pairs, found)]
        return make_grid(torch.stack(tiles), nrow=min(4, len(tiles)), padding=4, pad_value=255)

    return grid


def make_finish(detector: Detector, samples: Samples, classes: list[str], threshold: float, count: int = 16):
    """The task's ``finish``: predictions.png, validation images with true and found boxes."""
    grid = make_grid_of(detector, samples, classes, threshold, count)

    def finish(model: nn.Module, run_dir: Path, device: torch.device) -> dict[str, str]:
        return {"predictions": str(titled_grid(grid(model, device), threshold, run_dir / "predictions.png"))}

    return finish


def make_pictures(detector: Detector, samples: Samples, classes: list[str], threshold: float,
                  count: int = EPOCH_PICTURES):
    """The task's ``pictures``: the same grid each epoch, fewer images so event files stay small."""
    grid = make_grid_of(detector, samples, classes, threshold, count)
    return lambda model, device: {"predictions": grid(model, device)}


def titled_grid(grid: torch.Tensor, threshold: float, path: Path) -> Path:
    """The tiles under a title that states the draw threshold and a legend of the colours."""
    from matplotlib.figure import Figure  # not pyplot: a notebook training this keeps its backend
    from matplotlib.patches import Patch

    height, width = grid.shape[-2:]
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi + 0.9), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, height / (height + 0.9 * dpi)))
    ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.set_axis_off()
    fig.suptitle(f"validation images: predictions with score >= {threshold:.2f} (the draw threshold)",
                 y=1 - 0.15 / (height / dpi + 0.9), va="top", fontsize="large")
    legend = [Patch(facecolor="none", edgecolor=TRUTH, linewidth=2, label="truth"),
              Patch(facecolor="none", edgecolor=FOUND, linewidth=2, label=f"prediction >= {threshold:.2f}"),
              Patch(facecolor="none", edgecolor="#ff8080", linewidth=2,
                    label="best prediction below it (faded; on tiles with none above)")]
    fig.legend(handles=legend, loc="upper center", ncol=3, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.5 / (height / dpi + 0.9)), fontsize="medium")
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=dpi, format="png"))
    return path


@torch.no_grad()
def detect_all(detector: Detector, model: nn.Module, images: list[torch.Tensor],
               device: torch.device) -> list[Detection]:
    """``detector`` on CPU results, with gradients off."""
    return [Detection(*(t.cpu() for t in d)) for d in detector(model, images, device)]


# --------------------------------------------------------------------------- predict


def threshold_of(options: dict[str, Any], default: float) -> float:
    """``--threshold`` (or the config's draw threshold), checked."""
    threshold = float(options.get("threshold", default))
    if not 0 <= threshold <= 1:
        raise InputError(f"--threshold must lie in [0, 1], got {threshold}")
    return threshold


def predict(detector: Detector, model: nn.Module, paths: list[Path], device: torch.device,
            classes: list[str], threshold: float, out: Path | None = None,
            overwrite: bool = False) -> list[dict[str, Any]]:
    """Boxes scoring >= threshold in each image's own pixels; with ``out``, pictures of them.

    Pictures (``out/<stem>_boxes.png``, the outputs.py naming rule) are drawn on the image,
    enlarged to at least 256 pixels a side so that labels stay readable.
    """
    files = outputs.plan(out, paths, ("boxes",), overwrite) if out is not None else [{} for _ in paths]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results = []
    model.eval()
    for path, planned in zip((p if isinstance(p, Frame) else Path(p) for p in paths), files):
        image = path.pixels if isinstance(path, Frame) else pil_to_tensor(load_rgb(path))
        found = detect_all(detector, model, [image], device)[0]
        keep = found.scores >= threshold
        boxes = [{"class": outputs.class_name(classes, int(k)), "score": round(float(s), 4),
                  "box": [round(v, 1) for v in box]}
                 for k, s, box in zip(found.labels[keep].tolist(), found.scores[keep].tolist(),
                                      found.boxes[keep].tolist())]
        result: dict[str, Any] = {"image": str(path), "boxes": boxes}
        if isinstance(path, Frame):  # a video frame: drawn at its own size
            result["picture"] = draw(image, found, threshold, classes, min_side=0)
        if planned:
            result["drawn"] = str(outputs.save_png(planned["boxes"], draw(image, found, threshold, classes)))
        results.append(result)
    return results
