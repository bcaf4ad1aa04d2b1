"""What a task gives the shared trainer: the contract is the engine's, tasks fill it in.

A task owns its data, model, loss and metrics; the trainer (cvtool.engine.trainer)
owns everything else: device, precision, optimizer, schedule, checkpoints, resume,
signals, progress and the run directory. Keeping that line sharp is what lets every
command share one loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from cvtool.config import TaskConfig


@dataclass
class StepOutput:
    """One training or validation batch.

    ``stats`` holds per-batch SUMS with the number of items they were summed over;
    the trainer adds them up over the epoch (and over ranks) and reports sum / count
    as ``train_<name>``. Keeping them as tensors avoids a device sync per step.
    """

    loss: torch.Tensor
    count: int
    stats: dict[str, tuple[torch.Tensor, int]] = field(default_factory=dict)


@dataclass
class Task:
    """The parts one command trains with. Build it with the task module's ``build``."""

    name: str
    config: TaskConfig
    model: nn.Module
    train_data: Dataset
    val_data: Dataset
    train_step: Callable[[nn.Module, Any], StepOutput]
    evaluate: Callable[[nn.Module, Any, torch.device], dict[str, float]]
    columns: tuple[str, ...]
    best_metric: str
    best_mode: Literal["max", "min"] = "max"
    collate_fn: Callable | None = None
    param_groups: Callable[[nn.Module], list[dict]] | None = None
    train_mode: Callable[[nn.Module], None] | None = None
    finish: Callable[[nn.Module, Path, torch.device], dict[str, str]] | None = None
    # per-epoch pictures for TensorBoard (tag -> CHW image), called under no_grad with the model in eval mode
    pictures: Callable[[nn.Module, torch.device], dict[str, torch.Tensor]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
