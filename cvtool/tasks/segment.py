"""What every semantic segmenter shares: loss, scores, pictures, the predict loop and its names.

A segmentation task supplies its model, a ``Forward`` (``forward(model, images) -> logits``:
uint8 (B, 3, H, W) images on the device to (B, C, H, W) class scores, normalisation
included) and its dataset's ``Labels`` (class names, palette, void value), which the
dataset module defines; nothing here knows a particular dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms.v2.functional import pil_to_tensor
from torchvision.utils import draw_segmentation_masks

from cvtool.data.images import load_rgb
from cvtool.data.video import Frame
from cvtool.engine import eval_report
from cvtool.engine.task import StepOutput
from cvtool.errors import InputError
from cvtool.files import atomic_write
from cvtool.ops.segmentation_metrics import ConfusionMatrix, background_only_miou
from cvtool.tasks import outputs

Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]
# The first n validation pairs: uint8 (3, H, W) image and its (H, W) label values.
Samples = Callable[[int], list[tuple[torch.Tensor, torch.Tensor]]]
PICTURES = 4
READABLE = 256  # overlays of smaller images are enlarged to this short side


@dataclass(frozen=True)
class Labels:
    """A dataset's labelling: class names, the colour of every label value, the void value.

    ``palette`` is (256, 3) uint8, indexed by label value (void included); ``background``
    is left uncoloured in overlays; ``void_colour`` names void's colour in picture titles.
    """

    names: list[str]
    palette: np.ndarray
    void: int
    background: int | None = 0
    void_colour: str = ""

    def colorize(self, mask: torch.Tensor | np.ndarray) -> np.ndarray:
        """Label values (H, W) to colours (H, W, 3)."""
        return self.palette[np.asarray(mask, dtype=np.uint8)]

    def palette_image(self, mask: np.ndarray) -> Image.Image:
        """Label values as a palette PNG image: the indices, shown in the dataset's colours."""
        img = Image.fromarray(mask.astype(np.uint8), "P")
        img.putpalette(self.palette.tobytes())
        return img

    def present(self, mask: torch.Tensor | np.ndarray) -> list[str]:
        return [self.names[k] for k in np.unique(np.asarray(mask)).tolist() if k < len(self.names)]


def pixel_losses(logits: torch.Tensor, target: torch.Tensor, void: int) -> torch.Tensor:
    """Per-pixel cross-entropy, 0 on void. Summed by the caller: CUDA's summing nll_loss2d
    kernel adds with atomics (no deterministic version), its per-pixel one does not."""
    return F.cross_entropy(logits, target, ignore_index=void, reduction="none")


def train_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], forward: Forward,
               void: int) -> StepOutput:
    """Cross-entropy averaged over the batch's non-void pixels; void changes nothing."""
    images, labels = batch
    target = labels.long()
    logits = forward(model, images)
    valid = target != void
    pixels = valid.sum().clamp(min=1)
    loss = pixel_losses(logits, target, void).sum() / pixels
    acc = ((logits.argmax(1) == target) & valid).sum() / pixels
    n = len(images)
    return StepOutput(loss=loss, count=n, stats={"pixel_acc": (acc.detach() * n, n)})


def make_evaluate(labels: Labels, forward: Forward):
    """Scores from one confusion matrix over all validation pixels (void excluded)."""

    def evaluate(model: nn.Module, batches: Iterable, device: torch.device) -> dict[str, float]:
        matrix = ConfusionMatrix(len(labels.names), device)
        loss = torch.zeros((), device=device)
        pixels = torch.zeros((), device=device, dtype=torch.long)
        for images, truth in batches:
            target = truth.long()
            logits = forward(model, images)
            loss += pixel_losses(logits, target, labels.void).sum()
            pixels += (target != labels.void).sum()
            matrix.update(logits.argmax(1), target)
        if pixels.item() == 0:
            return {}
        s = matrix.scores()
        eval_report.record("confusion", matrix.matrix)
        result = {"val_loss": (loss / pixels).item(), "val_pixel_acc": s.pixel_acc,
                  "val_mean_class_acc": s.mean_class_acc, "val_miou": s.miou,
                  "val_miou_background_only": background_only_miou(matrix.matrix.cpu())}
        result.update({f"val_iou/{name}": v for name, v in zip(labels.names, s.iou) if not math.isnan(v)})
        return result

    return evaluate


@torch.no_grad()
def segment(model: nn.Module, image: torch.Tensor, device: torch.device, forward: Forward) -> torch.Tensor:
    """Class indices (H, W) uint8 on the CPU for one uint8 (3, H, W) image of any size."""
    model.eval()
    logits = forward(model, image[None].to(device))
    return logits.argmax(1)[0].to("cpu", torch.uint8)


def overlay(image: torch.Tensor, mask: torch.Tensor, labels: Labels, alpha: float = 0.5) -> torch.Tensor:
    """uint8 (3, H, W): each class but background and void blended over the image in its colour."""
    shown = [k for k in mask.unique().tolist() if k not in (labels.background, labels.void)]
    if not shown:
        return image
    masks = torch.stack([mask == k for k in shown])
    colours = [tuple(int(v) for v in labels.palette[k]) for k in shown]
    return draw_segmentation_masks(image, masks, alpha=alpha, colors=colours)


# --------------------------------------------------------------------------- pictures


def prediction_grid(model: nn.Module, samples: list[tuple[torch.Tensor, torch.Tensor]], labels: Labels,
                    forward: Forward, device: torch.device, path: Path) -> Path:
    """image | truth | prediction, one row per sample, with a legend of the classes shown."""
    from matplotlib.figure import Figure  # not pyplot: a notebook training this keeps its backend
    from matplotlib.patches import Patch

    rows = len(samples)
    fig = Figure(figsize=(11, 2.8 * rows), constrained_layout=True)
    axes = fig.subplots(rows, 3, squeeze=False)
    truth_title = f"truth (void = {labels.void_colour})" if labels.void_colour else "truth"
    for r, (image, truth) in enumerate(samples):
        pred = segment(model, image, device, forward)
        panels = (image.permute(1, 2, 0).numpy(), labels.colorize(truth), labels.colorize(pred))
        for ax, panel, title in zip(axes[r], panels, ("image", truth_title, "prediction")):
            ax.imshow(panel)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title)
        shown = sorted((set(truth.unique().tolist()) | set(pred.unique().tolist())) - {labels.void})
        legend = [Patch(color=labels.palette[k] / 255, label=labels.names[k]) for k in shown if k < len(labels.names)]
        axes[r][2].legend(handles=legend, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=80, format="png"))
    return path


def to_height(panel: torch.Tensor, height: int, mode: str) -> torch.Tensor:
    """uint8 (3, H, W) scaled to ``height`` rows, aspect kept (masks ``nearest``, so no new colours)."""
    width = max(1, round(panel.shape[-1] * height / panel.shape[-2]))
    scaled = F.interpolate(panel[None].float(), size=(height, width), mode=mode)
    return scaled[0].round().clamp(0, 255).to(torch.uint8)


def mask_grid(model: nn.Module, samples: list[tuple[torch.Tensor, torch.Tensor]], labels: Labels,
              forward: Forward, device: torch.device, height: int = 160, gap: int = 4) -> torch.Tensor:
    """image | truth | prediction, one row per sample, as one uint8 (3, H, W) picture on white."""
    rows = []
    for image, truth in samples:
        pred = segment(model, image, device, forward)
        masks = [torch.from_numpy(labels.colorize(m)).permute(2, 0, 1) for m in (truth, pred)]
        panels = [to_height(image, height, "bilinear"), *(to_height(m, height, "nearest") for m in masks)]
        rows.append(torch.cat([p for panel in panels for p in (panel, white(height, gap))][:-1], dim=2))
    width = max(row.shape[-1] for row in rows)
    padded = [torch.cat([row, white(height, width - row.shape[-1])], dim=2) for row in rows]
    return torch.cat([p for row in padded for p in (row, white(gap, width))][:-1], dim=1)


def white(height: int, width: int) -> torch.Tensor:
    return torch.full((3, height, width), 255, dtype=torch.uint8)


def make_pictures(forward: Forward, labels: Labels, samples: Samples, count: int = PICTURES):
    """The task's ``pictures``: each epoch, the first validation images, their truth and prediction."""
    return lambda model, device: {"predictions": mask_grid(model, samples(count), labels, forward, device)}


def make_finish(forward: Forward, labels: Labels, samples: Samples, count: int = PICTURES):
    """The task's ``finish``: predictions.png for the first ``count`` validation samples."""

    def finish(model: nn.Module, run_dir: Path, device: torch.device) -> dict[str, str]:
        path = prediction_grid(model, samples(count), labels, forward, device, run_dir / "predictions.png")
        return {"predictions": str(path)}

    return finish


# --------------------------------------------------------------------------- predict


def predict(model: nn.Module, paths: list[Path], device: torch.device, options: dict[str, Any],
            labels: Labels, forward: Forward, command: str) -> list[dict[str, Any]]:
    """Write ``<stem>_mask.png`` (palette PNG, the image's size) and ``<stem>_overlay.png`` (with
    a class legend; small images enlarged) for each image into options["out"] (outputs.py's rule).
    Video frames (cvtool.data.video.Frame) come back with their overlay as ``picture`` instead."""
    if paths and all(isinstance(p, Frame) for p in paths):
        return [frame_overlay(model, frame, device, labels, forward) for frame in paths]
    if options.get("out") is None:
        raise InputError(f"{command} predict writes mask pictures: give an output folder with --out DIR")
    out = Path(options["out"])
    files = outputs.plan(out, paths, ("mask", "overlay"), bool(options.get("overwrite")))
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path, planned in zip(paths, files):
        image = pil_to_tensor(load_rgb(path))
        mask = segment(model, image, device, forward)
        outputs.save_png(planned["mask"], labels.palette_image(mask.numpy()))
        picture = outputs.upscale(overlay(image, mask, labels), READABLE)
        outputs.save_png(planned["overlay"], with_legend(picture, mask, labels))
        shares = pixel_shares(mask, labels)
        results.append({"image": str(path), "mask": str(planned["mask"]), "overlay": str(planned["overlay"]),
                        "classes_present": list(shares), "pixel_shares": shares})
    return results


def frame_overlay(model: nn.Module, frame: Frame, device: torch.device, labels: Labels,
                  forward: Forward) -> dict[str, Any]:
    mask = segment(model, frame.pixels, device, forward)
    shares = pixel_shares(mask, labels)
    return {"image": str(frame), "classes_present": list(shares), "pixel_shares": shares,
            "picture": overlay(frame.pixels, mask, labels)}


def pixel_shares(mask: torch.Tensor, labels: Labels) -> dict[str, float]:
    """Each class present and its share of the image's pixels, largest first."""
    values, counts = mask.flatten().long().unique(return_counts=True)
    total = mask.numel()
    shares = {labels.names[k]: round(c / total, 4) for k, c in zip(values.tolist(), counts.tolist())
              if k < len(labels.names)}
    return dict(sorted(shares.items(), key=lambda item: -item[1]))


def with_legend(picture: torch.Tensor, mask: torch.Tensor, labels: Labels) -> Image.Image:
    """The overlay with a strip below it naming each class present in its colour."""
    from PIL import ImageDraw, ImageFont

    height, width = picture.shape[-2:]
    entries = [(f"{labels.names[k]} (untinted)", (255, 255, 255)) if k == labels.background
               else (labels.names[k], tuple(int(v) for v in labels.palette[k]))
               for k in mask.unique().tolist() if k < len(labels.names)]
    size = max(11, min(24, width // 24))
    font = ImageFont.load_default(size=size)
    widths = [size * 2 + round(font.getlength(text)) + size for text, _ in entries]
    rows: list[list[int]] = [[]]
    used = 0
    for i, need in enumerate(widths):  # lay the entries out in lines that fit the picture's width
        if rows[-1] and used + need > width:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += need
    strip = (size + size // 2) * len(rows) + size // 2
    canvas = Image.new("RGB", (width, height + strip), "white")
    canvas.paste(Image.fromarray(picture.permute(1, 2, 0).numpy()), (0, 0))
    pen = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        x, y = size // 2, height + size // 2 + r * (size + size // 2)
        for i in row:
            text, colour = entries[i]
            pen.rectangle((x, y, x + size, y + size), fill=colour, outline=(0, 0, 0))
            pen.text((x + size + size // 3, y + size // 2), text, fill=(0, 0, 0), font=font, anchor="lm")
            x += widths[i]
    return canvas
