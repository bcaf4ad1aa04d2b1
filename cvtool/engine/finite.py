"""Non-finite numbers caught where the check costs nothing measurable.

The loss is watched per step (``train.on_nan``), but a finite loss can still take a step that
leaves the weights NaN or inf (a huge learning rate): that shows only in the weights and in
validation. So the weights (and the EMA's) are checked at the end of each epoch and before
every checkpoint save, and each epoch's metrics are checked: no checkpoint ever holds
non-finite weights and ``best`` never points at an epoch with a non-finite result.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import nn

from cvtool.errors import CvtoolError


class NonFinite(CvtoolError):
    """Training produced NaN or inf weights or results (exit 1, nothing non-finite saved)."""


def weights_finite(modules: Iterable[nn.Module | None]) -> bool:
    """Every floating parameter and buffer finite; one device sync, agreed over all processes."""
    flags = [torch.isfinite(t).all() for m in modules if m is not None
             for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]
    if not flags:
        return True
    ok = torch.stack(flags).all().float().reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def bad_metrics(row: dict[str, Any]) -> list[str]:
    """The row's numbers that are NaN or inf, e.g. ``val_loss=nan``."""
    return [f"{k}={v}" for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]


def kept(last: Path, epoch: int) -> str:
    if epoch > 0 and last.exists():
        return f"the last finite checkpoint is {last} (epoch {epoch})"
    return "no epoch had finished, so no checkpoint was saved and the same command starts again in this --out"


def check_weights(modules: Iterable[nn.Module | None], epoch: int, lr: float, last: Path, done: int) -> None:
    """Raise when the weights are no longer finite: training cannot continue from them, whatever
    ``train.on_nan`` says (``skip`` drops a batch whose loss is not finite; these were finite)."""
    if not weights_finite(modules):
        raise NonFinite(f"weights became non-finite in epoch {epoch} (lr {lr:.4g}); {kept(last, done)} "
                        "(a lower optim.lr or train.grad_clip often helps)")


def check_epoch(row: dict[str, Any], modules: Iterable[nn.Module | None], on_nan: str, *, epoch: int,
                lr: float, last: Path, done: int) -> bool:
    """After an epoch's validation: raise for non-finite weights, or for non-finite results under
    ``train.on_nan: stop``; False (the epoch may not become ``best``) for non-finite results under
    ``skip``. ``done``: the epochs ``last`` holds."""
    check_weights(modules, epoch, lr, last, done)
    bad = bad_metrics(row)
    if bad and on_nan == "stop":
        raise NonFinite(f"{', '.join(bad)} in epoch {epoch} (lr {lr:.4g}); {kept(last, done)} "
                        "(train.on_nan: skip records such an epoch and goes on; a lower optim.lr often helps)")
    return not bad
