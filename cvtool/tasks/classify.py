"""Image classification pieces shared by finetune-hotdog, train-cifar and train-dog.

The three commands differ in data and model; the loss, the metrics, the fine-tuning
parameter groups and prediction are the same, so they live here once.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import make_grid

from cvtool.data.images import load_rgb
from cvtool.data.video import Frame, image_of
from cvtool.engine import eval_report
from cvtool.engine.task import StepOutput
from cvtool.ops.segmentation_metrics import counts
from cvtool.tasks import outputs

COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc")


def train_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
               label_smoothing: float = 0.0) -> StepOutput:
    """Cross-entropy and accuracy of one batch; ``label_smoothing`` softens the training loss only."""
    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    correct = (logits.argmax(1) == y).sum()
    return StepOutput(loss=loss, count=len(y), stats={"acc": (correct, len(y))})


def smoothed_step(label_smoothing: float) -> Callable[[nn.Module, Any], StepOutput]:
    """``train_step`` with ``loss.label_smoothing``."""
    if not label_smoothing:
        return train_step
    return functools.partial(train_step, label_smoothing=label_smoothing)


def evaluate(model: nn.Module, batches: Iterable, device: torch.device) -> dict[str, float]:
    """Loss and accuracy over the whole validation set (summed, then divided once)."""
    loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    confusion = Confusion()
    n = 0
    for x, y in batches:
        logits = model(x).float()
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        confusion.update(logits, y)
        n += len(y)
    if n == 0:
        return {}
    confusion.record()
    return {"val_loss": (loss / n).item(), "val_acc": (correct / n).item()}


class Confusion:
    """The (classes, classes) counts of argmax against truth, kept only while a caller collects
    (``cvtool eval``, the end of training): per-epoch validation pays nothing for it."""

    def __init__(self) -> None:
        self.counts: torch.Tensor | None = None
        self.wanted = eval_report.wanted()

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        if self.wanted:
            batch = counts(logits.argmax(1), y, logits.shape[1])
            self.counts = batch if self.counts is None else self.counts + batch

    def record(self) -> None:
        if self.counts is not None:
            eval_report.record("confusion", self.counts)


def head_groups(model: nn.Module, head: nn.Module, head_lr_mult: float) -> list[dict]:
    """The new output layer learns ``head_lr_mult`` times faster than the pretrained body."""
    head_ids = {id(p) for p in head.parameters()}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": body, "lr_mult": 1.0}, {"params": list(head.parameters()), "lr_mult": head_lr_mult}]


def freeze(model: nn.Module, keep: nn.Module) -> Callable[[nn.Module], None]:
    """Freeze all of ``model`` but ``keep``; returns the train-mode hook that keeps frozen
    BatchNorm layers in eval mode, so their running statistics stay the pretrained ones."""
    keep_ids = {id(p) for p in keep.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep_ids)

    def train_mode(m: nn.Module) -> None:
        m.eval()
        keep.train()

    return train_mode


def xavier_head(in_features: int, num_classes: int) -> nn.Linear:
    head = nn.Linear(in_features, num_classes)
    nn.init.xavier_uniform_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def predict_images(model: nn.Module, transform: Callable, classes: list[str], paths: list[Path],
                   device: torch.device, top: int = 5) -> list[dict[str, Any]]:
    results = []
    model.eval()
    with torch.no_grad():
        for path in paths:
            x = transform(image_of(path)).unsqueeze(0).to(device)
            probs = model(x).float().softmax(1)[0]
            values, indices = probs.topk(min(top, len(classes)))
            ranked = [{"class": classes[i], "probability": round(v, 6)} for v, i in zip(values.tolist(), indices.tolist())]
            results.append({"image": str(path), "class": ranked[0]["class"],
                            "probability": ranked[0]["probability"], "top": ranked})
            if isinstance(path, Frame):  # a video frame: the top class written on it
                top1 = f"{ranked[0]['class']} {ranked[0]['probability']:.2f}"
                results[-1]["picture"] = labelled_frame(path.pixels, top1)
    return results


def labelled_frame(pixels: torch.Tensor, text: str) -> torch.Tensor:
    """uint8 (3, H, W) with ``text`` in white on a dark band at its top left, sized to the frame."""
    image = TF.to_pil_image(pixels)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, image.height // 18))
    *_, right, bottom = draw.textbbox((6, 4), text, font=font)
    draw.rectangle((0, 0, right + 6, bottom + 4), fill=(0, 0, 0))
    draw.text((6, 4), text, fill=(255, 255, 255), font=font)
    return TF.pil_to_tensor(image)


# --------------------------------------------------------------------------- pictures

EPOCH_PICTURES, PICTURE_POOL = 8, 64  # tiles on the board; validation images looked through
TILE, CAPTION = 144, 30  # tile side and the caption band under it, pixels
WRONG, RIGHT = "#c62828", "#2e7d32"
Sample = tuple[torch.Tensor, torch.Tensor, int]  # (picture, uint8 CHW; model input; label)
Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def spread(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)``: a class-sorted folder shows every class."""
    if total <= n:
        return list(range(total))
    return [round(i * (total - 1) / (n - 1)) for i in range(n)] if n > 1 else [0]


def file_samples(items: Sequence[tuple[Path, int]], transform: Callable) -> Callable[[int], list[Sample]]:
    """Validation images read from their files: the picture as stored, the input as evaluated."""

    def samples(n: int) -> list[Sample]:
        picked = []
        for i in spread(len(items), n):
            path, label = items[i]
            image = load_rgb(path)
            picked.append((TF.pil_to_tensor(image), transform(image), int(label)))
        return picked

    return samples


def tensor_samples(images: torch.Tensor, labels: torch.Tensor) -> Callable[[int], list[Sample]]:
    """Validation images already decoded (uint8), which are also the model's input."""

    def samples(n: int) -> list[Sample]:
        return [(images[i].cpu(), images[i], int(labels[i])) for i in spread(len(labels), n)]

    return samples


def captioned(image: torch.Tensor, lines: list[tuple[str, str]]) -> torch.Tensor:
    """The image as a TILE-sided square (short side scaled, centre cut) over coloured caption lines."""
    square = TF.center_crop(TF.resize(image, TILE, antialias=True), [TILE, TILE])
    tile = Image.new("RGB", (TILE, TILE + CAPTION), "white")
    tile.paste(TF.to_pil_image(square), (0, 0))
    draw, font = ImageDraw.Draw(tile), ImageFont.load_default(size=11)
    for row, (text, colour) in enumerate(lines):
        while draw.textlength(text, font=font) > TILE - 6 and len(text) > 4:
            text = text[:-2] + "…"
        draw.text((3, TILE + 2 + 13 * row), text, fill=colour, font=font)
    return TF.pil_to_tensor(tile)


def make_pictures(samples: Callable[[int], list[Sample]], classes: Sequence[str],
                  forward: Forward = lambda model, x: model(x), count: int = EPOCH_PICTURES,
                  pool: int = PICTURE_POOL):
    """The task's ``pictures``: among the same ``pool`` validation images each epoch, the
    misclassified ones, most confident first, captioned with prediction and truth; correct
    ones (in green) fill the grid when fewer than ``count`` are wrong."""
    held: list[Sample] = []

    def pictures(model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        if not held:
            held.extend(samples(pool))  # read once, on the first epoch that draws
        if not held:
            return {}  # no validation split (data.split: train_valid)
        inputs = torch.stack([x for _, x, _ in held]).to(device)
        probs, preds = forward(model, inputs).float().softmax(1).max(1)
        labels = torch.tensor([y for _, _, y in held])
        wrong = preds.cpu() != labels
        order = sorted(range(len(held)), key=lambda i: (not wrong[i], -float(probs[i])))[:count]
        tiles = [captioned(held[i][0], [(f"{outputs.class_name(classes, int(preds[i]))} {float(probs[i]):.2f}",
                                         WRONG if wrong[i] else RIGHT),
                                        (f"true: {outputs.class_name(classes, int(labels[i]))}", "black")]) for i in order]
        return {"misclassified": make_grid(torch.stack(tiles), nrow=4, padding=4, pad_value=255)}

    return pictures
