"""``cvtool export``: a checkpoint as a checked ONNX or TorchScript model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cvtool.commands.common import JSON_HELP, emit


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
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Export a checkpoint to ONNX or TorchScript and prove it gives the checkpoint's answers."""
    from cvtool.export import exporter

    request = exporter.Request(checkpoint=checkpoint_path, format=fmt.lower(), out=out, opset=opset,
                               dynamic_batch=dynamic_batch, half=half, check=check,
                               image_size=exporter.parse_size(image_size) if image_size else None)
    try:
        result = exporter.export(request)
    except exporter.Mismatch as exc:
        emit({"status": "mismatch", "error": str(exc), "check": exc.report}, as_json)
        raise
    if as_json:
        emit(result, True)
        return
    opset = f", opset {result['opset']}" if result["opset"] else ""
    typer.echo(f"{result['task']}: wrote {result['model']} ({result['bytes'] / 1e6:.1f} MB{opset}) "
               f"and {Path(result['meta']).name}")
    typer.echo(f"check: {exporter.summary(result['check'])}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
