"""``cvtool eval``: a checkpoint or an export scored on its task's validation set, as training scores it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cvtool.commands.common import DEVICE_HELP, FAIL_OVER, FAIL_UNDER, JSON_HELP, emit, load_torch


def evaluate(
    checkpoint_path: Path = typer.Option(..., "--checkpoint",
                                         help="A checkpoint written by a train command, or an export "
                                              "(.onnx, .torchscript with its JSON)."),
    overrides: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                        help="Change the checkpoint's config: a.b=VALUE, e.g. data.root=DIR."),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Where confusion_matrix.png or pr_curves.png (and its "
                                       "numbers as JSON) go; default: the checkpoint's run directory, or the export's folder."),
    counts: bool = typer.Option(False, "--counts", help="Write counts (items or pixels) in the confusion matrix's "
                                                        "cells instead of each true class's share."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    fail_under: list[str] = FAIL_UNDER,
    fail_over: list[str] = FAIL_OVER,
) -> None:
    """Score a checkpoint or an exported model on its task's validation set, with the metrics training reports."""
    load_torch()
    from cvtool.model import evaluate_path
    from cvtool.resolve import enforce, gate_list

    result = evaluate_path(checkpoint_path, overrides, device, gate_list(fail_under, fail_over), out, counts)
    if as_json:
        emit(result, True)
        enforce(result["gates"], result)
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
    for name, path in result.get("pictures", {}).items():
        typer.echo(f"  {name}: {path}")
    enforce(result["gates"], result)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
