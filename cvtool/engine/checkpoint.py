"""Checkpoints that survive a kill and never run code when read.

A checkpoint is a dict of plain state dicts, tensors and JSON-able values, so
``torch.load(weights_only=True)`` reads it. It is written with cvtool.files.atomic_write:
a kill or a full disk at any moment leaves either the previous or the new complete file.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from cvtool.errors import CvtoolError, InputError
from cvtool.files import atomic_write

FORMAT = "cvtool-checkpoint/1"


def save(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda fh: torch.save(state, fh))
    except OSError as exc:
        raise CvtoolError(f"could not write checkpoint {path}: {exc.strerror or exc}; "
                          "the previous checkpoint is intact") from None


def load(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise InputError(f"checkpoint {path} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. the unpickler's notes on foreign pickle protocols
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the restricted unpickler fails on garbage in many ways
        raise InputError(f"checkpoint {path} cannot be read safely: {unreadable(exc)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"checkpoint {path} is not a cvtool checkpoint")
    if not isinstance(ckpt.get("task"), str) or not isinstance(ckpt.get("model"), dict):
        raise InputError(f"checkpoint {path} is damaged: it lacks its task name or model weights")
    return ckpt


def unreadable(exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to drop that safety."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        reason = [line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines() if line.strip()]
        return (f"not a file of plain tensors and values ({reason[0] if reason else 'unsupported content'}); "
                "cvtool reads only the checkpoints its train commands write")
    return text.splitlines()[0] if text else type(exc).__name__


def mismatch(exc: Exception) -> str:
    """The first telling line of a load_state_dict error (torch's first line is only a heading)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text if len(text) <= 300 else text[:297] + "..."


def load_weights(model: torch.nn.Module, ckpt: dict[str, Any], path: Path) -> None:
    """``ckpt``'s weights into ``model``; a checkpoint of another architecture is one clear line."""
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"checkpoint {path} does not fit {ckpt['task']}'s model: {mismatch(exc)}") from None


def rng_state() -> dict[str, Any]:
    """This process's generators, laid out as a one-process checkpoint's (see all_rng_states).

    CUDA's generators are read only where this process has initialised CUDA: a ``--device
    cpu`` run never creates a CUDA context for a checkpoint.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return {**state, "ranks": [state]}


def all_rng_states() -> dict[str, Any] | None:
    """Every process's generators, gathered on rank 0: {"ranks": [rank 0's, rank 1's, ...]}.

    A collective under torchrun: every rank calls it; rank 0 gets the states, the others
    None. Rank 0's own are also at the top level, where one-process checkpoints keep theirs.
    """
    own = rng_state()["ranks"][0]
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return {**own, "ranks": [own]}
    main = dist.get_rank() == 0
    gathered: list[Any] | None = [None] * dist.get_world_size() if main else None
    dist.gather_object(own, gathered, dst=0)
    return {**own, "ranks": gathered} if main else None


def set_rng_state(state: dict[str, Any], rank: int | None = None) -> bool:
    """Restore rank ``rank``'s generators (this process's rank by default); False if none were saved.

    A checkpoint from fewer processes leaves the extra ranks on the streams they were seeded
    with; one from a machine with more GPUs restores the devices this one has. CUDA's
    generators are set only where this process already uses CUDA.
    """
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    ranks = state.get("ranks") or [state]  # checkpoints before per-rank states held rank 0's only
    if rank >= len(ranks) or ranks[rank] is None:
        return False
    own = ranks[rank]
    torch.set_rng_state(own["torch"])
    random.setstate(to_tuple(own["python"]))
    if "cuda" in own and torch.cuda.is_initialized():
        for index, cuda_state in enumerate(list(own["cuda"])[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    return True


def to_tuple(value: Any) -> Any:
    """random.setstate needs tuples where a round trip may have produced lists."""
    if isinstance(value, (list, tuple)):
        return tuple(to_tuple(v) for v in value)
    return value
