"""The one training loop every task shares.

The task supplies data, model, loss and metrics (cvtool.engine.task.Task); this module
supplies device placement, precision, optimizer and schedule, checkpoints and exact
resume, Ctrl-C handling, progress and the run directory's records.
"""

from __future__ import annotations

import math
import shlex
import signal
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from cvtool import config as cfglib
from cvtool.engine import checkpoint, early_stop, ema, finite, plots, resume, rundir, runtime, tensorboard
from cvtool.engine.evaluation import evaluate, loader_options, pictures, val_loader
from cvtool.engine.optim import describe, lr_factor, optimizer_for, recipe
from cvtool.engine.placement import no_sync, place, to_device, wrap
from cvtool.engine.progress import Reporter
from cvtool.engine.sampling import EpochSampler
from cvtool.engine.task import Task
from cvtool.engine.threads import Policy as ThreadPolicy
from cvtool.errors import CvtoolError, InputError, Interrupted

FIXED_TAIL = ("lr", "epoch_seconds", "images_per_second")


@dataclass
class Run:
    """Where a run writes and what it continues from."""

    run_dir: Path
    device: torch.device
    argv: list[str]
    resume_from: dict[str, Any] | None = None
    resume_path: Path | None = None
    procs: runtime.Processes = runtime.Processes()
    threads: ThreadPolicy | None = None  # train.threads, adapted between steps


class Trainer:
    def __init__(self, task: Task, run: Run, reporter: Reporter):
        self.task = task
        self.cfg = task.config
        self.run = run
        self.reporter = reporter
        self.device = run.device
        tc: cfglib.TrainConfig = self.cfg.train
        self.tc = tc
        self.dtype = runtime.amp_dtype(self.device, tc.amp)
        runtime.configure(self.device, tc.deterministic)

        self.procs = run.procs
        self.main = self.procs.main
        self.model = place(task.model, self.device, tc, self.procs)
        self.net, self.eval_net = wrap(self.model, self.device, tc, self.procs)
        self.ema = ema.create(self.model, tc)

        data = self.cfg.data
        if data.batch_size % self.procs.world:
            raise InputError(f"data.batch_size {data.batch_size} (the global batch) must be divisible by "
                             f"the {self.procs.world} processes")
        self.rank_batch = data.batch_size // self.procs.world
        self.sampler = EpochSampler(len(task.train_data), tc.seed, batch_size=data.batch_size,
                                    rank=self.procs.rank, world=self.procs.world)
        self.loader_gen = torch.Generator()
        self.train_loader = DataLoader(task.train_data, batch_size=self.rank_batch, sampler=self.sampler,
                                       generator=self.loader_gen, **loader_options(task, self.device))
        self.val_loader = val_loader(task, self.device)
        self.steps_per_epoch = self.limit(len(self.train_loader))
        if self.steps_per_epoch == 0:
            raise InputError("the training set is empty")
        self.updates_per_epoch = -(-self.steps_per_epoch // tc.accumulate_steps)

        self.recipe = recipe(self.cfg)
        groups = task.param_groups(self.model) if task.param_groups else [{"params": list(self.model.parameters())}]
        self.optimizer = optimizer_for(self.model, groups, self.cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(
            self.cfg.sched, self.recipe["effective_lr"], self.updates_per_epoch, tc.epochs))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

        self.columns = ["epoch", *task.columns, *FIXED_TAIL]
        self.metrics = rundir.MetricsLog(run.run_dir / "metrics.csv", self.columns)
        self.ckpt_dir = run.run_dir / "checkpoints"
        self.best: dict[str, Any] = {"metric": task.best_metric, "mode": task.best_mode, "value": None, "epoch": None}
        self.last_row: dict[str, Any] = {}
        self.epoch = 0
        self.step_in_epoch = 0
        self.partial: dict[str, Any] = {}
        self.skipped = 0
        self.poisoned = False
        self.early = early_stop.fresh()
        self.epoch_lr = self.optimizer.param_groups[0]["lr"]
        self.board = tensorboard.Board(None)

    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step_in_epoch

    def limit(self, n: int) -> int:
        return n if self.tc.max_steps is None else min(n, self.tc.max_steps)

    # ------------------------------------------------------------------ state

    def state(self, rng: dict[str, Any] | None) -> dict[str, Any]:
        return resume.state(self, rng)

    def restore(self, ckpt: dict[str, Any]) -> None:
        resume.restore(self, ckpt)

    def weights(self) -> list[nn.Module | None]:
        return [self.model, self.ema.module if self.ema else None]

    def save(self, name: str) -> Path:
        """No checkpoint ever holds non-finite weights (cvtool.engine.finite)."""
        path = self.ckpt_dir / name
        runtime.pause_point("save")
        finite.check_weights(self.weights(), self.epoch + (self.step_in_epoch > 0), self.epoch_lr,
                             self.ckpt_dir / "last.pt", self.epoch)
        rng = checkpoint.all_rng_states()  # a collective: every rank gives its generators
        if self.main:
            checkpoint.save(self.state(rng), path)
        return path

    # ------------------------------------------------------------------ loop

    def fit(self) -> dict[str, Any]:
        """Train to the end; from here on SIGINT/SIGTERM stop at the next step, never mid-write."""
        with runtime.StopFlag() as stop:
            return self.fit_until(stop)

    def fit_until(self, stop: runtime.StopFlag) -> dict[str, Any]:
        run_dir = self.run.run_dir
        if self.main:
            run_dir.mkdir(parents=True, exist_ok=True)
        resume = self.run.resume_from
        if resume is not None:
            self.restore(resume)
            if self.epoch >= self.tc.epochs and self.step_in_epoch == 0:
                raise InputError(f"{run_dir} already finished {self.epoch} epoch(s); "
                                 f"pass --epochs N with N > {self.epoch} to train further")
        if self.main:
            rundir.write_config(run_dir / "config.yaml", cfglib.to_dict(self.cfg),
                                comment=f"this run trained at {describe(self.recipe)}")
            env = rundir.environment(self.device, self.tc.seed, self.run.argv)
            env["processes"] = self.procs.world
            env["precision"] = str(self.dtype).removeprefix("torch.") if self.dtype else "fp32"
            env["channels_last"] = self.tc.channels_last
            if self.run.threads is not None:
                env["threads"] = self.run.threads.record()
            rundir.write_json(run_dir / "env.json", env)
            self.metrics.start(keep_through_epoch=self.epoch)
        self.board = tensorboard.Board.for_run(run_dir, getattr(self.cfg, "log", None), self.main,
                                               self.global_step() if resume is not None else None)
        try:
            while self.epoch < self.tc.epochs and self.early["stopped"] is None:
                self.train_epoch(stop)
            return self.complete()
        except Interrupted:
            self.write_summary("interrupted")
            raise
        except BaseException as exc:
            self.write_summary("failed", error=str(exc) or type(exc).__name__)
            raise
        finally:
            self.board.close()

    def train_epoch(self, stop: runtime.StopFlag) -> None:
        epoch = self.epoch + 1
        start_step = self.step_in_epoch
        self.sampler.set_epoch(epoch, start=start_step * self.rank_batch)
        self.loader_gen.manual_seed(self.tc.seed * 7919 + epoch)
        sums: dict[str, list] = {k: [torch.as_tensor(v[0], device=self.device), int(v[1])]
                                 for k, v in self.partial.get("stats", {}).items()}
        images = int(self.partial.get("images", 0))
        seconds = float(self.partial.get("seconds", 0.0))
        (self.task.train_mode or nn.Module.train)(self.model)
        self.reporter.start_epoch(epoch, self.tc.epochs, self.steps_per_epoch, done=start_step)
        self.epoch_lr = self.optimizer.param_groups[0]["lr"]
        began = time.perf_counter()
        step, group = start_step, self.tc.accumulate_steps
        for batch in islice(self.train_loader, self.steps_per_epoch - start_step):
            if self.run.threads is not None:
                self.run.threads.tick()
            first = step - step % group
            out = self.train_step(batch, step - first, min(group, self.steps_per_epoch - first))
            step += 1
            if out is None:
                self.skipped += 1
                self.reporter.step()
            else:
                images += out.count
                self.add_stats(sums, out)
                self.board.train_step((epoch - 1) * self.steps_per_epoch + step, out.loss,
                                      self.optimizer.param_groups[0]["lr"])
                self.check_loss(sums["loss"][0], epoch, step)
                self.reporter.step(f"loss {out.loss.item():.4f}" if step % 10 == 0 and not self.reporter.plain else "")
            if step < self.steps_per_epoch and step % group == 0 and self.stopping(stop, step // group):
                seconds += time.perf_counter() - began
                self.step_in_epoch = step
                self.partial = {"stats": {k: [v[0].cpu(), v[1]] for k, v in sums.items()},
                                "images": images, "seconds": seconds}
                self.interrupt(stop)
        seconds += time.perf_counter() - began
        images = self.reduce_sums(sums, images)
        row: dict[str, Any] = {"epoch": epoch}
        row.update({f"train_{k}": (v[0] / max(1, v[1])).item() for k, v in sums.items()})
        row.update(self.validate())
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["epoch_seconds"] = seconds
        row["images_per_second"] = images / seconds if seconds > 0 else None
        extra = {k: v for k, v in row.items() if k not in self.columns}  # e.g. per-class IoU
        self.last_row = {k: v for k, v in row.items() if k in self.columns}
        if self.main:
            self.metrics.append(self.last_row)
        clean = finite.check_epoch(row, self.weights(), self.tc.on_nan, epoch=epoch, lr=self.epoch_lr,
                                   last=self.ckpt_dir / "last.pt", done=self.epoch)
        self.epoch, self.step_in_epoch, self.partial = epoch, 0, {}
        if early_stop.update(self.early, row.get(self.task.best_metric), clean, self.task.best_mode, self.tc, epoch):
            self.reporter.info(f"stopping early: no gain of {self.task.best_metric} > {self.tc.min_delta:g} in "
                               f"{self.early['since']} epochs (train.patience)")
        self.board.epoch(self.last_row, self.global_step(),
                         self.task.pictures and (lambda: self.task.pictures(self.model, self.device)))
        if clean and self.improved(row.get(self.task.best_metric)):
            self.best.update(value=row[self.task.best_metric], epoch=epoch, extra=extra, row=self.last_row)
            self.save("best.pt")
        self.save("last.pt")
        self.write_summary("running")
        self.reporter.end_epoch(epoch, self.tc.epochs, self.last_row)
        if self.stopping(stop) and self.epoch < self.tc.epochs:
            self.interrupt(stop, saved=True)

    def add_stats(self, sums: dict[str, list], out: Any) -> None:
        for name, (value, count) in {"loss": (out.loss.detach() * out.count, out.count), **out.stats}.items():
            if name in sums:
                sums[name] = [sums[name][0] + value.detach().float(), sums[name][1] + count]
            else:
                sums[name] = [value.detach().float(), count]

    def train_step(self, batch: Any, micro: int = 0, group: int = 1):
        """Micro-batch ``micro`` of an accumulation group of ``group``: its gradient (of the loss
        / group, so the group's gradient is the mean), then after the last one the update.
        None when its loss was not finite and ``train.on_nan: skip`` drops the group's update."""
        runtime.pause_point("step")
        batch = to_device(batch, self.device, self.tc.channels_last)
        if micro == 0:
            self.optimizer.zero_grad(set_to_none=True)
            self.poisoned = False
        last = micro == group - 1
        with no_sync(self.net, accumulating=not last):
            with runtime.autocast(self.device, self.dtype):
                out = self.task.train_step(self.net, batch)
            bad = self.tc.on_nan == "skip" and not self.finite(out.loss)
            self.poisoned |= bad
            if not self.poisoned:
                self.scaler.scale(out.loss / group).backward()
        if last:
            self.update()
        return None if bad else out

    def update(self) -> None:
        if not self.poisoned:
            if self.tc.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.scheduler.last_epoch)
        self.scheduler.step()

    def check_loss(self, loss_sum: torch.Tensor, epoch: int, step: int) -> None:
        """``train.on_nan: stop``; on an accelerator only every 10 steps, to spare a sync per step."""
        every = 1 if self.device.type == "cpu" else 10
        if self.tc.on_nan != "stop" or (step % every and step != self.steps_per_epoch):
            return
        if not self.finite(loss_sum):
            last = self.ckpt_dir / "last.pt"
            kept = f"{last} holds the last good epoch" if last.exists() else "no epoch had finished, so nothing was saved"
            raise CvtoolError(f"the loss became {loss_sum.item()} at epoch {epoch} step {step}; {kept} "
                              "(train.on_nan: skip drops such batches; a lower optim.lr often helps)")

    def finite(self, loss: torch.Tensor) -> bool:
        """Agreed over every process, so all of them skip or stop together."""
        flag = torch.isfinite(loss.detach()).float().reshape(1)
        if self.procs.distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def stopping(self, stop: runtime.StopFlag, step: int | None = None) -> bool:
        """Whether any process was asked to stop: all ranks must leave at the same step, so
        they agree on it every 10 steps (a collective each step would cost a sync each)."""
        if not self.procs.distributed:
            return bool(stop)
        if step is not None and step % 10:
            return False
        flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def reduce_sums(self, sums: dict[str, list], images: int) -> int:
        """Epoch sums and counts over every process, so what is reported is global."""
        if not self.procs.distributed:
            return images
        names = sorted(sums)
        values = torch.stack([sums[k][0].float() for k in names] + [torch.tensor(float(images), device=self.device)])
        counts = torch.tensor([float(sums[k][1]) for k in names], device=self.device)
        dist.all_reduce(values)
        dist.all_reduce(counts)
        for i, k in enumerate(names):
            sums[k] = [values[i], int(counts[i].item())]
        return int(values[-1].item())

    def validate(self) -> dict[str, float]:
        """On the main process over the whole validation set (exact, whatever the world size)."""
        metrics: dict[str, float] = {}
        if self.main:
            self.model.eval()
            net = self.eval_net if self.ema is None else self.ema.module
            metrics = evaluate(self.task, net, self.val_loader, self.device, self.dtype,
                               self.tc.channels_last, self.limit(len(self.val_loader)))
        return runtime.broadcast(metrics)

    def improved(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best["value"] is None:
            return True
        return value > self.best["value"] if self.task.best_mode == "max" else value < self.best["value"]

    def interrupt(self, stop: runtime.StopFlag, saved: bool = False) -> None:
        self.reporter.stop_bar()
        path = self.ckpt_dir / "last.pt" if saved else self.save("last.pt")
        name = signal.Signals(stop.signum).name if stop.signum else "signal"
        where = (f"at step {self.step_in_epoch} of epoch {self.epoch + 1}" if self.step_in_epoch
                 else f"after epoch {self.epoch}")
        again = shlex.join(["cvtool", self.task.name, "--resume", "--out", str(self.run.run_dir)])
        raise Interrupted(f"{name} received: saved {path} {where}; continue with: {again}", resume=again)

    # ------------------------------------------------------------------ end

    def complete(self) -> dict[str, Any]:
        if not self.main:
            return {"status": "completed"}
        best_path = self.ckpt_dir / "best.pt"
        if best_path.exists():
            self.model.load_state_dict(checkpoint.load(best_path)["model"])
        elif self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
        self.model.eval()
        artifacts: dict[str, str] = {}
        if self.task.finish is not None:
            with torch.no_grad():
                artifacts.update(self.task.finish(self.model, self.run.run_dir, self.device))
        artifacts.update(pictures(self.task, self.eval_net, self.val_loader, self.device, self.dtype,
                                  self.tc.channels_last, self.run.run_dir, self.limit(len(self.val_loader))))
        artifacts["curves"] = str(plots.curves(self.metrics.read(), self.run.run_dir / "curves.png", best=self.best))
        best = {**self.last_row, f"best_{self.best['metric']}": self.best["value"]}
        self.board.complete(cfglib.to_dict(self.cfg), best, artifacts, self.global_step())
        return self.write_summary("completed", artifacts=artifacts)

    def write_summary(self, status: str, error: str | None = None,
                      artifacts: dict[str, str] | None = None) -> dict[str, Any]:
        run_dir = self.run.run_dir
        paths = {"run_dir": str(run_dir), "config": str(run_dir / "config.yaml"),
                 "metrics": str(run_dir / "metrics.csv"),
                 "last": str(self.ckpt_dir / "last.pt"), "best": str(self.ckpt_dir / "best.pt")}
        paths.update(artifacts or {})
        summary = {
            "status": status,
            "task": self.task.name,
            "epochs_completed": self.epoch,
            "epochs": self.tc.epochs,
            "best": {k: self.best[k] for k in ("metric", "mode", "value", "epoch")},
            "final": self.last_row,
            "best_row": self.best.get("row", {}),  # the best epoch's metrics.csv row: what train's gates check
            "extra": {"epoch": self.best["epoch"], **self.best["extra"]} if self.best.get("extra") else {},
            "stopped_early": self.early["stopped"] is not None,
            "stopped_epoch": self.early["stopped"],
            "skipped_steps": self.skipped,
            "optim": self.recipe,
            "skipped_images": self.task.metadata.get("skipped_images", 0),
            "paths": paths,
        }
        if error is not None:
            summary["error"] = error
        if self.main and run_dir.exists():
            rundir.write_json(run_dir / "summary.json", summary)
            if self.run.threads is not None and (run_dir / "env.json").exists():
                rundir.update_json(run_dir / "env.json", threads=self.run.threads.record())
        return summary
