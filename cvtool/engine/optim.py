"""The optimizer and the learning-rate schedule, both built from the typed config.

``optim.lr`` is the learning rate at ``optim.reference_batch`` images a step; a run with
another effective batch (``data.batch_size`` x ``train.accumulate_steps``) scales it by
``optim.lr_scaling``, so changing the batch does not silently change the step.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from cvtool.config import OptimConfig, SchedConfig, TaskConfig
from cvtool.errors import InputError

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def scaling_rule(optim: OptimConfig) -> str:
    """``auto``: linear for SGD (Goyal et al.), square root for the adaptive optimizers."""
    if optim.lr_scaling != "auto":
        return optim.lr_scaling
    return "linear" if optim.name == "sgd" else "sqrt"


def effective_lr(optim: OptimConfig, batch: int) -> float:
    """The learning rate a step on ``batch`` images takes."""
    ratio = batch / optim.reference_batch
    rule = scaling_rule(optim)
    if rule == "linear":
        return optim.lr * ratio
    if rule == "sqrt":
        return optim.lr * math.sqrt(ratio)
    return optim.lr


def recipe(cfg: TaskConfig) -> dict[str, Any]:
    """What the run header, summary.json and config.yaml report about the step size."""
    batch = cfg.data.batch_size * cfg.train.accumulate_steps
    return {"lr": cfg.optim.lr, "reference_batch": cfg.optim.reference_batch, "lr_scaling": scaling_rule(cfg.optim),
            "effective_batch": batch, "effective_lr": effective_lr(cfg.optim, batch)}


def describe(r: dict[str, Any]) -> str:
    if r["lr_scaling"] == "none" or r["effective_batch"] == r["reference_batch"]:
        return f"lr {r['effective_lr']:.6g} at batch {r['effective_batch']}"
    return (f"lr {r['effective_lr']:.6g} at batch {r['effective_batch']} (optim.lr {r['lr']:.6g} at "
            f"reference_batch {r['reference_batch']}, {r['lr_scaling']} scaling)")


def decay_groups(model: nn.Module, groups: list[dict]) -> list[dict]:
    """Each group split in two, normalisation weights and biases at ``decay: False`` (as
    torchvision's ``split_normalization_params`` and timm do): decaying a scale or an offset
    towards 0 only fights the normalisation, it does not regularise."""
    no_decay = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, NORM_LAYERS) or name == "bias":
                no_decay.add(id(p))
    out = []
    for g in groups:
        for decay in (True, False):
            params = [p for p in g["params"] if (id(p) not in no_decay) == decay]
            if params:
                out.append({**g, "params": params, "decay": decay})
    return out


def build_optimizer(groups: list[dict], optim: OptimConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """``groups``: ``params`` with an ``lr_mult`` and a ``decay`` flag (default 1.0 and True);
    ``lr``: the effective learning rate, ``optim.lr`` when not given."""
    lr = optim.lr if lr is None else lr
    params = []
    for g in groups:
        trainable = [p for p in g["params"] if p.requires_grad]
        if trainable:
            params.append({"params": trainable, "lr": lr * g.get("lr_mult", 1.0),
                           "weight_decay": optim.weight_decay if g.get("decay", True) else 0.0})
    if not params:
        raise InputError("the model has no trainable parameters with this config")
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=optim.momentum, nesterov=optim.nesterov,
                               weight_decay=optim.weight_decay)
    if optim.name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=optim.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=optim.weight_decay)


def optimizer_for(model: nn.Module, groups: list[dict], cfg: TaskConfig) -> torch.optim.Optimizer:
    """The optimizer a run trains with: at the effective lr, norms and biases undecayed unless
    ``optim.decay_norm_and_bias``."""
    if not cfg.optim.decay_norm_and_bias:
        groups = decay_groups(model, groups)
    return build_optimizer(groups, cfg.optim, recipe(cfg)["effective_lr"])


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
