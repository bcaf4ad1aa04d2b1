"""``cvtool eval``: a checkpoint or an export scored on its task's validation set, as training scores it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cvtool.commands.common import DEVICE_HELP, JSON_HELP, emit


def evaluate(
    checkpoint_path: Path = typer.Option(..., "--checkpoint",
                                         help="A checkpoint written by a train command, or an export "
                                              "(.onnx, .torchscript with its JSON)."),
    overrides: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                        help="Change the checkpoint's config: a.b=VALUE, e.g. data.root=DIR."),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Score a checkpoint or an exported model on its task's validation set, with the metrics training reports."""
    from cvtool.export import scoring

    result = scoring.score(checkpoint_path, overrides, device)
    if as_json:
        emit(result, True)
        return
    kind = f"{result['format']} export " if "format" in result else ""
    typer.echo(f"{result['task']}: {kind}{checkpoint_path} (epoch {result['epoch']}) on {result['items']} "
               f"validation items from {result['data_root']}")
    metrics = result["metrics"]
    width = max(map(len, metrics), default=0)
    for name, value in metrics.items():
        typer.echo(f"  {name:<{width}}  {value:.4g}")
    for name, why in result.get("not_scored", {}).items():
        typer.echo(f"  {name}: not scored ({why})")


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
