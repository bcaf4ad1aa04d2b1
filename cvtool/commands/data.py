"""``cvtool data fetch|synth|check|convert``; the synth kinds and their options come from the task registry."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from typer.core import TyperGroup

from cvtool.commands.common import tidy_help
from cvtool.errors import InputError
from cvtool.tasks import registry

# Help and lower bound of the size options the writers share; another writer's keyword
# becomes an option too, with a help line made from its name.
KNOWN = {
    "n_train": ("training images", 1),
    "n_val": ("validation images", 1),
    "n_test": ("unlabelled test images", 1),
    "size": ("image side in pixels", 8),
    "classes": ("classes", 2),
    "n": ("images per class in train/ (0.4 n in test/)", 1),
}


def fetch(name: str = typer.Argument(..., help="hotdog | banana-detection | voc2012 | cifar10_tiny | dog_tiny"),
          root: Optional[Path] = typer.Option(
              None, "--root", help="Target folder (default: where the configs look, e.g. data/VOCdevkit)."),
          url: Optional[str] = typer.Option(None, "--url", help="Download from this mirror URL instead.")) -> None:
    """Download a dataset archive, verify its SHA-1 and extract it safely."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from cvtool.data import hub

    arc = hub.archive(name)
    target = root or Path("data") / (arc.folder or arc.name)
    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                  console=None, disable=not sys.stderr.isatty()) as bar:
        job = bar.add_task(f"fetch {name}", total=None)
        hub.fetch(arc, target, url=url, progress=lambda done, total: bar.update(job, completed=done, total=total))
    typer.echo(f"{name} ready in {target}")


def sizes_of(writer: Callable[..., Path]) -> dict[str, Any]:
    """A writer's keyword options and their defaults (``seed`` is every writer's)."""
    return {p.name: p.default for p in inspect.signature(writer).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "seed"}


def synth_options(writers: dict[str, Callable[..., Path]]) -> list[inspect.Parameter]:
    """One ``--name`` option per writer keyword, its help naming each kind's default."""
    defaults: dict[str, dict[str, Any]] = {}
    for kind, writer in writers.items():
        for name, default in sizes_of(writer).items():
            defaults.setdefault(name, {})[kind] = default
    names = [n for n in KNOWN if n in defaults] + [n for n in defaults if n not in KNOWN]
    params = []
    for name in names:
        text, low = KNOWN.get(name, (name.replace("_", " "), None))
        per_kind = ", ".join(f"{kind} {value}" for kind, value in defaults[name].items())
        option = typer.Option(None, "--" + name.replace("_", "-"), min=low, metavar="N",
                              help=f"{text.capitalize()} (default: {per_kind}).")
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[int]))
    return params


def synth(kind: str, out: Path, seed: int, **given: Optional[int]) -> None:
    """Write a small synthetic dataset in a real on-disk format."""
    writers = registry.synth_writers()
    if kind not in writers:
        raise InputError(f"unknown synthetic dataset {kind!r}; known: {', '.join(writers)}")
    accepted = sizes_of(writers[kind])
    for key, value in given.items():
        if value is not None and key not in accepted:
            raise InputError(f"--{key.replace('_', '-')} does not apply to {kind}")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} already holds files; choose an empty or new folder")
    writers[kind](out, seed=seed, **{k: v for k, v in given.items() if v is not None})
    typer.echo(f"synthetic {kind} data written to {out}")


def synth_command() -> Callable[..., None]:
    """``synth`` with the registered kinds in its help and their writers' keywords as options."""
    writers = registry.synth_writers()

    def command(**kwargs: Any) -> None:
        synth(**kwargs)

    fixed = [
        inspect.Parameter("kind", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Argument(..., metavar="KIND", show_default=False,
                                                 help="The dataset to write: " + ", ".join(writers) + ".")),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Path,
                          default=typer.Option(..., "--out", metavar="DIR",
                                               help="Dataset folder to write (the real layout).")),
    ]
    seed = inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                             default=typer.Option(0, "--seed", help="Random seed."))
    params = [*fixed, *synth_options(writers), seed]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = synth.__doc__
    return command


FORMAT_HELP = "The layout SRC holds: auto | bananas | voc | coco | yolo (auto: found from the folder)."


def convert(src: Path = typer.Argument(..., metavar="SRC", help="A detection data folder in any layout."),
            to: str = typer.Option(..., "--to", help="Layout to write: coco | yolo | voc | bananas."),
            out: Path = typer.Option(..., "--out", metavar="DIR", help="New folder to write."),
            fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
            copy: bool = typer.Option(False, "--copy", help="Copy the images (default: symbolic links to them)."),
            as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object.")) -> None:
    """Write a detection data set in another layout: same boxes, class names and order, images linked or copied."""
    from cvtool.commands.common import emit
    from cvtool.data.convert import convert as run

    source, notes = run(src, to, out, fmt=fmt, copy=copy)
    counts = {split: len(records) for split, records in source.splits.items()}
    if as_json:
        emit({"from": source.format, "to": to, "out": str(out), "classes": source.classes, "images": counts,
              "notes": notes}, True)
        return
    typer.echo(f"{source.format} -> {to}: {', '.join(f'{n} {s}' for s, n in counts.items())} images, "
               f"{len(source.classes)} classes, written to {out}")
    for note in notes:
        typer.echo(f"  {note}")


def check(path: Path = typer.Argument(..., metavar="PATH", help="A data folder in any layout."),
          fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
          task: Optional[str] = typer.Option(
              None, "--task", metavar="COMMAND",
              help="The command the data is for: train-ssd (adds the share of boxes no anchor reaches), "
                   "train-rcnn, or train-fcn (segmentation masks)."),
          as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
          plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE",
                                              help="Draw the class histogram and box centres/sizes into FILE (PNG).")
          ) -> None:
    """Read a data folder with training's readers and report what is in it and what is wrong.

    Exit 0 when clean, 1 when it found problems (each named by file and object or line), 2 when it
    cannot be read at all.
    """
    from cvtool.commands.common import emit

    if task is not None and task not in ("train-ssd", "train-rcnn", "train-fcn"):
        raise InputError(f"--task {task!r} is not one of train-ssd, train-rcnn, train-fcn")
    if task == "train-fcn" or (task is None and fmt == "auto" and segmentation_only(path)):
        from cvtool.data import seg_check  # the segmentation layer's

        report = seg_check.check(path, fmt=fmt)
        drawn = seg_check.plot(report, plot) if plot is not None else None
    else:
        from cvtool.data import check as detection_check

        checked = detection_check.check(path, fmt=fmt, anchors=ssd_anchors() if task == "train-ssd" else None)
        report = checked.report
        drawn = detection_check.plot(checked, plot) if plot is not None else None
    if as_json:
        emit({**report, **({"plot": str(drawn)} if drawn else {})}, True)
    else:
        print_report(report, drawn)
    if report["problems"]:
        raise typer.Exit(1)


def segmentation_only(path: Path) -> bool:
    """No detection layout's mark in ``path``, and the segmentation checker recognises it."""
    from cvtool.data.detection import MARKS

    if not path.exists() or any(test(path) for test in MARKS.values()):
        return False
    try:
        from cvtool.data import seg_check
    except ImportError:
        return False
    return bool(seg_check.looks_like(path))


def ssd_anchors() -> Any:
    """TinySSD's anchors at its default image size, as shares of the image."""
    from cvtool.tasks import ssd

    cfg = ssd.Config()
    return ssd.build_model(cfg).anchors_for(cfg.data.image_size, cfg.data.image_size)


def print_report(report: dict[str, Any], drawn: Optional[Path]) -> None:
    typer.echo(f"{report['root']}: {report['format']}, {len(report['classes'])} classes "
               f"({', '.join(map(str, report['classes'][:10]))}{', ...' if len(report['classes']) > 10 else ''})")
    for split, stats in report["splits"].items():
        typer.echo(f"  {split}:")
        for key, value in stats.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            typer.echo(f"    {key.replace('_', ' ')}: {value}")
    if drawn is not None:
        typer.echo(f"  plot: {drawn}")
    problems = report["problems"]
    typer.echo(f"{len(problems)} problem(s)" + (":" if problems else "; the data is clean"))
    for p in problems:
        typer.echo(f"  [{p['split']}] {p['file']}: {p['message']}")


class SynthOnDemand(TyperGroup):
    """The ``data`` group, whose ``synth`` is built only when asked for: its options come from
    the writers' keywords, and importing the writers (numpy, PIL) would slow every command's start."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = super().list_commands(ctx)
        return names if "synth" in names else [names[0], "synth", *names[1:]]

    def get_command(self, ctx: typer.Context, name: str) -> Any:
        if name == "synth" and name not in self.commands:
            app = typer.Typer(add_completion=False)
            app.command("synth")(synth_command())
            command = typer.main.get_command(app)
            tidy_help(command)
            self.add_command(command, name)
        return super().get_command(ctx, name)


def register(parent: typer.Typer) -> None:
    app = typer.Typer(cls=SynthOnDemand, no_args_is_help=True, help="Fetch, write, check and convert datasets.")
    app.command("fetch")(fetch)
    app.command("check")(check)
    app.command("convert")(convert)
    parent.add_typer(app, name="data")
