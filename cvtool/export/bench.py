"""Speed and quality of a checkpoint's formats side by side: ``cvtool benchmark`` and ``benchmarks/export.py``.

Latency is the median of interleaved blocks after a warm-up: each round runs every format in
turn on the same input batch, the order rotating, so a neighbour's load hits all formats alike
and the ratios hold on a shared machine even when the absolute times do not. A format's calls
come in blocks, as a program that uses one model calls it: ONNX Runtime's and torch's worker
threads spin for a while after each call, and a call of another format in that while shares the
cores with them (interleaving call by call halved every format's speed on a 2-core machine,
docs/export.md). So a block starts after a pause that lets the other threads sleep and one
untimed call that wakes its own, and only the calls after it are timed.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from cvtool import metrics as gates_lib
from cvtool.errors import InputError
from cvtool.export import exporter, parity, runtime, scoring, writer

FORMATS = ("pytorch", "torchscript", "onnx", "onnx-int8")
FLAGS = ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile")
Runner = Callable[[torch.Tensor], Any]


def machine() -> dict[str, Any]:
    """What a figure needs beside it: CPU and its int8/bf16 flags, threads, load, date, versions."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        ort = runtime.onnxruntime().__version__
    except InputError:
        ort = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": model, "cpu_flags": [f for f in FLAGS if f in flags], "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "load_average": [round(v, 2) for v in os.getloadavg()],
            "torch": torch.__version__, "onnxruntime": ort}


def parse_formats(text: str) -> list[str]:
    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise InputError(f"--formats {text!r}: choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(chosen))


def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise InputError(f"--batch {text!r}: expected sizes >= 1, e.g. 1,8")
    return list(dict.fromkeys(batches))


BLOCK = 5  # timed calls a block
SETTLE_S = 0.05  # the pause before a block: measured enough for the previous format's threads to stop spinning


def latency(runners: dict[str, Runner], size: tuple[int, int], batches: list[int], warmup: int = 3,
            repeats: int = 15, block: int = BLOCK, settle: float = SETTLE_S) -> dict[str, dict[int, float]]:
    """Median milliseconds per image of every runner at every batch size over ``repeats`` timed calls each."""
    out: dict[str, dict[int, float]] = {name: {} for name in runners}
    names = list(runners)
    with torch.no_grad():
        for batch in batches:
            x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(batch))
            for name in names:
                for _ in range(warmup):
                    runners[name](x)
            times: dict[str, list[float]] = {name: [] for name in names}
            for r in range(-(-repeats // block)):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    time.sleep(settle)
                    runners[name](x)
                    for _ in range(min(block, repeats - len(times[name]))):
                        start = time.perf_counter()
                        runners[name](x)
                        times[name].append(time.perf_counter() - start)
            for name in names:
                out[name][batch] = 1000 * statistics.median(times[name]) / batch
    return out


def existing(checkpoint: Path, command: str, fmt: str) -> Path | None:
    """An export of exactly this checkpoint already in its run's export/ folder."""
    parent = checkpoint.resolve().parent
    folder = (parent.parent if parent.name == "checkpoints" else parent) / "export"
    name = f"{command}.int8.onnx" if fmt == "onnx-int8" else f"{command}{writer.EXTENSIONS[fmt]}"
    try:
        meta = runtime.read_meta(folder / name)
    except InputError:
        return None
    fresh = meta.get("checkpoint", {}).get("sha256") == writer.sha256(checkpoint) and not meta.get("half")
    return folder / name if fresh and (meta.get("int8") is not None) == (fmt == "onnx-int8") else None


def make_export(checkpoint: Path, command: str, fmt: str, folder: Path, overrides: list[str]) -> tuple[Path, dict]:
    """(model path, its metric_parity or {}): reused when the run has it, else written to ``folder``."""
    found = existing(checkpoint, command, fmt)
    if found is not None:
        return found, runtime.read_meta(found).get("metric_parity") or {}
    int8 = fmt == "onnx-int8"
    req = exporter.Request(checkpoint=checkpoint, format="onnx" if int8 else fmt, out=folder, int8=int8,
                           overrides=overrides)
    result = exporter.export(req)
    return Path(result["model"]), result.get("metric_parity") or {}


def benchmark(checkpoint: Path, formats: list[str], batches: list[int], max_drop: list[str],
              overrides: list[str], warmup: int = 3, repeats: int = 15) -> dict[str, Any]:
    """One row per format: file size, ms/image and images/s at each batch, the validation metric."""
    graph, _, _ = exporter.load_graph(exporter.Request(checkpoint=checkpoint))
    if graph.per_image and "onnx-int8" in formats:
        raise InputError(f"--formats onnx-int8: {graph.command} has no INT8 export (its RoI steps stay float32)")
    base = parity.baseline(checkpoint, overrides)
    gates = parity.gates(max_drop, base)
    with tempfile.TemporaryDirectory(prefix="cvtool-benchmark-") as tmp:
        runners: dict[str, Runner] = {}
        rows: dict[str, dict[str, Any]] = {}
        for fmt in formats:
            if fmt == "pytorch":
                runners[fmt] = graph.module
                rows[fmt] = {"file": str(checkpoint), "bytes": checkpoint.stat().st_size, "metrics": base["metrics"]}
                continue
            path, measured = make_export(checkpoint, graph.command, fmt, Path(tmp), overrides)
            runners[fmt] = runtime.Runner(path, "onnx" if fmt == "onnx-int8" else fmt)
            metrics = measured.get("export_metrics") or scoring.score_export(path, overrides, "cpu")["metrics"]
            rows[fmt] = {"file": str(path) if not str(path).startswith(tmp) else None,
                         "bytes": path.stat().st_size, "metrics": metrics}
        sizes = [1] if graph.per_image else batches
        timed = latency(runners, graph.size, sizes, warmup, repeats)
    return {"task": graph.command, "checkpoint": str(checkpoint), "size": list(graph.size), "batches": sizes,
            "best_metric": base["best_metric"], "data_root": base["data_root"], "items": base["items"],
            "rows": table(formats, rows, timed, gates, base), "machine": machine()}


def table(formats: list[str], rows: dict[str, dict], timed: dict[str, dict[int, float]],
          gates: list, base: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows in order, the fastest one within --max-drop of the checkpoint marked."""
    out = []
    for fmt in formats:
        ms = timed[fmt]
        checks = [g for g in gates if g.metric in rows[fmt]["metrics"]]
        records = [] if fmt == "pytorch" else gates_lib.failures(checks, rows[fmt]["metrics"], base["metrics"])
        out.append({"format": fmt, **rows[fmt], "ms_per_image": {str(b): v for b, v in ms.items()},
                    "images_per_s": {str(b): 1000 / v for b, v in ms.items()},
                    "metric": rows[fmt]["metrics"].get(base["best_metric"]),
                    "within_max_drop": all(r["passed"] for r in records), "fastest": False})
    last = str(max(int(b) for b in out[0]["ms_per_image"]))
    eligible = [r for r in out if r["within_max_drop"]]
    if eligible:
        max(eligible, key=lambda r: r["images_per_s"][last])["fastest"] = True
    return out
