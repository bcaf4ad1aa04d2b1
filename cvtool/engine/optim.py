"""The optimizer and the learning-rate schedule, both built from the typed config."""

from __future__ import annotations

import math
from typing import Callable

import torch

from cvtool.config import OptimConfig, SchedConfig
from cvtool.errors import InputError


def build_optimizer(groups: list[dict], optim: OptimConfig) -> torch.optim.Optimizer:
    params = []
    for g in groups:
        trainable = [p for p in g["params"] if p.requires_grad]
        if trainable:
            params.append({"params": trainable, "lr": optim.lr * g.get("lr_mult", 1.0)})
    if not params:
        raise InputError("the model has no trainable parameters with this config")
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov,
                               weight_decay=optim.weight_decay)
    if optim.name == "adam":
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)


def lr_factor(sched: SchedConfig, base_lr: float, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """The schedule as a function of the global step, so it resumes mid-epoch exactly."""
    total = max(1, steps_per_epoch * epochs)
    floor = sched.min_lr / base_lr
    warmup = int(sched.warmup_epochs * steps_per_epoch)
    if sched.name == "onecycle" and warmup == 0:
        warmup = int(0.25 * total)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        if sched.name == "step":
            return sched.gamma ** ((step // steps_per_epoch) // sched.step_size)
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        if sched.name == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if sched.name == "onecycle":
            return floor + (1 - floor) * (1 - t)
        return 1.0

    return factor
