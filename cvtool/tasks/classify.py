"""Image classification pieces shared by finetune-hotdog, train-cifar and train-dog.

The three commands differ in data and model; the loss, the metrics, the fine-tuning
parameter groups and prediction are the same, so they live here once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from cvtool import config as c
from cvtool.data.images import load_rgb
from cvtool.engine.task import StepOutput

COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc")
NUM_CLASSES_HELP = "output classes; auto = the number of classes in the data (a number must agree with it)"
NumClasses = int | Literal["auto"]


@dataclass
class Loss:
    """The training objective."""

    label_smoothing: float = c.opt(0.0, "cross-entropy label smoothing (validation loss is plain "
                                   "cross-entropy)", ge=0, lt=1)


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
    n = 0
    for x, y in batches:
        logits = model(x).float()
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    if n == 0:
        return {}
    return {"val_loss": (loss / n).item(), "val_acc": (correct / n).item()}


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
            x = transform(load_rgb(path)).unsqueeze(0).to(device)
            probs = model(x).float().softmax(1)[0]
            values, indices = probs.topk(min(top, len(classes)))
            ranked = [{"class": classes[i], "probability": round(v, 6)} for v, i in zip(values.tolist(), indices.tolist())]
            results.append({"image": str(path), "class": ranked[0]["class"],
                            "probability": ranked[0]["probability"], "top": ranked})
    return results
