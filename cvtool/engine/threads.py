"""How many CPU threads the math uses, and how that follows other processes on the machine.

On a shared machine (a laptop, a CI runner, a box several jobs share) OpenMP threads that
outnumber the free cores wait on each other at every parallel region: one busy neighbour
made a 2-thread demo epoch 3-4x slower, while one thread lost only what the lost core
cost. So ``auto`` starts from the CPUs this process may use (its affinity) less the
DataLoader workers that compete for them, and on Linux re-measures every second
how many cores other processes (and this run's own workers) keep busy, from /proc/stat and
the process tree's CPU time, then sets ``torch.set_num_threads`` to what is left, with
hysteresis. OpenMP's idle threads spin only briefly before they sleep (GOMP_SPINCOUNT,
cvtool/__init__.py), so between two readings they do not spin against the neighbours. An
explicit ``threads`` setting or a user's ``OMP_NUM_THREADS`` is obeyed as given and never
adapted.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

import cvtool

INTERVAL_S = 1.0  # between /proc readings: cheap, and quick enough to follow a neighbour
# Readings in a row that must agree before the count changes: a neighbour that arrives costs
# 3x while threads outnumber free cores, so one reading lowers the count; two raise it again.
CONFIRM_DOWN, CONFIRM_UP = 1, 2


@dataclass(frozen=True)
class Choice:
    """The starting thread count and where it came from."""

    threads: int
    source: str  # "auto", "OMP_NUM_THREADS" or the setting's name (train.threads, --threads)
    cpus: int
    workers: int = 0
    adaptive: bool = False

    def describe(self) -> str:
        how = "adapting to other processes" if self.adaptive else "fixed"
        return f"{self.threads} of {self.cpus} CPUs ({self.source}, {how})"

    def record(self) -> dict:
        return {"threads": self.threads, "source": self.source, "cpus": self.cpus, "workers": self.workers,
                "adaptive": self.adaptive, **wait_policy()}


def usable_cpus() -> int:
    """The CPUs the scheduler lets this process run on (a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def usable_cpu_ids() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:
        return None


def wait_policy() -> dict[str, str]:
    """How idle OpenMP threads wait, and whether the user's environment or cvtool said so."""
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", ""),
            "wait_source": "environment" if cvtool.USER_WAIT else "cvtool default"}


def env_threads(environ: Mapping[str, str]) -> int | None:
    """OMP_NUM_THREADS as OpenMP reads it (the first level of a nested list); None if unset or unusable."""
    text = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(text) if text.isdigit() and int(text) >= 1 else None


def choose(setting: int | str, workers: int = 0, *, key: str = "train.threads", cpus: int | None = None,
           environ: Mapping[str, str] | None = None, platform: str | None = None, fixed: bool = False) -> Choice:
    """The precedence: an explicit setting, then OMP_NUM_THREADS, then ``auto``. ``fixed`` keeps
    auto's count for the whole run: another count sums floats in another order, which a
    deterministic run must not do."""
    cpus = cpus or usable_cpus()
    environ = os.environ if environ is None else environ
    if setting != "auto":
        return Choice(int(setting), key, cpus, workers)
    from_env = env_threads(environ)
    if from_env is not None:
        return Choice(from_env, "OMP_NUM_THREADS", cpus, workers)
    adaptive = (platform or sys.platform).startswith("linux") and cpus > 1 and not fixed
    return Choice(max(1, cpus - workers), "auto", cpus, workers, adaptive)


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Sample:
    """Cumulative clock ticks: ``busy`` and ``total`` of the CPUs this process may use (every
    process's time), ``main`` this process's own, ``children`` its child processes' (workers)."""

    busy: int
    total: int
    main: int
    children: int


def parse_proc_stat(text: str, cpu_ids: set[int] | None) -> tuple[int, int]:
    """(busy, total) ticks over the ``cpuN`` lines in ``cpu_ids`` (all of them when None)."""
    busy = total = 0
    for line in text.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit():
            continue
        if cpu_ids is not None and int(name[3:]) not in cpu_ids:
            continue
        ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def parse_pid_stat(text: str) -> tuple[int, int]:
    """(parent pid, utime + stime ticks) from /proc/PID/stat; the name may hold spaces or ')'."""
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


@dataclass
class ProcReader:
    """Reads a :class:`Sample` from ``root`` (/proc; a fake tree in tests)."""

    root: Path = Path("/proc")
    pid: int = field(default_factory=os.getpid)
    cpu_ids: set[int] | None = field(default_factory=usable_cpu_ids)
    count_children: bool = False

    def sample(self) -> Sample | None:
        try:
            busy, total = parse_proc_stat((self.root / "stat").read_text(), self.cpu_ids)
            _, main = parse_pid_stat((self.root / str(self.pid) / "stat").read_text())
        except (OSError, ValueError, IndexError):
            return None
        return Sample(busy, total, main, self.children() if self.count_children else 0)

    def children(self) -> int:
        ticks = 0
        for entry in self.root.iterdir():
            if not entry.name.isdigit() or entry.name == str(self.pid):
                continue
            try:
                parent, used = parse_pid_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue  # the process ended while we looked
            if parent == self.pid:
                ticks += used
        return ticks


class Adapter:
    """The decision alone (no I/O): threads = the CPUs other processes and this run's workers
    leave free, rounded half up, at least 1; a lower count after ``down`` readings that agree,
    a higher one after ``up``."""

    def __init__(self, cpus: int, start: int, down: int = CONFIRM_DOWN, up: int = CONFIRM_UP):
        self.cpus, self.current, self.down, self.up = cpus, start, down, up
        self.candidate: int | None = None
        self.seen = 0
        self.others = 0.0

    def target(self, before: Sample, now: Sample) -> int | None:
        per_cpu = (now.total - before.total) / self.cpus
        if per_cpu <= 0:
            return None
        busy = (now.busy - before.busy) / per_cpu
        ours = (now.main - before.main + now.children - before.children) / per_cpu
        self.others = max(0.0, busy - ours)
        children = max(0.0, (now.children - before.children) / per_cpu)
        return max(1, min(self.cpus, math.floor(self.cpus - self.others - children + 0.5)))  # half up

    def observe(self, before: Sample, now: Sample) -> int:
        """The thread count to use from now on."""
        target = self.target(before, now)
        if target is None or target == self.current:
            self.candidate, self.seen = None, 0
            return self.current
        self.seen = self.seen + 1 if target == self.candidate else 1
        self.candidate = target
        if self.seen >= (self.down if target < self.current else self.up):
            self.current, self.candidate, self.seen = target, None, 0
        return self.current


class Policy:
    """Applies a :class:`Choice` and, when adaptive, follows the machine between steps (``tick``)."""

    def __init__(self, choice: Choice, reader: ProcReader | None = None, interval: float = INTERVAL_S,
                 clock=time.monotonic):
        self.choice, self.interval, self.clock = choice, interval, clock
        self.threads = choice.threads
        self.changes: list[tuple[float, int]] = []
        torch.set_num_threads(self.threads)
        self.reader = reader if reader is not None else ProcReader(count_children=choice.workers > 0)
        self.adapter = Adapter(choice.cpus, choice.threads)
        self.last = self.reader.sample() if choice.adaptive else None
        self.started = self.due = clock()
        self.due += interval

    def tick(self) -> int:
        """Call between steps; reads /proc at most every ``interval`` seconds."""
        if self.last is None or self.clock() < self.due:
            return self.threads
        now = self.reader.sample()
        self.due = self.clock() + self.interval
        if now is None:
            return self.threads
        threads = self.adapter.observe(self.last, now)
        self.last = now
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
            self.changes.append((round(self.clock() - self.started, 1), threads))
        return threads

    def record(self) -> dict:
        return {**self.choice.record(), "changes": [list(c) for c in self.changes]}


def start(setting: int | str, workers: int = 0, key: str = "train.threads") -> Policy:
    return Policy(choose(setting, workers, key=key))
