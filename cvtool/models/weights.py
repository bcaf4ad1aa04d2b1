"""Pretrained weights: a torchvision weight name, a local state-dict file, or none.

torchvision caches its downloads under ``$TORCH_HOME/hub/checkpoints``; a file placed
there by hand loads offline. When a file is missing and cannot be fetched the error
says where to put it and how to run without it, instead of a urllib traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable
from urllib.error import URLError

import torch
import torchvision.models as tvm
from torch import nn

from cvtool.errors import InputError, MissingResource

ARCHS: dict[str, tuple[Callable[..., nn.Module], type]] = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights),
    "vgg19": (tvm.vgg19, tvm.VGG19_Weights),
}


def is_none(weights: str | None) -> bool:
    return weights is None or str(weights).strip().lower() in ("none", "")


def pretrained(arch: str, weights: str | None) -> nn.Module:
    """A torchvision ``arch`` with ``weights`` loaded (random init when none)."""
    if arch not in ARCHS:
        raise InputError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    build, _ = ARCHS[arch]
    model = build(weights=None)
    if is_none(weights):
        return model
    state, source = load_state(arch, str(weights))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatched keys"
        raise InputError(f"weights {source} do not fit {arch}: {first}") from None
    return model


def looks_like_path(weights: str) -> bool:
    return os.sep in weights or "/" in weights or weights.endswith((".pt", ".pth")) or Path(weights).exists()


def load_state(arch: str, weights: str) -> tuple[dict, str]:
    if looks_like_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingResource(f"weights file {path} does not exist (or set model.weights: none)")
        return read_state_file(path), str(path)
    _, enum = ARCHS[arch]
    try:
        entry = enum[weights]
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise InputError(f"unknown weights {weights!r} for {arch}; use one of {names}, a file path, or none") from None
    cached = cached_file(arch, weights, entry.url)
    return read_state_file(cached), str(cached)


def cached_file(arch: str, weights: str, url: str,
                fix: str = "set model.weights to a local .pth file or none") -> Path:
    """torchvision's cache file for ``url`` under $TORCH_HOME, downloaded when absent; ``fix`` ends the error."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not cached.is_file():
        if os.environ.get("CVTOOL_OFFLINE"):
            raise MissingResource(missing_message(arch, weights, cached, "CVTOOL_OFFLINE is set", fix))
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(cached), progress=True)
        except (URLError, OSError, RuntimeError) as exc:
            raise MissingResource(missing_message(arch, weights, cached, f"download failed: {exc}", fix)) from None
    return cached


def missing_message(arch: str, weights: str, cached: Path, why: str,
                    fix: str = "set model.weights to a local .pth file or none") -> str:
    return f"{arch} weights {weights} are not cached and cannot be fetched ({why}); put the file at {cached}, or {fix}"


def read_state_file(path: Path) -> dict:
    """A state dict read without running pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the restricted unpickler fails on garbage in many ways
        raise InputError(f"weights file {path} cannot be read safely: {unsafe_reason(exc)}") from None
    if not isinstance(state, dict):
        raise InputError(f"weights file {path} does not hold a state dict")
    return state


HEADING = "Weights only load failed"  # torch's first paragraph: how to load the file with pickle's full power
ADVICE = ("Please file an issue", "Check the documentation of torch.load")


def unsafe_reason(exc: Exception) -> str:
    """What torch.load(weights_only=True) objected to, without its advice to turn that safety off."""
    text = str(exc).strip()
    if not text.startswith(HEADING):
        return text.splitlines()[0] if text else type(exc).__name__
    lines = [line.split("WeightsUnpickler error:", 1)[-1].strip() for line in text.splitlines()[1:]]
    reason = next((line for line in lines if line and not line.startswith(ADVICE)), "unsupported content")
    return f"not a file of plain tensors and values ({reason})"
