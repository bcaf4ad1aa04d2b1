"""One ``cvtool <task>`` training command per registered trainable task."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from cvtool import gates as gating
from cvtool import metrics
from cvtool.commands.common import (CONFIG_OPTION, DEVICE_HELP, FAIL_OVER, FAIL_UNDER, JSON_HELP, SET_OPTION, describe,
                                    emit, load_torch)
from cvtool.errors import InputError
from cvtool.metrics import Gate
from cvtool.tasks import registry
from cvtool.tasks.registry import TaskSpec


def train(spec: TaskSpec, config: Optional[Path], overrides: list[str], out: Optional[str],
          flags: dict[str, Any], resume: Optional[str], as_json: bool, gates: list[Gate] = (),
          one_of_seeds: bool = False) -> Any:
    """One run; ``one_of_seeds``: a member of a seed group, whose gates and --json are the group's."""
    from cvtool.api import start_training

    def on_stop(status: str, run_dir: Optional[Path], exc: BaseException) -> None:
        detail = {"message": str(exc)} if status == "interrupted" else {"error": describe(exc)}
        emit({"status": status, "run_dir": str(run_dir) if run_dir else None, **detail}, as_json)

    result, records = start_training(spec.command, config=config, overrides=overrides, out=out, flags=flags,
                                     resume=resume, argv=["cvtool", *sys.argv[1:]],
                                     stream=sys.stderr if as_json else sys.stdout, on_stop=on_stop, gates=gates,
                                     apply_gates=not one_of_seeds)
    if one_of_seeds:
        if result.main:
            report(result, False, [])
        return result
    if result.main:
        report(result, as_json, records)
        gating.enforce(records)


def report(result: Any, as_json: bool, records: list[dict]) -> None:
    summary, run_dir = result.summary, result.run_dir
    best = summary["best"]
    files = ", ".join(["summary.json", *(Path(v).name for k, v in summary["paths"].items()
                                         if k not in ("run_dir", "config", "last", "best")), "checkpoints/"])
    result.reporter.info(f"done: best {best['metric']} = {best['value']:.4g} at epoch {best['epoch']}; "
                         f"results in {run_dir} ({files})"
                         if best["value"] is not None else f"done: results in {run_dir} ({files})")
    emit({"status": summary["status"], "run_dir": str(run_dir), "best": best, "final": summary["final"],
          "gates": records}, as_json)


def train_seeds(spec: TaskSpec, config: Optional[Path], overrides: list[str], out: Optional[str],
                flags: dict[str, Any], resume: Optional[str], as_json: bool, gates: list[Gate], seeds: list[int],
                gate_on: str) -> None:
    """Each seed a normal run in ``out/seed-N`` one after another (under torchrun each on every
    process); with --resume, completed seeds are kept and interrupted ones continued. Then
    seeds.json, the table and the gates on the group's mean (or worst seed)."""
    from cvtool import seeds as seedlib
    from cvtool.engine import lock, rundir, runtime
    from cvtool.engine.run import RESUME_LAST

    if flags.get("train.seed") is not None:
        raise InputError("--seed and --seeds exclude each other")
    if gate_on not in ("mean", "min"):
        raise InputError(f"--gate-on {gate_on!r}: expected mean or min")
    if resume not in (None, RESUME_LAST):
        raise InputError("--seeds resumes each seed's own checkpoint: pass --resume without a path")
    group = rundir.target(spec.command, out)
    main = runtime.processes_from_env().main
    held = lock.RunLock(group).acquire(["cvtool", *sys.argv[1:]]) if main else None
    try:
        for seed in seeds:
            where = seedlib.folder(group, seed)
            if resume and rundir.status(where) == "completed":
                continue
            again = RESUME_LAST if resume and (where / "checkpoints" / "last.pt").is_file() else None
            train(spec, config, overrides, str(where), {**flags, "train.seed": seed}, again, as_json, gates,
                  one_of_seeds=True)
        if not main:
            return
        record = seedlib.summarise(group)
        record["gates"] = gating.check(gates, seedlib.gated(record, gates, gate_on))
        record["gate_on"] = gate_on
        seedlib.write(group, record)
    finally:
        if held is not None:
            held.release()
    emit(record, as_json)
    if not as_json:
        typer.echo(seedlib.table(record))
    gating.enforce(record["gates"])


def add_train_command(app: typer.Typer, spec: TaskSpec) -> None:
    def command(
        config: Optional[Path] = CONFIG_OPTION,
        overrides: list[str] = SET_OPTION,
        out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<command>/expN)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Number of epochs."),
        device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
        resume: Optional[str] = typer.Option(
            None, "--resume", metavar="[PATH]",
            help="Continue a run: from PATH, or without a path from --out's checkpoints/last.pt."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="At most N batches per epoch."),
        as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
        fail_under: list[str] = FAIL_UNDER,
        fail_over: list[str] = FAIL_OVER,
        seeds: Optional[str] = typer.Option(
            None, "--seeds", metavar="0,1,2",
            help="Run once per seed, in --out/seed-N, then write --out/seeds.json with each metric's spread."),
        gate_on: str = typer.Option("mean", "--gate-on", metavar="mean|min",
                                    help="With --seeds: gate the seeds' mean, or the worst seed (min)."),
    ) -> None:
        load_torch()
        flags = {"train.epochs": epochs, "train.device": device, "train.seed": seed, "train.max_steps": max_steps}
        gates = metrics.parse(fail_under, "under") + metrics.parse(fail_over, "over")
        if seeds is not None:
            from cvtool.seeds import parse

            train_seeds(spec, config, overrides, out, flags, resume, as_json, gates, parse(seeds), gate_on)
        else:
            train(spec, config, overrides, out, flags, resume, as_json, gates)

    command.__doc__ = spec.summary
    app.command(spec.command, help=spec.summary)(command)


def add_missing_command(app: typer.Typer, name: str) -> None:
    """A declared command whose module is absent: listed, and says so when run."""
    def command(ctx: typer.Context) -> None:
        registry.get(name)

    app.command(name, help="(not built yet)", add_help_option=False,
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(command)


def register(app: typer.Typer) -> None:
    for spec in registry.specs():
        if spec.build is not None:
            add_train_command(app, spec)
    for name in registry.missing():
        add_missing_command(app, name)
