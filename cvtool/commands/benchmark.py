"""``cvtool benchmark``: a checkpoint's formats timed on this machine and scored on its validation set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from cvtool.commands.common import JSON_HELP, emit, load_torch


def benchmark(
    checkpoint_path: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by a train command."),
    formats: str = typer.Option("pytorch,torchscript,onnx,onnx-int8", "--formats",
                                help="Comma-separated: pytorch, torchscript, onnx, onnx-int8."),
    device: Optional[str] = typer.Option("cpu", "--device", help="cpu (the only device timed so far)."),
    batch: str = typer.Option("1,8", "--batch", help="Batch sizes to time, comma-separated."),
    max_drop: list[str] = typer.Option([], "--max-drop", metavar="METRIC=DELTA",
                                       help="A format's largest allowed drop of a metric (default: the task's "
                                            "best metric by 0.01); the fastest format within it is marked."),
    overrides: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                        help="Config change for the scoring, e.g. data.root=DIR."),
    repeats: int = typer.Option(15, "--repeats", min=1,
                                help="Timed calls per format and batch, in interleaved blocks of 5."),
    warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed calls first."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Export what is missing, then time every format and score it on the validation set."""
    from cvtool.errors import InputError
    from cvtool.model import benchmark_checkpoint

    if device not in (None, "cpu"):
        raise InputError(f"--device {device}: cvtool benchmark times on the CPU only (ONNX Runtime's CPU "
                         f"provider is the one cvtool's exports are checked on)")
    load_torch()
    result = benchmark_checkpoint(checkpoint_path, formats, batch, max_drop, overrides, warmup=warmup, repeats=repeats)
    if as_json:
        emit(result, True)
        return
    for line in render(result):
        typer.echo(line)


def render(result: dict[str, Any]) -> list[str]:
    batches = [str(b) for b in result["batches"]]
    metric = result["best_metric"]
    head = f"{'format':<12} {'MB':>7} " + " ".join(f"{'ms/img b' + b:>11} {'img/s b' + b:>10}" for b in batches)
    lines = [f"{result['task']} at {result['size'][0]}x{result['size'][1]}; {metric} on {result['items']} "
             f"validation items from {result['data_root']}", f"{head} {metric:>10}"]
    for row in result["rows"]:
        cells = " ".join(f"{row['ms_per_image'][b]:>11.2f} {row['images_per_s'][b]:>10.1f}" for b in batches)
        value = "n/a" if row["metric"] is None else f"{row['metric']:.4f}"
        mark = "  <- fastest within --max-drop" if row["fastest"] else ("" if row["within_max_drop"] else "  (over --max-drop)")
        lines.append(f"{row['format']:<12} {row['bytes'] / 1e6:>7.1f} {cells} {value:>10}{mark}")
    m = result["machine"]
    lines.append(f"machine: {m['cpu']} ({', '.join(m['cpu_flags']) or 'no VNNI/AMX flags'}), {m['threads']} threads, "
                 f"load average {m['load_average'][0]:.2f}, {m['date']}; torch {m['torch']}, onnxruntime {m['onnxruntime']}")
    return lines


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark)
