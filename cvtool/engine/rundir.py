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
from cvtool.errors import InputError
from cvtool.files import atomic_write


def choose(command: str, out: str | None, resuming: bool) -> Path:
    """``out`` as given, or the first free ``runs/<command>/expN``."""
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise InputError(f"--out {path} exists and is not a folder")
        if not resuming and path.is_dir() and any(path.iterdir()):
            raise InputError(f"--out {path} already holds files; pass --resume to continue that run "
                             "or choose another --out")
        return path
    base = Path("runs") / command
    n = 1
    while True:
        path = base / ("exp" if n == 1 else f"exp{n}")
        if not path.exists():
            return path
        n += 1


def write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


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
