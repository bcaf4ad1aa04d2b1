"""Running an exported model: ONNX Runtime for .onnx, torch.jit for .torchscript.

Both take and return torch tensors here, so the parity check and ``cvtool predict``
treat the two formats alike.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from cvtool.errors import InputError, MissingResource

META_FORMAT = "cvtool-export/1"
SUFFIXES = {".onnx": "onnx", ".torchscript": "torchscript"}
PIP_HINT = "pip install 'cvtool[export]' (or: pip install onnxruntime)"


def format_of(path: Path) -> str | None:
    """'onnx' or 'torchscript' for an exported model file's name, None for anything else."""
    return SUFFIXES.get(Path(path).suffix.lower())


def meta_path(model: Path) -> Path:
    return model.with_name(model.name + ".json")


def onnxruntime() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingResource(f"onnxruntime is not installed; {PIP_HINT}") from None
    return ort


def read_meta(model: Path) -> dict[str, Any]:
    """The JSON written beside an export; predict needs its task and config."""
    if not model.is_file():
        raise InputError(f"exported model {model} does not exist")
    path = meta_path(model)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{model} has no {path.name} beside it; cvtool needs the JSON its export wrote") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT or "task" not in meta:
        raise InputError(f"{path} is not a cvtool export description ({META_FORMAT})")
    return meta


class Runner:
    """An exported model file as a function of an image batch (float32, [0, 1], NCHW)."""

    def __init__(self, path: Path, fmt: str, device: str = "cpu"):
        self.path, self.format = Path(path), fmt
        if fmt == "onnx":
            ort = onnxruntime()
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.log_severity_level = 3
            providers = ["CPUExecutionProvider"]
            if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            try:
                self.session = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors for bad files
                raise InputError(f"ONNX Runtime cannot load {path}: {str(exc).strip().splitlines()[0]}") from None
            self.input = self.session.get_inputs()[0].name
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
                    self.module = torch.jit.load(str(path), map_location="cpu").eval()
            except Exception as exc:  # noqa: BLE001 - torch.jit.load fails on garbage in many ways
                raise InputError(f"cannot load TorchScript {path}: {str(exc).strip().splitlines()[0]}") from None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.detach().float().cpu().contiguous()
        if self.format == "onnx":
            try:
                outs = self.session.run(None, {self.input: x.numpy()})
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"ONNX Runtime failed on {self.path}: {str(exc).strip().splitlines()[0]}") from None
            return tuple(torch.from_numpy(o) for o in outs)
        out = self.module(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
