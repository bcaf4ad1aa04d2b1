"""Validation loaders and metrics: training's per-epoch validation and ``cvtool eval`` share them."""

from __future__ import annotations

import signal
from itertools import islice
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader

from cvtool.engine import eval_report, runtime
from cvtool.engine.placement import place, to_device
from cvtool.engine.task import Task


def ignore_sigint(_worker_id: int) -> None:
    """Workers leave Ctrl-C to the main process, which saves before it stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def loader_options(task: Task, device: torch.device) -> dict[str, Any]:
    """What the training and validation loaders share."""
    workers = task.config.data.num_workers
    return dict(collate_fn=task.collate_fn, pin_memory=device.type == "cuda", num_workers=workers,
                worker_init_fn=ignore_sigint if workers else None)


def val_loader(task: Task, device: torch.device, batch_size: int | None = None) -> DataLoader:
    return DataLoader(task.val_data, batch_size=batch_size or task.config.data.batch_size, shuffle=False,
                      **loader_options(task, device))


def evaluate(task: Task, net: nn.Module, loader: DataLoader, device: torch.device, dtype: torch.dtype | None,
             channels_last: bool, batches: int | None = None) -> dict[str, float]:
    """The task's metrics over the first ``batches`` batches of ``loader`` (all by default).

    Training's validation and ``cvtool eval`` both come here, so a checkpoint scores the
    same in both; the caller puts the model in eval mode.
    """
    stream: Iterable = (to_device(b, device, channels_last) for b in islice(loader, batches))
    with torch.no_grad(), runtime.autocast(device, dtype):
        return task.evaluate(net, stream, device)


def score(task: Task, device: torch.device, batch_size: int | None = None,
          details: dict[str, Any] | None = None) -> dict[str, float]:
    """``cvtool eval``: the whole validation set, the model placed as training places it
    (an export's adapter may need another batch size than the config's); ``details`` takes
    what ``eval_report`` collects (a confusion matrix, the mAP meter)."""
    tc = task.config.train
    model = place(task.model, device, tc).eval()
    runtime.configure(device, tc.deterministic)
    with eval_report.collecting() as held:
        metrics = evaluate(task, model, val_loader(task, device, batch_size), device,
                           runtime.amp_dtype(device, tc.amp), tc.channels_last)
    if details is not None:
        details.update(held)
    return metrics


def pictures(task: Task, net: nn.Module, loader: DataLoader, device: torch.device, dtype: torch.dtype | None,
             channels_last: bool, out_dir: Path, batches: int | None = None) -> dict[str, str]:
    """The end of training: the best model's confusion matrix or PR curves over the whole
    validation set, written into the run directory (nothing without a validation set)."""
    with eval_report.collecting() as held:
        evaluate(task, net, loader, device, dtype, channels_last, batches)
    return eval_report.write(held, task.metadata.get("classes"), out_dir)[1]
