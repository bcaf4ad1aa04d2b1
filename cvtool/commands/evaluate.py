"""``cvtool eval``: a checkpoint scored on its task's validation set, as training scores it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from cvtool import gates as gating
from cvtool.commands.common import DEVICE_HELP, FAIL_OVER, FAIL_UNDER, JSON_HELP, emit, load_config, load_weights
from cvtool.errors import InputError
from cvtool.metrics import parse, require_known
from cvtool.tasks import registry


def evaluate(
    checkpoint_path: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by a train command."),
    overrides: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                        help="Change the checkpoint's config: a.b=VALUE, e.g. data.root=DIR."),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    fail_under: list[str] = FAIL_UNDER,
    fail_over: list[str] = FAIL_OVER,
) -> None:
    """Score a checkpoint on its task's validation set, with the metrics training reports."""
    from cvtool.engine import checkpoint, evaluation, placement, runtime, threads

    gates = parse(fail_under, "under") + parse(fail_over, "over")

    ckpt = checkpoint.load(checkpoint_path)
    command = ckpt["task"]
    spec = registry.get(command)
    if spec.build is None:
        raise InputError(f"checkpoint {checkpoint_path} is from {command}, which has no validation set")
    cfg = load_config(spec.config, None, overrides, {"train.device": device}, base=ckpt["config"],
                      settings=spec.eval_settings)
    dev = runtime.select_device(cfg.train.device)
    cfg.train.channels_last = placement.channels_last_for(cfg.train.channels_last, dev, spec.family)
    threads.start(cfg.train.threads, cfg.data.num_workers)
    runtime.seed_everything(cfg.train.seed)
    task = spec.build(cfg)
    trained_on = ckpt.get("metadata", {}).get("classes")
    found = task.metadata.get("classes")
    if trained_on is not None and found not in (None, trained_on):
        raise InputError(f"{cfg.data.root} has other classes ({few(found)}) than checkpoint {checkpoint_path} "
                         f"was trained on ({few(trained_on)})")
    if len(task.val_data) == 0:
        raise InputError(f"{command}'s validation set is empty with this config (data.root {cfg.data.root}); "
                         f"a run on every labelled image has nothing left to score")
    load_weights(task.model, ckpt, checkpoint_path)
    require_known(gates, [c for c in task.columns if c.startswith("val_")], command)
    metrics = evaluation.score(task, dev)
    result = {"task": command, "checkpoint": str(checkpoint_path), "epoch": ckpt.get("epoch"),
              "data_root": str(cfg.data.root), "items": len(task.val_data), "device": str(dev), "metrics": metrics,
              "gates": gating.check(gates, metrics)}
    if as_json:
        emit(result, True)
        gating.enforce(result["gates"])
        return
    typer.echo(f"{command}: {checkpoint_path} (epoch {ckpt.get('epoch')}) on {len(task.val_data)} "
               f"validation items from {cfg.data.root}")
    width = max(map(len, metrics), default=0)
    for name, value in metrics.items():
        typer.echo(f"  {name:<{width}}  {value:.4g}")
    gating.enforce(result["gates"])


def few(names: list[Any], shown: int = 4) -> str:
    """A class list short enough for one line of an error."""
    head = ", ".join(map(str, names[:shown]))
    return f"{len(names)}: {head}, ..." if len(names) > shown else head


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
