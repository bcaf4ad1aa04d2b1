"""cvtool from Python: train, load, predict, evaluate, export, stylize, list and compare runs.

    import cvtool
    run = cvtool.train("train-ssd", config="configs/demo/ssd.yaml", overrides={"optim.lr": 0.01})
    model = cvtool.load(run.checkpoints["best"])
    model.predict("photo.jpg")[0].draw()

Every function is a ``cvtool`` command without the argument parsing: the same config loading
and checks, the same files, the same numbers. Mistakes raise ``cvtool.errors`` exceptions with
the line the CLI prints (InputError, MissingResource, GateFailed, Interrupted), never SystemExit.
Nothing heavy is imported before a function is called. docs/python.md walks through it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from PIL import Image

from cvtool.errors import InputError, Interrupted
from cvtool.inputs import staged
from cvtool.model import Model, load
from cvtool.resolve import Gates, Overrides, enforce, gate_list, load_config
from cvtool.results import Classification, Detections, Result, Segmentation, Stylized

__all__ = ["train", "Run", "Best", "load", "Model", "Result", "Classification", "Detections", "Segmentation",
           "Stylized", "stylize", "runs", "compare", "config", "commands"]

ConfigArg = str | os.PathLike | Mapping[str, Any] | None


class Best(NamedTuple):
    """The run's best epoch by its task's metric (value None: no epoch was scored)."""

    metric: str | None
    value: float | None
    epoch: int | None


@dataclass(repr=False)
class Run:
    """A run directory read back: what ``cvtool.train`` returns and ``Run.open(dir)`` reads."""

    run_dir: Path
    status: str
    best: Best
    final: dict[str, Any]
    history: list[dict[str, Any]]
    checkpoints: dict[str, Path]
    summary: dict[str, Any]

    @classmethod
    def open(cls, run_dir: str | os.PathLike) -> "Run":
        """The run in ``run_dir`` (summary.json, metrics.csv, checkpoints/)."""
        from cvtool.runs import read_json, read_metrics

        folder = Path(run_dir)
        try:
            summary = read_json(folder / "summary.json")
        except ValueError as exc:
            raise InputError(f"{folder} is not a finished or running run directory: {exc}") from None
        best = summary.get("best") if isinstance(summary.get("best"), dict) else {}
        history = [{k: int(v) if k in ("epoch", "step") else v for k, v in row.items()} for row in read_metrics(folder)]
        checkpoints = {name: folder / "checkpoints" / f"{name}.pt" for name in ("best", "last")}
        return cls(run_dir=folder, status=str(summary.get("status")),
                   best=Best(best.get("metric"), best.get("value"), best.get("epoch")),
                   final=dict(summary.get("final") or {}), history=history,
                   checkpoints={k: p for k, p in checkpoints.items() if p.is_file()}, summary=summary)

    def __repr__(self) -> str:
        best = self.best
        scored = f", best {best.metric} {best.value:.4g} at epoch {best.epoch}" if best.value is not None else ""
        return f"Run({str(self.run_dir)!r}, {self.status}{scored})"

    def _repr_png_(self) -> bytes | None:
        """A notebook shows the run's curves.png."""
        curves = self.run_dir / "curves.png"
        return curves.read_bytes() if curves.is_file() else None

    def load(self, which: str = "best", *, device: str | None = None) -> Model:
        """The run's ``best`` or ``last`` checkpoint as a Model."""
        if which not in self.checkpoints:
            raise InputError(f"{self.run_dir} has no checkpoints/{which}.pt")
        return load(self.checkpoints[which], device=device)


def train(command: str, *, config: ConfigArg = None, overrides: Overrides = None, out: str | os.PathLike | None = None,
          epochs: int | None = None, device: str | None = None, seed: int | None = None,
          resume: bool | str | os.PathLike | None = None, max_steps: int | None = None, quiet: bool = False,
          fail_under: Gates = None, fail_over: Gates = None) -> Run:
    """Train ``command`` (e.g. "train-ssd") as ``cvtool <command>`` does; the finished Run.

    ``config``: a YAML file or a dict; ``overrides``: dotted keys ({"optim.lr": 0.1}), checked
    like ``--set``; ``resume``: True continues ``out``'s last checkpoint, a path that checkpoint.
    Progress is a live bar on a terminal or in a notebook, lines in a log, nothing when ``quiet``.
    Ctrl-C (a notebook's interrupt) saves ``last.pt`` and raises ``Interrupted``, whose
    ``resume`` is the call that continues the run. ``fail_under``/``fail_over`` ({"val_map50": 0.5})
    gate the best epoch as ``--fail-under``/``--fail-over`` do: GateFailed, carrying the Run.
    """
    given = {"config": config if isinstance(config, Mapping) or config is None else str(config),
             "overrides": overrides, "out": out, "epochs": epochs, "device": device, "seed": seed,
             "resume": resume, "max_steps": max_steps, "fail_under": fail_under, "fail_over": fail_over}
    argv = ["cvtool.train", command, *(f"{k}={v!r}" for k, v in given.items() if v is not None)]
    stopped: dict[str, Any] = {}
    flags = {"train.epochs": epochs, "train.device": device, "train.seed": seed, "train.max_steps": max_steps}
    try:
        result, records = start_training(command, config=config, overrides=overrides, out=out, flags=flags,
                                         resume=run_last(resume), argv=argv, stream=sys.stdout, quiet=quiet,
                                         on_stop=lambda status, run_dir, exc: stopped.update(run_dir=run_dir),
                                         gates=gate_list(fail_under, fail_over))
    except Interrupted as exc:
        if exc.resume is None or stopped.get("run_dir") is None:
            raise
        call = f"cvtool.train({command!r}, out={str(stopped['run_dir'])!r}, resume=True)"
        raise Interrupted(str(exc).replace(exc.resume, call), resume=call) from None
    finished = Run.open(result.run_dir)
    enforce(records, finished)
    return finished


def run_last(resume: bool | str | os.PathLike | None) -> str | None:
    """``train``'s ``resume`` as the CLI's: True is ``--resume`` without a path (``out``'s last.pt)."""
    from cvtool.engine.run import RESUME_LAST

    return RESUME_LAST if resume is True else None if resume is None or resume is False else str(resume)


def start_training(command: str, *, config: ConfigArg, overrides: Overrides, out: str | os.PathLike | None,
                   flags: dict[str, Any], resume: str | None, argv: list[str], stream: Any, quiet: bool = False,
                   on_stop: Any = None, gates: Sequence[Any] = (), apply_gates: bool = True) -> tuple[Any, list[dict]]:
    """The training ``train`` and the CLI's train commands run: ``flags`` are typed dotted config
    keys (None: not given), ``resume`` a checkpoint path or engine.run.RESUME_LAST. (engine.run's
    Result, the gates' records on the best epoch, also in summary.json; not enforced here). A
    seed group's member passes ``apply_gates=False``: its gates are the group's."""
    from cvtool import gates as gating
    from cvtool.engine import checkpoint, rundir, run
    from cvtool.tasks import registry

    spec = registry.get(command)
    if spec.build is None:
        raise InputError(f"{command} has no training loop" + ("; use cvtool.stylize" if command == "stylize" else ""))
    out = None if out is None else str(out)
    ckpt, path = None, None
    if resume is not None:
        path, out = run.resume_source(resume, out)
        ckpt = checkpoint.load(path)
        if ckpt.get("task") != spec.command:
            raise InputError(f"checkpoint {path} is from {ckpt.get('task')}, not {spec.command}")
    cfg = load_config(spec.config, config, overrides, flags, base=ckpt["config"] if ckpt else None)
    if ckpt is not None:
        run.check_resumable(cfg, ckpt, path)
    result = run.train(spec.command, spec.build, cfg, out=out, argv=argv, stream=stream, resume_from=ckpt,
                       resume_path=path, on_stop=on_stop, family=spec.family, gates=gates, quiet=quiet)
    records = gating.check(gates, result.summary["best_row"]) if result.main and apply_gates else []
    if records:
        rundir.update_json(result.run_dir / "summary.json", gates=records)
    return result, records


def stylize(content: Any, style: Any, *, output: str | os.PathLike | None = None, overrides: Overrides = None,
            steps: int | None = None, size: int | tuple[int, int] | str | None = None, device: str | None = None,
            preserve_color: bool | None = None, seed: int | None = None, quiet: bool = False) -> Image.Image:
    """``content`` painted in the style of ``style`` (paths or in-memory images) as ``cvtool
    stylize`` paints it; the picture, also written to ``output`` when given. ``size``: (H, W),
    the longer side, or "H,W"; ``overrides``: its dotted config keys ({"loss.style_weight": 1e5})."""
    from cvtool.engine.progress import Reporter

    flags = {"image.size": list(size) if isinstance(size, tuple) else size, "optim.steps": steps,
             "run.device": device, "image.preserve_color": preserve_color, "run.seed": seed}
    with staged([content, style]) as (inputs, private):
        target = Path(output) if output is not None else private / "stylized.png"
        stylize_files(inputs[0].path, inputs[1].path, target, overrides=overrides, flags=flags,
                      reporter=Reporter(sys.stdout, quiet=quiet), argv=["cvtool.stylize"])
        with Image.open(target) as picture:
            return picture.convert("RGB")


def stylize_files(content: Path, style: Path, output: Path, *, config: ConfigArg = None, overrides: Overrides = None,
                  flags: dict[str, Any], reporter: Any, argv: list[str], out_dir: Path | None = None,
                  force: bool = False) -> dict[str, Any]:
    """``cvtool stylize`` on files: ``flags`` are typed dotted config keys (``image.size`` may be
    "H,W" text); the run's report (output, size, seconds, run_dir ...)."""
    from cvtool.tasks import registry
    from cvtool.tasks import stylize as st

    if isinstance(flags.get("image.size"), str):
        flags = {**flags, "image.size": st.parse_size(flags["image.size"])}
    cfg = load_config(registry.get("stylize").config, config, overrides, flags)
    return st.stylize(cfg, content, style, output, out_dir=out_dir, reporter=reporter, force=force, argv=argv)


def runs(folder: str | os.PathLike | list[str | os.PathLike] = ".", *, task: str | None = None) -> list[dict[str, Any]]:
    """The runs at or under ``folder`` (or several folders), oldest first; with ``task``, that
    task's only: ``cvtool runs --json``'s list."""
    from cvtool.runs import list_runs

    folders = folder if isinstance(folder, (list, tuple)) else [folder]
    return [info.to_json() for info in list_runs([Path(f) for f in folders], task)]


def compare(runs: list[Any], *, picture: str | os.PathLike | None = None, metric: str | None = None,
            title: str | None = None, max_drop: Gates = None) -> dict[str, Any]:
    """Two or more runs of one task (Run objects or run directories; a seed group counts as its
    seeds): ``cvtool compare --json``'s object; with ``picture``, their curves overlaid into that
    PNG. ``max_drop`` ({"val_acc": 0.02}) raises GateFailed, carrying the result, when a later run's
    best falls that far under the first's, as ``--max-drop`` exits 4."""
    result = compare_report(runs, picture=picture, metric=metric, title=title, max_drop=max_drop)
    enforce(result["gates"], result)
    return result


def compare_report(runs: list[Any], *, picture: str | os.PathLike | None = None, metric: str | None = None,
                   title: str | None = None, max_drop: Gates = None) -> dict[str, Any]:
    """``compare``'s result with its ``max_drop`` records, not enforced (``cvtool compare`` prints first)."""
    from cvtool.compare import compare as overlay

    folders = [r.run_dir if isinstance(r, Run) else Path(r) for r in runs]
    return overlay(folders, metric, Path(picture) if picture is not None else None, title, gate_list(max_drop=max_drop))


def config(command: str) -> dict[str, Any]:
    """``command``'s default config as a dict (``cvtool config show`` prints it with comments);
    change it and pass it to ``train(config=...)``."""
    from cvtool import config as cfglib
    from cvtool.tasks import registry

    return cfglib.to_dict(registry.get(command).config())


def commands() -> list[str]:
    """The task commands: those ``train`` and ``config`` take (and stylize)."""
    from cvtool.tasks import registry

    return [spec.command for spec in registry.specs()]

