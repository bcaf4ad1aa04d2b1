"""One training run, start to end: processes, device, seeds, the task's build, then fit.

The CLI resolves its flags into a typed config and calls ``train``; everything about how
the run executes (torchrun ranks, barriers around dataset preparation, seeding) is here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from cvtool import config as cfglib
from cvtool import metrics
from cvtool.engine import checkpoint, lock, optim, placement, rundir, runtime, threads
from cvtool.engine.progress import Reporter
from cvtool.engine.task import Task
from cvtool.engine.trainer import Run, Trainer
from cvtool.errors import InputError, Interrupted

RESUME_LAST = "@last"
RESUME_LOCKED = ("optim", "sched")
RESUME_LOCKED_KEYS = ("train.accumulate_steps", "train.ema_decay", "train.ema_warmup")


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
            raise InputError(rundir.nothing_to_resume(Path(out)))
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
    for dotted in RESUME_LOCKED_KEYS:
        section, key = dotted.split(".")
        value = now[section][key]
        before = saved.get(section, {}).get(key, value)
        if before != value:
            raise InputError(f"{dotted} is {value!r} but checkpoint {path} was trained with {before!r}; "
                             "--resume continues that run exactly, so it cannot change (start a new run)")
    check_effective_lr(cfg, ckpt, path)


def check_effective_lr(cfg: Any, ckpt: dict[str, Any], path: Path) -> None:
    """A new data.batch_size would rescale the lr under the saved optimizer (optim.* is already
    known to be the checkpoint's)."""
    now = optim.recipe(cfg)
    before, old = saved_effective_lr(cfg, ckpt)
    if before is not None and not math.isclose(now["effective_lr"], before, rel_tol=1e-9):
        raise InputError(f"this config trains at {optim.describe(now)} but checkpoint {path} trained at lr "
                         f"{before:.6g}; --resume continues the saved optimizer, so the effective lr cannot change "
                         + ("(it predates optim.lr_scaling: --set optim.lr_scaling=none continues it as it was)"
                            if old else "(keep data.batch_size, or start a new run)"))


def saved_effective_lr(cfg: Any, ckpt: dict[str, Any]) -> tuple[float | None, bool]:
    """(the lr the checkpoint trained at, whether it predates optim.lr_scaling: then optim.lr itself)."""
    if "recipe" in ckpt:
        return ckpt["recipe"]["effective_lr"], False
    saved = ckpt["config"]
    if "lr_scaling" not in saved.get("optim", {}):
        return saved.get("optim", {}).get("lr"), True
    batch = saved.get("data", {}).get("batch_size", cfg.data.batch_size)
    return optim.effective_lr(cfg.optim, batch * saved.get("train", {}).get("accumulate_steps", 1)), False


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


def thread_policy(cfg: cfglib.TaskConfig, procs: runtime.Processes) -> threads.Policy:
    """``train.threads``; processes that torchrun starts on one machine share its CPUs."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", procs.world)))
    choice = threads.choose(cfg.train.threads, cfg.data.num_workers, cpus=max(1, threads.usable_cpus() // local),
                            fixed=cfg.train.deterministic)
    return threads.Policy(choice)


def header(command: str, task: Task, dev: Any, procs: runtime.Processes, policy: threads.Policy,
           where_to: str, recipe: str) -> str:
    """The run's first line: sizes, where and how the math runs, where the files go, and what the
    task chose about its data (metadata["data"]: the layout found, the cache)."""
    dtype = runtime.amp_dtype(dev, task.config.train.amp)
    how = [str(dtype).removeprefix("torch.") if dtype else "fp32",
           "channels_last" if task.config.train.channels_last is True else "NCHW",
           f"{policy.choice.describe()} threads"]
    return (f"{command}: {len(task.train_data)} train / {len(task.val_data)} val items on {dev}"
            f"{f' x {procs.world} processes' if procs.distributed else ''} ({', '.join(how)}); {recipe}; {where_to}"
            + (f"; {task.metadata['data']}" if task.metadata.get("data") else ""))


def train(command: str, build: Callable[..., Task], cfg: cfglib.TaskConfig, *, out: str | None,
          argv: list[str], stream: TextIO, resume_from: dict[str, Any] | None = None,
          resume_path: Path | None = None,
          on_stop: Callable[[str, Path | None, BaseException], None] | None = None,
          family: str | None = None, gates: Sequence[metrics.Gate] = (), quiet: bool = False) -> Result:
    """Train ``command``'s task; ``on_stop(status, run_dir, exc)`` hears of an interrupted or
    failed run on the main process before the exception goes on (run_dir None: none yet).

    Until the trainer takes over, SIGINT/SIGTERM stop at once (nothing is written yet); from
    then on they stop at the next step (cvtool.engine.runtime.StopFlag). ``family`` (the task's)
    picks ``train.channels_last: auto``; ``gates``' metrics are checked against the task's before
    training starts (the caller applies them to the result); ``quiet`` keeps the run from reporting at all."""
    procs = runtime.processes_from_env()
    with runtime.StopFlag(immediate=True) as stop:
        try:
            return start(command, build, cfg, procs, stop, out=out, argv=argv, stream=stream,
                         resume_from=resume_from, resume_path=resume_path, on_stop=on_stop, family=family,
                         gates=gates, quiet=quiet)
        except KeyboardInterrupt as exc:
            name = exc.args[0] if isinstance(exc, runtime.Signalled) else "SIGINT"
            error = Interrupted(f"{name} received during start-up, before the first step; no checkpoint "
                                "was written, so run the same command again to start")
            if on_stop is not None and procs.main:
                on_stop("interrupted", None, error)
            raise error from None


def start(command: str, build: Callable[..., Task], cfg: cfglib.TaskConfig, procs: runtime.Processes,
          stop: runtime.StopFlag, *, out: str | None, argv: list[str], stream: TextIO,
          resume_from: dict[str, Any] | None, resume_path: Path | None,
          on_stop: Callable[[str, Path | None, BaseException], None] | None, family: str | None,
          gates: Sequence[metrics.Gate], quiet: bool = False) -> Result:
    dev = runtime.select_device(cfg.train.device, procs.local_rank, world=procs.world)
    cfg.train.channels_last = placement.channels_last_for(cfg.train.channels_last, dev, family)
    policy = thread_policy(cfg, procs)
    runtime.configure(dev, cfg.train.deterministic)  # before build, which may run the GPU (train-dog's cache)
    runtime.init_processes(procs, dev)
    resuming = resume_from is not None
    held = None
    try:
        if procs.main:  # the lock first: a folder in use is never mistaken for someone else's files
            path = rundir.target(command, out)
            if not (path / lock.NAME).exists():  # not in use: refuse a folder that is not ours before touching it
                rundir.check_out(path, resuming, reuse=True)
            held = lock.RunLock(path).acquire(argv)
            rundir.check_out(path, resuming, reuse=True)
        run_dir = runtime.broadcast(held.run_dir if held else None)
        runtime.seed_everything(cfg.train.seed)
        reporter = Reporter(stream, quiet=quiet or not procs.main)
        task = build_once(build, cfg, procs)
        runtime.seed_everything(cfg.train.seed + procs.rank)
        run = Run(run_dir=run_dir, device=dev, argv=argv, resume_from=resume_from, resume_path=resume_path,
                  procs=procs, threads=policy)
        fit = Trainer(task, run, reporter)  # its checks need the task; they write nothing
        metrics.require_known(gates, fit.columns[1:], command)
        runtime.pause_point("start-up")
        with stop.held():  # never half moved
            aside = rundir.set_aside(run_dir) if procs.main and not resuming else None
        reporter.info(header(command, task, dev, procs, policy, where(run_dir, resume_from), optim.describe(fit.recipe))
                      + (f" (the earlier attempt's files are in {aside})" if aside else ""))
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
        if held is not None:
            held.release()
        runtime.close_processes()
    return Result(run_dir=run_dir, summary=summary, main=procs.main, reporter=reporter)
