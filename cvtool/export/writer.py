"""Writing a graph as ONNX or TorchScript, and the JSON that describes it.

Files are written under temporary names in the target folder and renamed only once the
export has been checked, so a failure at any point leaves no half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from cvtool.errors import CvtoolError, InputError
from cvtool.export.graphs import Graph

MIN_OPSET = 18  # what torch.onnx's exporter is written against; lower ones are only converted, unreliably
MAX_OPSET = 23  # the newest torch.onnx knows
DEFAULT_OPSET = 20  # torch.onnx's default
# per-image graphs (R-CNN): opset 22's RoiAlign has no ONNX Runtime kernel yet
PER_IMAGE_MAX_OPSET = 21
EXTENSIONS = {"onnx": ".onnx", "torchscript": ".torchscript"}


def check_opset(opset: int | None, fmt: str) -> int | None:
    if fmt != "onnx":
        if opset is not None:
            raise InputError("--opset is for --format onnx; TorchScript has no opset")
        return None
    if opset is None:
        return DEFAULT_OPSET
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"--opset {opset} is not supported: torch {torch.__version__} exports opsets "
                         f"{MIN_OPSET} to {MAX_OPSET}")
    return opset


def check_graph_opset(graph: Graph, opset: int | None) -> None:
    """The narrower range of graphs that go through the TorchScript-based exporter."""
    if graph.per_image and opset is not None and opset > PER_IMAGE_MAX_OPSET:
        raise InputError(f"--opset {opset} is not supported for {graph.command}: its ONNX graph needs opsets "
                         f"{MIN_OPSET} to {PER_IMAGE_MAX_OPSET} (ONNX Runtime has no RoiAlign-22)")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def quiet():
    """torch.onnx prints progress and both exporters warn about things checked here anyway."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def example(graph: Graph, dynamic_batch: bool) -> torch.Tensor:
    # torch.export treats a size of 1 as a constant, so a dynamic batch is traced at 2
    return torch.rand(2 if dynamic_batch else 1, 3, *graph.size, generator=torch.Generator().manual_seed(0))


def write_onnx(graph: Graph, path: Path, opset: int, dynamic_batch: bool) -> None:
    import onnx

    from torch.export import Dim

    dims: dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = Dim("batch", min=1)
    if graph.dynamic_size:
        dims[2], dims[3] = Dim("height", min=1), Dim("width", min=1)
    names = [o["name"] for o in graph.outputs]
    try:
        with quiet(), torch.no_grad():
            if graph.per_image:  # traced at one image; the count of detections stays free
                torch.onnx.export(graph.module, (example(graph, False),), str(path), dynamo=False,
                                  opset_version=opset, input_names=["images"], output_names=names)
            else:
                program = torch.onnx.export(graph.module, (example(graph, dynamic_batch),), dynamo=True,
                                            opset_version=opset, input_names=["images"], output_names=names,
                                            dynamic_shapes=({**dims},) if dims else None, verbose=False)
                program.save(str(path), external_data=False)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter's failures are many and untyped
        raise CvtoolError(f"torch.onnx could not export {graph.command}: {first_line(exc)}") from None
    written = {o.domain or "ai.onnx": o.version for o in onnx.load(str(path), load_external_data=False).opset_import}
    if written.get("ai.onnx") != opset:
        raise InputError(f"--opset {opset}: torch.onnx wrote opset {written.get('ai.onnx')} instead")


def write_torchscript(graph: Graph, path: Path) -> None:
    """Traced: the wrappers hold no data-dependent Python control flow, and tracing keeps
    batch (and FCN's height and width) symbolic. Per-image graphs are scripted, loops kept."""
    try:
        with quiet(), torch.no_grad():
            if graph.per_image:
                traced = torch.jit.script(graph.module)
            else:
                traced = torch.jit.trace(graph.module, (example(graph, True),), check_trace=False)
    except Exception as exc:  # noqa: BLE001
        raise CvtoolError(f"TorchScript could not compile {graph.command}: {first_line(exc)}") from None
    with quiet():
        torch.jit.save(traced, str(path))


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("[")]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
