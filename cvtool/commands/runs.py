"""``cvtool runs`` and ``cvtool compare``: the runs already on disk, listed and overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from cvtool.commands.common import JSON_HELP, emit


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def value(number: float | None, digits: int = 4) -> str:
    return "-" if number is None else f"{number:.{digits}g}"


def row(info: dict[str, Any]) -> list[str]:
    """One run of ``cvtool.runs()`` (``runs --json``'s entries) as table cells."""
    epochs = "-" if info["epochs_done"] is None else f"{info['epochs_done']}/{info['epochs'] if info['epochs'] else '?'}"
    best = "-"
    if info["best_value"] is not None and "seeds" in info:
        spread = f"±{value(info['best_std'], 2)}" if info["best_std"] is not None else ""
        best = f"{info['best_metric']}={value(info['best_value'])}{spread} ({info['seeds']} seeds)"
    elif info["best_value"] is not None:
        best = f"{info['best_metric']}={value(info['best_value'])}@{info['best_epoch']}"
    status = info["status"] if info["reason"] is None else f"{info['status']}: {info['reason']}"
    started = (info["started_iso"] or "-")[:16]
    return [info["task"] or "?", status, epochs, best, value(info["images_per_second"], 3),
            duration(info["wall_seconds"]), started, info["run_dir"]]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def runs(
    folders: Optional[list[Path]] = typer.Argument(None, help="Folders holding run directories (default runs/)."),
    task: Optional[str] = typer.Option(None, "--task", help="Only this task's runs, e.g. finetune-hotdog."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as one JSON list."),
    seeds: bool = typer.Option(False, "--seeds", help="Each folder is a seed group (seed-0, seed-1, ... run "
                                                      "anywhere): write its seeds.json and print the spread."),
) -> None:
    """List the runs under the folders: status, epochs, best metric, speed, time; oldest first."""
    from cvtool.api import runs as listed

    if seeds:
        summarise_seeds(folders or [Path("runs")], as_json)
        return

    infos = listed(list(folders or [Path("runs")]), task=task)
    if as_json:
        emit(infos, True)
        return
    if not infos:
        typer.echo(f"no runs under {', '.join(map(str, folders or [Path('runs')]))}"
                   + (f" for {task}" if task else ""))
        return
    header = ["task", "status", "epochs", "best", "img/s", "wall", "started", "run dir"]
    typer.echo(table([row(i) for i in infos], header))


def summarise_seeds(folders: list[Path], as_json: bool) -> None:
    from cvtool import seeds as seedlib
    from cvtool.engine.lock import RunLock

    records = []
    for folder in folders:
        record = seedlib.summarise(folder)
        with RunLock(folder).acquire(["cvtool", "runs", str(folder), "--seeds"]):
            seedlib.write(folder, record)
        records.append(record)
        if not as_json:
            typer.echo(seedlib.table(record))
            typer.echo(f"wrote {folder / seedlib.FILE}")
    emit(records[0] if len(records) == 1 else records, as_json)


def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories of the same task."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Metric of the table (default: the runs' best metric)."),
    out: Path = typer.Option(Path("compare.png"), "--out", "-o", help="Picture to write."),
    title: Optional[str] = typer.Option(None, "--title", help="The picture's title (default: task and metric)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    max_drop: list[str] = typer.Option(
        [], "--max-drop", metavar="METRIC=DELTA",
        help="Exit 4 if a later run's best METRIC is worse than the first run's (the baseline) by more than "
             "DELTA, in the metric's own direction (repeatable), e.g. val_acc=0.02."),
) -> None:
    """Overlay runs' curves in one picture; table the best --metric; name the config keys that differ."""
    from cvtool.api import compare_report
    from cvtool.resolve import enforce

    result = compare_report(run_dirs, picture=out, metric=metric, title=title, max_drop=max_drop)
    if as_json:
        emit(result, True)
        enforce(result["gates"], result)
        return
    x = result["x"]
    rows = [[r["label"], value(r["best"]), "-" if r[x] is None else f"{r[x]:g}", r["run_dir"]] for r in result["runs"]]
    typer.echo(table(rows, ["run", f"best {result['metric']} ({result['mode']})", f"at {x}", "run dir"]))
    diff = result["differing"]
    if diff:
        typer.echo("config keys that differ:")
        width = max(map(len, diff))
        for key, values in diff.items():
            typer.echo(f"  {key:<{width}}  {' | '.join(map(str, values))}")
    else:
        typer.echo("the runs' configs are identical")
    typer.echo(f"wrote {result['picture']}")
    for record in result["gates"]:
        typer.echo(f"{'passed' if record['passed'] else 'FAILED'}: {record['run_dir']} {record['metric']} "
                   f"{value(record['value'])} vs {value(record['baseline'])} in {record['baseline_dir']} "
                   f"(--max-drop {record['bound']:g})")
    enforce(result["gates"], result)


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)
    app.command("compare")(compare)
