"""``cvtool export``: a checkpoint as a checked ONNX or TorchScript model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cvtool.commands.common import JSON_HELP, emit, load_torch


def export(
    checkpoint_path: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by a train command."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx | torchscript."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Folder for the model and its JSON (default: the run's export/)."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset (18-23; default 20)."),
    dynamic_batch: bool = typer.Option(True, "--dynamic-batch/--static",
                                       help="ONNX: any batch size, or a fixed batch of 1."),
    image_size: Optional[str] = typer.Option(None, "--image-size",
                                             help="Input H,W (default: the size the task predicts at)."),
    half: bool = typer.Option(False, "--half", help="fp16 weights and activations (input and outputs stay fp32)."),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Run the export against the checkpoint before keeping it."),
    check_metric: bool = typer.Option(False, "--check-metric",
                                      help="Score the export and the checkpoint on the validation set; "
                                           "exit 4 (file kept) when a metric drops past --max-drop."),
    max_drop: list[str] = typer.Option([], "--max-drop", metavar="METRIC=DELTA",
                                       help="Largest allowed drop of a metric (default: the task's best "
                                            "metric by 0.01; repeatable)."),
    overrides: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                        help="Config change for the scoring, e.g. data.root=DIR."),
    int8: bool = typer.Option(False, "--int8", help="ONNX: static INT8 quantization (QDQ); implies --check-metric."),
    calib_images: Optional[int] = typer.Option(None, "--calib-images", metavar="N",
                                               help="--int8: training images to calibrate on (default 256; "
                                                    "fewer if the set is smaller)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Export a checkpoint to ONNX or TorchScript and prove it gives the checkpoint's answers."""
    load_torch()
    from cvtool.export import exporter, parity
    from cvtool.model import enforce_export, export_checkpoint

    try:
        result = export_checkpoint(checkpoint_path, fmt, out, opset=opset, dynamic_batch=dynamic_batch,
                                   image_size=image_size, half=half, check=check, check_metric=check_metric,
                                   max_drop=max_drop, overrides=overrides, int8=int8, calib_images=calib_images)
    except exporter.Mismatch as exc:
        emit({"status": "mismatch", "error": str(exc), "check": exc.report}, as_json)
        raise
    metric = result["metric_parity"]
    if as_json:
        emit(result, True)
    else:
        opset = f", opset {result['opset']}" if result["opset"] else ""
        kind = " INT8" if result["int8"] else ""
        typer.echo(f"{result['task']}: wrote{kind} {result['model']} ({result['bytes'] / 1e6:.1f} MB{opset}) "
                   f"and {Path(result['meta']).name}")
        if result["int8"]:
            typer.echo(f"calibration: {result['int8']['calibration']['source']}, {result['int8']['calibration']['method']}")
        typer.echo(f"check: {exporter.summary(result['check'])}")
        if metric is not None:
            typer.echo(f"metrics: {parity.summary(metric)}")
    enforce_export(result)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
