"""A trainer's checkpoint state and its exact restoration, kept apart from the loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cvtool
from cvtool import config as cfglib
from cvtool.engine import checkpoint, early_stop
from cvtool.errors import InputError

if TYPE_CHECKING:
    from cvtool.engine.trainer import Trainer


def state(trainer: Trainer, rng: dict[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint holds: plain state dicts and JSON-able values, read with weights_only."""
    return {
        "format": checkpoint.FORMAT,
        "task": trainer.task.name,
        "config": cfglib.to_dict(trainer.cfg),
        "metadata": trainer.task.metadata,
        "epoch": trainer.epoch,
        "step": trainer.step_in_epoch,
        "partial": trainer.partial,
        "skipped": trainer.skipped,
        "model": (trainer.ema.module if trainer.ema else trainer.model).state_dict(),
        **({"raw_model": trainer.model.state_dict(), "ema": trainer.ema.state()} if trainer.ema else {}),
        "recipe": trainer.recipe,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "best": trainer.best,
        "early_stop": trainer.early,
        "metrics": trainer.last_row,
        "rng": rng,
        "cvtool_version": cvtool.__version__,
    }

def restore(trainer: Trainer, ckpt: dict[str, Any]) -> None:
    """Back to where ``state`` was taken: weights, optimizer, schedule, scaler, counters, RNG."""
    if ckpt.get("task") != trainer.task.name:
        raise InputError(f"checkpoint {trainer.run.resume_path} is from {ckpt.get('task')}, not {trainer.task.name}")
    try:
        trainer.model.load_state_dict(ckpt.get("raw_model", ckpt["model"]))
        if trainer.ema is not None and "ema" in ckpt:
            trainer.ema.restore(ckpt["model"], ckpt["ema"])
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise InputError(f"checkpoint {trainer.run.resume_path} does not fit this config's model: "
                         f"{checkpoint.mismatch(exc)}") from None
    trainer.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler") and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(ckpt["scaler"])  # else train.amp changed: fp16 starts a fresh scale
    trainer.epoch = int(ckpt["epoch"])
    trainer.step_in_epoch = int(ckpt["step"])
    trainer.partial = ckpt.get("partial") or {}
    trainer.skipped = int(ckpt.get("skipped", 0))
    trainer.best = dict(ckpt["best"])
    trainer.early = {**early_stop.fresh(), **(ckpt.get("early_stop") or {})}
    early_stop.check_resume(trainer.early, trainer.tc, trainer.run.run_dir)
    trainer.last_row = dict(ckpt.get("metrics") or {})
    checkpoint.set_rng_state(ckpt["rng"], trainer.procs.rank)
