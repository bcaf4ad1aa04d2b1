"""What every detector shares: mAP plumbing, pictures, the predict loop and its file names.

A detector task supplies its model, its loss (``train_step``) and one ``Detector``: a
function ``detector(model, images, device) -> list[Detection]`` that turns uint8 (3, H, W)
images of any size into per-image detections in those images' own pixels, kept
detections only, best first. Everything else here works on that and nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2.functional import pil_to_tensor
from torchvision.utils import draw_bounding_boxes, make_grid

from cvtool.data.images import load_rgb
from cvtool.errors import InputError
from cvtool.ops.detection_metrics import MeanAveragePrecision
from cvtool.tasks.outputs import UniqueStems, save_png


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


def class_name(classes: list[str], k: int) -> str:
    return classes[k] if 0 <= k < len(classes) else f"class{k}"


def update_map(meter: MeanAveragePrecision, detections: Iterable[Detection],
               truths: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Add a batch to ``meter``: per image its detections and its true (boxes, labels).

    Any one coordinate system shared by an image's detections and truth will do.
    """
    for found, (boxes, labels) in zip(detections, truths):
        meter.update(found.boxes.cpu(), found.scores.cpu(), found.labels.cpu().long(),
                     boxes.cpu(), labels.cpu().long())


# --------------------------------------------------------------------------- pictures


def draw(image: torch.Tensor, found: Detection, threshold: float, classes: list[str],
         truth: torch.Tensor | None = None, min_side: int = 0) -> torch.Tensor:
    """uint8 (3, H, W) image with true boxes (green) and detections >= threshold (red, scored).

    Boxes are in the image's pixels; the picture is upscaled to at least ``min_side`` pixels
    so small training images stay readable.
    """
    height, width = image.shape[-2:]
    scale = max(1.0, min_side / min(height, width))
    if scale > 1:
        size = (round(height * scale), round(width * scale))
        image = F.interpolate(image[None].float(), size=size, mode="bilinear",
                              align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    stretch = torch.tensor([image.shape[-1] / width, image.shape[-2] / height] * 2)
    line = max(1, round(min(image.shape[-2:]) / 128))
    if truth is not None and truth.numel():
        image = draw_bounding_boxes(image, truth.float().cpu() * stretch, colors="lime", width=line)
    keep = found.scores >= threshold
    if keep.any():
        labels = [f"{class_name(classes, int(k))} {s:.2f}"
                  for k, s in zip(found.labels[keep].tolist(), found.scores[keep].tolist())]
        image = draw_bounding_boxes(image, found.boxes[keep].float().cpu() * stretch, labels=labels,
                                    colors="red", width=line, label_colors="white", fill_labels=True)
    return image


def make_grid_of(detector: Detector, samples: Samples, classes: list[str], threshold: float, count: int = 16):
    """A function drawing the first ``count`` validation images with true and found boxes as one
    uint8 (3, H, W) grid: the picture behind predictions.png and the per-epoch TensorBoard image."""

    def grid(model: nn.Module, device: torch.device) -> torch.Tensor:
        pairs = samples(count)
        found = detect_all(detector, model, [image for image, _ in pairs], device)
        tiles = [draw(image, f, threshold, classes, truth=truth, min_side=256)
                 for (image, truth), f in zip(pairs, found)]
        return make_grid(torch.stack(tiles), nrow=min(4, len(tiles)), padding=4, pad_value=255)

    return grid


def make_finish(detector: Detector, samples: Samples, classes: list[str], threshold: float, count: int = 16):
    """The task's ``finish``: predictions.png, validation images with true and found boxes."""
    grid = make_grid_of(detector, samples, classes, threshold, count)

    def finish(model: nn.Module, run_dir: Path, device: torch.device) -> dict[str, str]:
        return {"predictions": str(save_png(run_dir / "predictions.png", grid(model, device)))}

    return finish


def make_pictures(detector: Detector, samples: Samples, classes: list[str], threshold: float,
                  count: int = EPOCH_PICTURES):
    """The task's ``pictures``: the same grid each epoch, fewer images so event files stay small."""
    grid = make_grid_of(detector, samples, classes, threshold, count)
    return lambda model, device: {"predictions": grid(model, device)}


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
            classes: list[str], threshold: float, out: Path | None = None) -> list[dict[str, Any]]:
    """Boxes scoring >= threshold in each image's own pixels; with ``out``, pictures of them.

    Pictures are drawn on the original image as ``out/<stem>.png`` (stems made unique).
    """
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    names = UniqueStems()
    results = []
    model.eval()
    for path in map(Path, paths):
        image = pil_to_tensor(load_rgb(path))
        found = detect_all(detector, model, [image], device)[0]
        keep = found.scores >= threshold
        boxes = [{"class": class_name(classes, int(k)), "score": round(float(s), 4),
                  "box": [round(v, 1) for v in box]}
                 for k, s, box in zip(found.labels[keep].tolist(), found.scores[keep].tolist(),
                                      found.boxes[keep].tolist())]
        result: dict[str, Any] = {"image": str(path), "boxes": boxes}
        if out is not None:
            picture = draw(image, found, threshold, classes)
            result["drawn"] = str(save_png(out / f"{names(path)}.png", picture))
        results.append(result)
    return results
