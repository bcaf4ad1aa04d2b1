"""One training run, start to end: processes, device, seeds, the task's build, then fit.

The CLI resolves its flags into a typed config and calls ``train``; everything about how
the run executes (torchrun ranks, barriers around dataset preparation, seeding) is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from cvtool import config as cfglib
from cvtool.engine import checkpoint, rundir, runtime
from cvtool.engine.progress import Reporter
from cvtool.engine.task import Task
from cvtool.engine.trainer import Run, Trainer
from cvtool.errors import InputError, Interrupted

RESUME_LAST = "@last"
RESUME_LOCKED = ("optim", "sched")


@dataclass
class Result:
    run_dir: Path
    summary: dict[str, Any]
    main: bool  # only the main process reports
    reporter: Reporter


def resume_source(resume: str, out: str | None) -> tuple[Path, str]:
    """The checkpoint to resume and the run directory it belongs to."""
    if resume == RESUME_LAST:
        if out is None:
            raise InputError("--resume without a path needs --out RUN_DIR (the run to continue)")
        path = Path(out) / "checkpoints" / "last.pt"
        if not path.exists():
            raise InputError(f"nothing to resume: {path} does not exist")
    else:
        path = Path(resume)
        if not path.exists():
            raise InputError(f"nothing to resume: checkpoint {path} does not exist")
    checkpoint.load(path)
    return path, out if out is not None else str(path.parent.parent)


def check_resumable(cfg: Any, ckpt: dict[str, Any], path: Path) -> None:
    """--resume restores the saved optimizer and schedule, so their settings cannot change under it."""
    now, saved = cfglib.to_dict(cfg), ckpt["config"]
    for section in RESUME_LOCKED:
        for key, value in now.get(section, {}).items():
            before = saved.get(section, {}).get(key, value)
            if before != value:
                raise InputError(f"{section}.{key} is {value!r} but checkpoint {path} was trained with {before!r}; "
                                 f"--resume continues the saved optimizer and schedule, so "
                                 f"{' and '.join(s + '.*' for s in RESUME_LOCKED)} cannot change "
                                 "(start a new run to train with other settings)")


def where(run_dir: Path, resume_from: dict[str, Any] | None) -> str:
    """Where this run writes; a resumed one says where in the run it picks up."""
    if resume_from is None:
        return f"writing {run_dir}"
    return f"resuming {run_dir} at epoch {int(resume_from['epoch']) + 1}, step {int(resume_from['step'])}"


def build_once(build: Callable[..., Task], cfg: cfglib.TaskConfig, procs: runtime.Processes) -> Task:
    """Rank 0 builds first (it may download or cache the dataset); the others wait, then read it."""
    if not procs.main:
        runtime.barrier()
    task = build(cfg, rank_zero=procs.main)
    if procs.main:
        runtime.barrier()
    return task


def train(command: str, build: Callable[..., Task], cfg: cfglib.TaskConfig, *, out: str | None,
          argv: list[str], stream: TextIO, resume_from: dict[str, Any] | None = None,
          resume_path: Path | None = None,
          on_stop: Callable[[str, Path, BaseException], None] | None = None) -> Result:
    """Train ``command``'s task; ``on_stop(status, run_dir, exc)`` hears of an interrupted or
    failed run on the main process before the exception goes on."""
    procs = runtime.processes_from_env()
    dev = runtime.select_device(cfg.train.device, procs.local_rank)
    runtime.init_processes(procs, dev)
    try:
        run_dir = runtime.broadcast(rundir.choose(command, out, resuming=resume_from is not None)
                                    if procs.main else None)
        runtime.seed_everything(cfg.train.seed)
        reporter = Reporter(stream, quiet=not procs.main)
        task = build_once(build, cfg, procs)
        runtime.seed_everything(cfg.train.seed + procs.rank)
        run = Run(run_dir=run_dir, device=dev, argv=argv, resume_from=resume_from, resume_path=resume_path,
                  procs=procs)
        fit = Trainer(task, run, reporter)  # its checks need the task; they write nothing
        reporter.info(f"{command}: {len(task.train_data)} train / {len(task.val_data)} val items on {dev}"
                      f"{f' x {procs.world} processes' if procs.distributed else ''}; {where(run_dir, resume_from)}")
        try:
            summary = fit.fit()
        except Interrupted as exc:
            if on_stop is not None and procs.main:
                on_stop("interrupted", run_dir, exc)
            raise
        except Exception as exc:
            if on_stop is not None and procs.main:
                on_stop("failed", run_dir, exc)
            raise
    finally:
        runtime.close_processes()
    return Result(run_dir=run_dir, summary=summary, main=procs.main, reporter=reporter)
