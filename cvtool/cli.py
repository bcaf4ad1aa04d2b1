"""The ``cvtool`` command line: thin commands over config, tasks and the trainer.

This is the only module that prints results, reads argv or chooses the exit code:
everything below raises cvtool.errors, and ``main`` turns those into one line on
stderr and the documented exit code (0 ok, 2 bad input, 3 missing, 130 interrupted).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

import typer

import cvtool
from cvtool import config as cfglib
from cvtool import tasks
from cvtool.errors import CvtoolError, InputError, Interrupted

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and run the classic computer-vision tasks end to end.")
config_app = typer.Typer(no_args_is_help=True, help="Show or check task configs.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch real datasets or write synthetic ones.")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")

RESUME_LAST = "@last"
RESUME_LOCKED = ("optim", "sched")
KAGGLE_TASKS = ("train-cifar", "train-dog")  # the ones whose predict writes a submission.csv
SYNTHS = {
    "hotdog": "cvtool.data.hotdog:synthesize",
    "bananas": "cvtool.data.bananas:synthesize",
    "voc": "cvtool.data.voc:synthesize",
    "cifar": "cvtool.data.kaggle:synthesize_cifar",
    "dogs": "cvtool.data.kaggle:synthesize_dogs",
}


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cvtool {cvtool.__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                      help="Print the version and exit."),
         debug: bool = typer.Option(False, "--debug", help="Show a traceback for unexpected errors.")) -> None:
    if debug:
        os.environ["CVTOOL_DEBUG"] = "1"


def emit(result: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")


# --------------------------------------------------------------------------- training


def load_config(command: str, config: Optional[Path], overrides: list[str], flags: dict[str, Any],
                base: dict | None = None) -> Any:
    module = tasks.module(command)
    sets = list(overrides)
    sets += [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    if base is not None and config is None:
        data = copy.deepcopy(base)
        for item in sets:
            cfglib.set_dotted(data, *cfglib.parse_override(item))
        return cfglib.from_dict(module.Config, data)
    return cfglib.load(module.Config, config, sets)


def resume_checkpoint(resume: str, out: Optional[str]) -> tuple[Path, str]:
    """The checkpoint to resume and the run directory it belongs to."""
    from cvtool.engine import checkpoint

    if resume == RESUME_LAST:
        if out is None:
            raise InputError("--resume without a path needs --out RUN_DIR (the run to continue)")
        path = Path(out) / "checkpoints" / "last.pt"
        if not path.exists():
            raise InputError(f"nothing to resume: {path} does not exist")
    else:
        path = Path(resume)
        if not path.exists():
            raise InputError(f"nothing to resume: checkpoint {path} does not exist")
    checkpoint.load(path)
    return path, out if out is not None else str(path.parent.parent)


def check_resumable(cfg: Any, ckpt: dict[str, Any], path: Path) -> None:
    """--resume restores the saved optimizer and schedule, so their settings cannot change under it."""
    now, saved = cfglib.to_dict(cfg), ckpt["config"]
    for section in RESUME_LOCKED:
        for key, value in now.get(section, {}).items():
            before = saved.get(section, {}).get(key, value)
            if before != value:
                raise InputError(f"{section}.{key} is {value!r} but checkpoint {path} was trained with {before!r}; "
                                 f"--resume continues the saved optimizer and schedule, so "
                                 f"{' and '.join(s + '.*' for s in RESUME_LOCKED)} cannot change "
                                 "(start a new run to train with other settings)")


def train_command(command: str, config: Optional[Path], overrides: list[str], out: Optional[str],
                  epochs: Optional[int], device: Optional[str], seed: Optional[int], resume: Optional[str],
                  max_steps: Optional[int], as_json: bool) -> None:
    from cvtool.engine import checkpoint, rundir, runtime, trainer
    from cvtool.engine.progress import Reporter

    module = tasks.module(command)
    ckpt, path = None, None
    if resume is not None:
        path, out = resume_checkpoint(resume, out)
        ckpt = checkpoint.load(path)
        if ckpt.get("task") != command:
            raise InputError(f"checkpoint {path} is from {ckpt.get('task')}, not {command}")
    flags = {"train.epochs": epochs, "train.device": device, "train.seed": seed, "train.max_steps": max_steps}
    cfg = load_config(command, config, overrides, flags, base=ckpt["config"] if ckpt else None)
    if ckpt is not None:
        check_resumable(cfg, ckpt, path)
    procs = runtime.processes_from_env()
    dev = runtime.select_device(cfg.train.device, procs.local_rank)
    runtime.init_processes(procs, dev)
    try:
        run_dir = runtime.broadcast(rundir.choose(command, out, resuming=ckpt is not None) if procs.main else None)
        runtime.seed_everything(cfg.train.seed)
        reporter = Reporter(sys.stderr if as_json else sys.stdout, quiet=not procs.main)
        if not procs.main:
            runtime.barrier()
        task = module.build(cfg, rank_zero=procs.main)
        if procs.main:
            runtime.barrier()
        runtime.seed_everything(cfg.train.seed + procs.rank)
        run = trainer.Run(run_dir=run_dir, device=dev, argv=["cvtool", *sys.argv[1:]], resume_from=ckpt,
                          resume_path=path, procs=procs)
        fit = trainer.Trainer(task, run, reporter)  # its checks need the task; they write nothing
        reporter.info(f"{command}: {len(task.train_data)} train / {len(task.val_data)} val items on {dev}"
                      f"{f' x {procs.world} processes' if procs.distributed else ''}; writing {run_dir}")
        try:
            summary = fit.fit()
        except Interrupted as exc:
            emit({"status": "interrupted", "run_dir": str(run_dir), "message": str(exc)}, as_json and procs.main)
            raise
        except Exception as exc:
            message = one_line(exc) if isinstance(exc, CvtoolError) else unexpected(exc)
            emit({"status": "failed", "run_dir": str(run_dir), "error": message}, as_json and procs.main)
            raise
    finally:
        runtime.close_processes()
    if not procs.main:
        return
    best = summary["best"]
    files = ", ".join(["summary.json", *(Path(v).name for k, v in summary["paths"].items()
                                         if k not in ("run_dir", "config", "last", "best")), "checkpoints/"])
    reporter.info(f"done: best {best['metric']} = {best['value']:.4g} at epoch {best['epoch']}; "
                  f"results in {run_dir} ({files})"
                  if best["value"] is not None else f"done: results in {run_dir} ({files})")
    emit({"status": summary["status"], "run_dir": str(run_dir), "best": best, "final": summary["final"]}, as_json)


def make_train_command(command: str, summary: str) -> None:
    def run(
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file."),
        overrides: list[str] = typer.Option([], "--set", "-s", help="Override a key: a.b=VALUE (YAML value)."),
        out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<command>/expN)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Number of epochs."),
        device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
        resume: Optional[str] = typer.Option(
            None, "--resume", metavar="[PATH]",
            help="Continue a run: from PATH, or without a path from --out's checkpoints/last.pt."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="At most N batches per epoch."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON result object on stdout."),
    ) -> None:
        train_command(command, config, overrides, out, epochs, device, seed, resume, max_steps, as_json)

    run.__doc__ = summary
    app.command(command, help=summary)(run)


make_train_command("finetune-hotdog", "Fine-tune an ImageNet ResNet-18 on the hotdog / not-hotdog folders.")
make_train_command("train-ssd", "Train TinySSD on the banana detection dataset.")
make_train_command("train-fcn", "Train an FCN for semantic segmentation on Pascal VOC2012.")
make_train_command("train-cifar", "Train on CIFAR-10 in the Kaggle layout and write submission.csv.")
make_train_command("train-dog", "Classify 120 dog breeds on pretrained ResNet-34 features.")


@app.command("stylize")
def stylize(
    content: Path = typer.Argument(..., help="Content image."),
    style: Path = typer.Argument(..., help="Style image."),
    output: Path = typer.Option(Path("stylized.png"), "--output", "-o",
                                help="Output image; format from the extension."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Override a key: a.b=VALUE (YAML value)."),
    size: Optional[str] = typer.Option(None, "--size", help="Output H,W, or one number: the longer side."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimisation steps in all."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (noise init)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Also write metrics.csv, summary.json, snapshots."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="With --out-dir: a snapshot every N steps."),
    preserve_color: Optional[bool] = typer.Option(None, "--preserve-color/--no-preserve-color",
                                                  help="Transfer luminance only; keep the content's colours."),
    content_weight: Optional[float] = typer.Option(None, "--content-weight", help="Weight of the content loss."),
    style_weight: Optional[float] = typer.Option(None, "--style-weight", help="Weight of the style loss."),
    tv_weight: Optional[float] = typer.Option(None, "--tv-weight", help="Weight of the smoothness loss."),
    scales: Optional[int] = typer.Option(None, "--scales", help="Optimise at K doubling sizes (1 = output size only)."),
    init: Optional[str] = typer.Option(None, "--init", help="content | noise."),
    style_scale: Optional[float] = typer.Option(
        None, "--style-scale", help="Style image size relative to the output (smaller = bigger strokes)."),
    force: bool = typer.Option(False, "--force", help="Run even if the estimated memory need exceeds what is free."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON result object on stdout."),
) -> None:
    """Neural style transfer: paint CONTENT in the style of STYLE."""
    from cvtool.engine.progress import Reporter

    module = tasks.module("stylize")
    flags = {"image.size": module.parse_size(size) if size is not None else None, "optim.steps": steps,
             "run.device": device, "run.seed": seed, "run.save_every": save_every,
             "image.preserve_color": preserve_color, "loss.content_weight": content_weight,
             "loss.style_weight": style_weight, "loss.tv_weight": tv_weight, "run.scales": scales,
             "image.init": init, "image.style_scale": style_scale}
    cfg = load_config("stylize", config, overrides, flags)
    reporter = Reporter(sys.stderr if as_json else sys.stdout)
    result = module.stylize(cfg, content, style, output, out_dir=out_dir, reporter=reporter, force=force,
                            argv=["cvtool", *sys.argv[1:]])
    height, width = result["size"]
    reporter.info(f"wrote {result['output']} ({height}x{width}) in {result['seconds']:.1f} s "
                  f"({result['ms_per_step']:.0f} ms/step)"
                  + (f"; run files in {result['run_dir']}" if result["run_dir"] else ""))
    emit(result, as_json)


# --------------------------------------------------------------------------- predict


@app.command("predict")
def predict(
    checkpoint_path: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by a train command."),
    images: list[Path] = typer.Argument(None, help="Images (or folders of images) to run the model on."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for pictures or files the task writes."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Detection score threshold."),
    kaggle_test: Optional[Path] = typer.Option(None, "--kaggle-test", help="Kaggle test folder: write submission.csv."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as one JSON list."),
) -> None:
    """Run a trained checkpoint on images (the checkpoint says which task it is)."""
    from cvtool.engine import checkpoint, runtime

    ckpt = checkpoint.load(checkpoint_path)
    command = ckpt["task"]
    module = tasks.module(command)
    cfg = cfglib.from_dict(module.Config, ckpt["config"])
    if not images and kaggle_test is None:
        raise InputError("give at least one IMAGE (or --kaggle-test DIR)")
    if kaggle_test is not None:
        if command not in KAGGLE_TASKS:
            raise InputError(f"--kaggle-test is for {' and '.join(KAGGLE_TASKS)} checkpoints; "
                             f"{checkpoint_path} is from {command}")
        if not kaggle_test.is_dir():
            raise InputError(f"--kaggle-test {kaggle_test} is not a folder")
        submission = (out or Path(".")) / "submission.csv"
        if submission.exists():
            raise InputError(f"{submission} already exists; remove it or pass --out DIR")
    if threshold is not None and command != "train-ssd":
        raise InputError(f"--threshold is for train-ssd checkpoints; {checkpoint_path} is from {command}")
    images = expand_images(images or [])
    dev = runtime.select_device(device)
    model = module.build_model(cfg)
    load_weights(model, ckpt, checkpoint_path)
    model.to(dev).eval()
    options = {k: v for k, v in {"out": out, "threshold": threshold, "kaggle_test": kaggle_test}.items()
               if v is not None}
    results = module.predict(model, cfg, ckpt.get("metadata", {}), images, dev, options)
    if as_json:
        emit(results, True)
        return
    for r in results:
        typer.echo(format_prediction(r))


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for the images directly inside it, in name order."""
    from cvtool.data.images import IMAGE_SUFFIXES

    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise InputError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found += inside
        elif not path.exists():
            raise InputError(f"image {path} does not exist")
        elif not path.is_file():
            raise InputError(f"image {path} is not a file")
        else:
            found.append(path)
    return found


def load_weights(model: Any, ckpt: dict[str, Any], path: Path) -> None:
    from cvtool.engine import checkpoint

    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"checkpoint {path} does not fit {ckpt['task']}'s model: {checkpoint.mismatch(exc)}") from None


def format_prediction(result: dict[str, Any]) -> str:
    key = "image" if "image" in result else "test_dir"
    head = result.get(key, "")
    if "class" in result:
        return f"{head}: {result['class']} ({result['probability']:.3f})"
    rest = {k: v for k, v in result.items() if k != key}
    return f"{head}: {json.dumps(rest, default=str)}"


# --------------------------------------------------------------------------- eval


@app.command("eval")
def evaluate(
    checkpoint_path: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by a train command."),
    overrides: list[str] = typer.Option([], "--set", "-s",
                                        help="Change the checkpoint's config: a.b=VALUE, e.g. data.root=DIR."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON result object on stdout."),
) -> None:
    """Score a checkpoint on its task's validation set, with the metrics training reports."""
    import torch

    from cvtool.engine import checkpoint, runtime, trainer

    ckpt = checkpoint.load(checkpoint_path)
    command = ckpt["task"]
    module = tasks.module(command)
    if not hasattr(module, "build"):
        raise InputError(f"checkpoint {checkpoint_path} is from {command}, which has no validation set")
    sets = [*overrides, *(f"{key}={json.dumps(value)}" for key, value in getattr(module, "EVAL_SETTINGS", {}).items())]
    cfg = load_config(command, None, sets, {"train.device": device}, base=ckpt["config"])
    dev = runtime.select_device(cfg.train.device)
    runtime.seed_everything(cfg.train.seed)
    task = module.build(cfg)
    trained_on = ckpt.get("metadata", {}).get("classes")
    found = task.metadata.get("classes")
    if trained_on is not None and found not in (None, trained_on):
        raise InputError(f"{cfg.data.root} has other classes ({few(found)}) than checkpoint {checkpoint_path} "
                         f"was trained on ({few(trained_on)})")
    if len(task.val_data) == 0:
        raise InputError(f"{command}'s validation set is empty with this config (data.root {cfg.data.root}); "
                         f"a run on every labelled image has nothing left to score")
    load_weights(task.model, ckpt, checkpoint_path)
    model = task.model.to(dev).eval()
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    runtime.configure(dev, cfg.train.deterministic)
    metrics = trainer.evaluate(task, model, trainer.val_loader(task, dev), dev,
                               runtime.amp_dtype(dev, cfg.train.amp), cfg.train.channels_last)
    result = {"task": command, "checkpoint": str(checkpoint_path), "epoch": ckpt.get("epoch"),
              "data_root": str(cfg.data.root), "items": len(task.val_data), "device": str(dev), "metrics": metrics}
    if as_json:
        emit(result, True)
        return
    typer.echo(f"{command}: {checkpoint_path} (epoch {ckpt.get('epoch')}) on {len(task.val_data)} "
               f"validation items from {cfg.data.root}")
    width = max(map(len, metrics), default=0)
    for name, value in metrics.items():
        typer.echo(f"  {name:<{width}}  {value:.4g}")


def few(names: list[Any], shown: int = 4) -> str:
    """A class list short enough for one line of an error."""
    head = ", ".join(map(str, names[:shown]))
    return f"{len(names)}: {head}, ..." if len(names) > shown else head


# --------------------------------------------------------------------------- config


@config_app.command("show")
def config_show(task: str = typer.Argument(..., help="A train command, e.g. finetune-hotdog.")) -> None:
    """Print the full default config with comments."""
    module = tasks.module(task)
    typer.echo(f"# cvtool {task} defaults", nl=True)
    typer.echo(cfglib.render(module.Config()), nl=False)


@config_app.command("validate")
def config_validate(file: Path = typer.Argument(..., help="A YAML config file."),
                    task: Optional[str] = typer.Option(None, "--task", help="Check against this task only.")) -> None:
    """Check a config file; with no --task, against every task."""
    names = [task] if task else [n for n in tasks.COMMANDS if tasks.available(n)]
    errors: dict[str, CvtoolError] = {}
    fits = []
    for name in names:
        try:
            cfglib.load(tasks.module(name).Config, file)
            fits.append(name)
        except CvtoolError as exc:
            errors[name] = exc
    if fits:
        typer.echo(f"{file}: valid config for {', '.join(fits)}")
        return
    guess = next((n for n in names if n.split("-")[-1] in file.stem), names[0])
    raise errors[guess]


# --------------------------------------------------------------------------- data


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="hotdog | banana-detection | voc2012 | cifar10_tiny | dog_tiny"),
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


@data_app.command("synth")
def data_synth(kind: str = typer.Argument(..., help=" | ".join(SYNTHS)),
               out: Path = typer.Option(..., "--out", help="Dataset folder to write (the real layout)."),
               n_train: Optional[int] = typer.Option(None, "--n-train", min=1),
               n_val: Optional[int] = typer.Option(None, "--n-val", min=1),
               n_test: Optional[int] = typer.Option(None, "--n-test", min=1),
               size: Optional[int] = typer.Option(None, "--size", min=8),
               classes: Optional[int] = typer.Option(None, "--classes", min=2),
               n: Optional[int] = typer.Option(None, "--n", min=1, help="Images per class (hotdog)."),
               seed: int = typer.Option(0, "--seed")) -> None:
    """Write a small synthetic dataset in a real on-disk format."""
    if kind not in SYNTHS:
        raise InputError(f"unknown synthetic dataset {kind!r}; known: {', '.join(SYNTHS)}")
    module_name, func_name = SYNTHS[kind].split(":")
    try:
        func = getattr(__import__(module_name, fromlist=[func_name]), func_name)
    except ImportError:
        raise InputError(f"synthetic {kind} data is not built yet") from None
    given = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "size": size, "classes": classes, "n": n}
    accepted = inspect.signature(func).parameters
    for key, value in given.items():
        if value is not None and key not in accepted:
            raise InputError(f"--{key.replace('_', '-')} does not apply to {kind}")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} already holds files; choose an empty or new folder")
    func(out, seed=seed, **{k: v for k, v in given.items() if v is not None})
    typer.echo(f"synthetic {kind} data written to {out}")


# --------------------------------------------------------------------------- entry


def normalize_argv(argv: list[str]) -> list[str]:
    """Let ``--resume`` stand alone: click options cannot take an optional value."""
    out = []
    for i, arg in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--resume" and (following is None or following.startswith("-")):
            out.append(f"--resume={RESUME_LAST}")
        else:
            out.append(arg)
    return out


def one_line(exc: CvtoolError) -> str:
    """The user's message, also when a DataLoader worker wrapped it in its traceback."""
    text = str(exc).strip()
    if "Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    return last.split(": ", 1)[1] if last.startswith(type(exc).__module__) else last


def unexpected(exc: BaseException) -> str:
    """An error cvtool did not foresee, as its type and first line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def main(argv: list[str] | None = None) -> int:
    args = normalize_argv(list(sys.argv[1:] if argv is None else argv))
    command = typer.main.get_command(app)
    rank = os.environ.get("RANK", "0")
    who = "cvtool" if rank == "0" else f"cvtool[rank {rank}]"  # under torchrun a failure may be one rank's
    try:
        code = command.main(args=args, prog_name="cvtool", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except Interrupted as exc:
        if rank == "0":  # every rank stops together; rank 0 saved and says how to resume
            print(f"{who}: interrupted: {exc}", file=sys.stderr)
        return exc.exit_code
    except CvtoolError as exc:
        print(f"{who}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except typer.Abort:
        print(f"{who}: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        message = exc.format_message()
        if message:
            print(f"{who}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence, by design
        if os.environ.get("CVTOOL_DEBUG"):
            traceback.print_exc()
        print(f"{who}: unexpected error: {unexpected(exc)} (rerun with --debug for a traceback)", file=sys.stderr)
        return 1


def run() -> None:
    sys.exit(main())
