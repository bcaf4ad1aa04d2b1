"""The run directory: what a finished (or interrupted) run leaves behind.

Files are replaced atomically (cvtool.files) so that a reader (a dashboard, a CI script, a resumed
run) never sees half of one, and an earlier run is never silently overwritten.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import torch
import torchvision
import yaml

import cvtool
from cvtool.engine.lock import NAME as LOCK  # never moved or deleted
from cvtool.errors import InputError
from cvtool.files import atomic_write, json_text


ATTEMPTS = "attempts"  # where a restarted run keeps the files of the attempts that came to nothing


def choose(command: str, out: str | None, resuming: bool, reuse: bool = False) -> Path:
    """``out`` as given, or the first free ``runs/<command>/expN``. With ``reuse`` a run that
    stopped before its first checkpoint may start again there (``set_aside`` keeps its files)."""
    path = target(command, out)
    check_out(path, resuming, reuse)
    return path


def check_out(path: Path, resuming: bool, reuse: bool) -> None:
    """Whether a new run may write into ``path`` (a train command checks this holding its lock)."""
    if not resuming and reuse:
        check_free(path)
    elif not resuming and leftovers(path):
        raise InputError(f"--out {path} already holds files; pass --resume to continue that run "
                         "or choose another --out")


def target(command: str, out: str | None) -> Path:
    """``out``, or the first ``runs/<command>/expN`` that does not exist yet."""
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise InputError(f"--out {path} exists and is not a folder")
        return path
    base = Path("runs") / command
    n = 1
    while True:
        path = base / ("exp" if n == 1 else f"exp{n}")
        if not path.exists():
            return path
        n += 1


def checkpoints(path: Path) -> list[Path]:
    return sorted((path / "checkpoints").glob("*.pt"))


def status(path: Path) -> str | None:
    """summary.json's status, None when there is none to read."""
    try:
        return json.loads((path / "summary.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def leftovers(path: Path) -> list[Path]:
    """What is in ``path`` besides earlier attempts and the run's lock file."""
    return [p for p in path.iterdir() if p.name not in (ATTEMPTS, LOCK)] if path.is_dir() else []


def restartable(path: Path) -> bool:
    """Empty, or a run that failed or was stopped before its first checkpoint: there is
    nothing to resume, so starting again loses nothing once its files are set aside."""
    if not leftovers(path):
        return True
    return (not checkpoints(path) and (path / "env.json").is_file()
            and status(path) in (None, "failed", "interrupted"))


def resume_flag(path: Path) -> str:
    saved = checkpoints(path)
    return f"--resume --out {path}" if path / "checkpoints" / "last.pt" in saved else f"--resume {saved[-1]}"


def check_free(path: Path) -> None:
    """Refuse an ``--out`` a new run cannot use, saying what to do instead (never a circle)."""
    if restartable(path):
        return
    if checkpoints(path):
        raise InputError(f"--out {path} already holds a run with a checkpoint; continue it with "
                         f"{resume_flag(path)} or choose another --out")
    what = "a completed run" if (path / "env.json").is_file() else "files that are not a cvtool run"
    raise InputError(f"--out {path} already holds {what} and no checkpoint to resume; choose another --out")


def nothing_to_resume(path: Path) -> str:
    """Why ``--resume --out path`` cannot continue, and what to run instead."""
    if checkpoints(path):
        return f"nothing to resume: {path / 'checkpoints' / 'last.pt'} does not exist; use {resume_flag(path)}"
    if not path.exists():
        return f"nothing to resume: {path} does not exist; start the run without --resume"
    if restartable(path):
        return (f"nothing to resume: {path} has no checkpoint (the run stopped before saving one); "
                "run the same command without --resume to start it again there")
    return f"nothing to resume: {path} holds no checkpoint; choose another --out for a new run"


def set_aside(path: Path) -> Path | None:
    """Move a stopped attempt's files into ``path/attempts/N`` so a restart overwrites nothing."""
    check_free(path)
    entries = leftovers(path)
    if not entries:
        return None
    base = path / ATTEMPTS
    dest = base / str(1 + max((int(p.name) for p in base.glob("*") if p.name.isdigit()), default=0))
    dest.mkdir(parents=True)
    for entry in entries:
        entry.rename(dest / entry.name)
    return dest


def write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json_text(data, indent=2) + "\n")


def update_json(path: Path, **fields: Any) -> None:
    """Rewrite a JSON record with ``fields`` changed, if they did (env.json's thread record
    follows the machine during a run)."""
    data = json.loads(path.read_text())
    if any(data.get(k) != v for k, v in fields.items()):
        data.update(fields)
        write_json(path, data)


def write_config(path: Path, config: dict, comment: str = "") -> None:
    """``comment``: lines of derived facts (e.g. the effective lr) kept as YAML comments, so the
    file still loads as a --config."""
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    write_text(path, head + yaml.safe_dump(config, sort_keys=False))


def environment(device: torch.device, seed: int, argv: list[str]) -> dict[str, Any]:
    from cvtool.engine.runtime import device_name

    return {
        "cvtool": cvtool.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": str(device),
        "device_name": device_name(device),
        "seed": seed,
        "command": argv,
    }


class MetricsLog:
    """metrics.csv with a header fixed when the run starts: scripts can rely on columns."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns

    def start(self, keep_through_epoch: int) -> None:
        """Create the file, or on resume drop rows past the checkpoint being resumed."""
        rows: list[dict] = []
        if keep_through_epoch > 0 and self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= keep_through_epoch]
        lines = [",".join(self.columns)]
        lines += [",".join(r.get(c, "") or "" for c in self.columns) for r in rows]
        write_text(self.path, "\n".join(lines) + "\n")

    def append(self, *rows: dict[str, Any]) -> None:
        """Durable once it returns; several rows share one fsync."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.writelines(",".join(format_cell(row.get(c)) for c in self.columns) + "\n" for row in rows)
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[dict[str, float]]:
        with open(self.path, newline="", encoding="utf-8") as fh:
            return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
