"""Checkpoints that survive a kill and never run code when read.

A checkpoint is a dict of plain state dicts, tensors and JSON-able values, so
``torch.load(weights_only=True)`` reads it. It is written to a temporary file in the
same folder, synced and renamed over the old one: a kill or a full disk at any moment
leaves either the previous or the new complete file, never half of one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

from cvtool.errors import CvtoolError, InputError

FORMAT = "cvtool-checkpoint/1"


def save(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CvtoolError(f"could not write checkpoint {path}: {exc.strerror or exc}; "
                          "the previous checkpoint is intact") from None
    sync_dir(path.parent)


def sync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise InputError(f"checkpoint {path} is not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the restricted unpickler fails on garbage in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"checkpoint {path} cannot be read safely: {first}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"checkpoint {path} is not a cvtool checkpoint")
    if not isinstance(ckpt.get("task"), str) or not isinstance(ckpt.get("model"), dict):
        raise InputError(f"checkpoint {path} is damaged: it lacks its task name or model weights")
    return ckpt


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(to_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def to_tuple(value: Any) -> Any:
    """random.setstate needs tuples where a round trip may have produced lists."""
    if isinstance(value, (list, tuple)):
        return tuple(to_tuple(v) for v in value)
    return value
