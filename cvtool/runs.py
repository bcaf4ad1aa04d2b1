"""Reading run directories back: what `cvtool runs` lists and `cvtool compare` overlays.

A run directory is what a train command (or `stylize --out-dir`) leaves: config.yaml and
env.json from the start, metrics.csv as epochs finish, summary.json rewritten after each
epoch and at the end. Reading never raises on a damaged run: it is listed as
``unreadable`` with the reason, so one broken folder does not hide the others.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cvtool.callable import make_callable
from cvtool.engine import lock
from cvtool.errors import InputError

MARKERS = ("summary.json", "env.json")
SKIP_DIRS = {"checkpoints", "snapshots", ".git", "__pycache__"}


@dataclass
class RunInfo:
    """One row of `cvtool runs`."""

    run_dir: str
    task: str | None = None
    status: str = "running"
    epochs_done: int | None = None
    epochs: int | None = None
    best_metric: str | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    images_per_second: float | None = None
    wall_seconds: float | None = None
    started: float | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data["started_iso"] = iso(self.started)
        return {**data, **self.extra}


def iso(stamp: float | None) -> str | None:
    return None if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in MARKERS)


def discover(folders: list[Path]) -> list[Path]:
    """Run directories at or under each folder (a run's own subfolders are not searched)."""
    found: list[Path] = []
    for folder in folders:
        if not folder.exists():
            raise InputError(f"{folder} does not exist")
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder")
        stack = [folder]
        while stack:
            here = stack.pop()
            if is_run(here):
                found.append(here)
                continue
            try:
                children = sorted(p for p in here.iterdir() if p.is_dir() and p.name not in SKIP_DIRS)
            except OSError:
                continue
            stack.extend(reversed(children))
    return list(dict.fromkeys(found))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object, or ValueError naming what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds a {type(data).__name__}, not an object")
    return data


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """metrics.csv as rows of numbers (empty cells left out); [] when absent."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for raw in csv.DictReader(fh):
            row = {}
            for key, value in raw.items():
                try:
                    row[key] = float(value)
                except (TypeError, ValueError):
                    continue
            rows.append(row)
    return rows


def read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run directory (no config.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} cannot be read: {type(exc).__name__}") from None
    return data if isinstance(data, dict) else {}


def task_of(run_dir: Path, summary: dict[str, Any]) -> str | None:
    """summary.json names the task; stylize's (and an unfinished first epoch) only env.json's command."""
    if isinstance(summary.get("task"), str):
        return summary["task"]
    try:
        command = read_json(run_dir / "env.json").get("command") or []
    except ValueError:
        return None
    # ["cvtool", root flags such as --debug..., the command, ...]: root options take no value
    return next((word for word in command[1:] if isinstance(word, str) and not word.startswith("-")), None)


def started_at(run_dir: Path) -> float | None:
    """The first TensorBoard event file's creation time (kept across resumes), else env.json's mtime."""
    stamps = []
    for events in run_dir.glob("events.out.tfevents.*"):
        parts = events.name.split(".")
        if len(parts) > 3 and parts[3].isdigit():
            stamps.append(float(parts[3]))
    env = run_dir / "env.json"
    if env.is_file():
        stamps.append(env.stat().st_mtime)
    return min(stamps) if stamps else None


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_run(run_dir: Path) -> RunInfo:
    """What the run's files say about it; never raises for a damaged run."""
    info = RunInfo(run_dir=str(run_dir), started=started_at(run_dir))
    summary_path = run_dir / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.is_file():
        try:
            summary = read_json(summary_path)
        except ValueError as exc:
            info.status, info.reason = "unreadable", str(exc)
            info.task = task_of(run_dir, {})
            return info
        info.status = str(summary.get("status", "running"))
        if "error" in summary:
            info.reason = str(summary["error"])
        info.wall_seconds = summary_path.stat().st_mtime - info.started if info.started else None
    info.task = task_of(run_dir, summary)
    info.epochs_done = summary.get("epochs_completed", summary.get("step"))
    info.epochs = summary.get("epochs")
    best = summary.get("best") if isinstance(summary.get("best"), dict) else {}
    info.best_metric, info.best_value, info.best_epoch = best.get("metric"), number(best.get("value")), best.get("epoch")
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    info.images_per_second = number(final.get("images_per_second"))
    held = lock.in_use(run_dir)
    if held:
        info.status, info.reason = "running", None  # e.g. a failed attempt that is being restarted
    elif held is False and info.status == "running":
        info.status, info.reason = "stopped", "its process ended without a word (killed?)"
    if info.status == "running" and info.started is not None:
        info.wall_seconds = time.time() - info.started
    return info


def group_seeds(infos: list[RunInfo]) -> list[RunInfo]:
    """The runs in ``DIR/seed-N`` folders as one row for DIR: the seeds' mean best value, and its spread."""
    groups: dict[str, list[RunInfo]] = {}
    for info in infos:
        path = Path(info.run_dir)
        if re.fullmatch(r"seed-\d+", path.name):
            groups.setdefault(str(path.parent), []).append(info)
    rows = [i for i in infos if str(Path(i.run_dir).parent) not in groups]
    for parent, members in groups.items():
        done = [m for m in members if m.status == "completed" and m.best_value is not None]
        values = [m.best_value for m in done]
        statuses = {m.status for m in members}
        status = statuses.pop() if len(statuses) == 1 else "running" if "running" in statuses else "mixed"
        rows.append(RunInfo(
            run_dir=parent, task=members[0].task, status=status, epochs_done=members[0].epochs_done,
            epochs=members[0].epochs, best_metric=members[0].best_metric,
            best_value=statistics.fmean(values) if values else None,
            started=min((m.started for m in members if m.started is not None), default=None),
            reason=f"{len(done)} of {len(members)} seeds completed" if len(done) < len(members) else None,
            extra={"seeds": len(members), "best_std": statistics.stdev(values) if len(values) > 1 else None,
                   "best_min": min(values, default=None), "best_max": max(values, default=None)}))
    return rows


def list_runs(folders: list[Path], task: str | None = None) -> list[RunInfo]:
    """Every run under ``folders``, oldest first, a seed group as one; with ``task``, that task's only."""
    infos = group_seeds([read_run(p) for p in discover(folders)])
    if task is not None:
        infos = [i for i in infos if i.task == task]
    return sorted(infos, key=lambda i: (i.started is None, i.started or 0.0, i.run_dir))


make_callable(__name__)  # cvtool.runs(...) is cvtool.api.runs
