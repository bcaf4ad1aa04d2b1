"""``cvtool predict``: a checkpoint on images; the checkpoint says which task it is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from cvtool import config as cfglib
from cvtool.commands.common import DEVICE_HELP, emit, load_weights
from cvtool.errors import InputError
from cvtool.files import json_text
from cvtool.tasks import outputs, registry
from cvtool.tasks.registry import TaskSpec


def predict(
    checkpoint_path: Path = typer.Option(..., "--checkpoint",
                                         help="A checkpoint written by a train command, or an exported .onnx / "
                                              ".torchscript model."),
    images: list[Path] = typer.Argument(None, metavar="IMAGE", help="Images (or folders of images) to run the model on."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for pictures or files the task writes."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Detection score threshold."),
    kaggle_test: Optional[Path] = typer.Option(None, "--kaggle-test", help="Kaggle test folder: write submission.csv."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads_opt: str = typer.Option("auto", "--threads", help="CPU threads: N, or auto (the CPUs this process "
                                    "may use; OMP_NUM_THREADS, when set, replaces auto)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files already in --out (default: stop, exit 2)."),
    every: Optional[int] = typer.Option(None, "--every", help="Videos: run the model on every Nth frame (each "
                                        "output stands for the frames up to the next)."),
    smooth: Optional[float] = typer.Option(None, "--smooth", help="Style networks on videos: blend each output "
                                           "with the previous one where the input barely changed (0..1, e.g. 0.6)."),
    preserve_color: bool = typer.Option(False, "--preserve-color", help="Style networks: keep the input's colours."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print JSON: a list, one object per image (--kaggle-test: one object); "
                                      "boxes are x1, y1, x2, y2 in the image's pixels, clipped to it."),
) -> None:
    """Run a trained checkpoint, or a model `cvtool export` wrote, on images (it says which task it is)."""
    from cvtool.data.video import is_video
    from cvtool.engine import threads

    threads.start(parse_threads(threads_opt), key="--threads")
    spec, cfg, materialise = open_model(checkpoint_path, device)
    if not images and kaggle_test is None:
        raise InputError("give at least one IMAGE (or --kaggle-test DIR)")
    if kaggle_test is not None:
        check_option(spec, checkpoint_path, "kaggle_test")
        if not kaggle_test.is_dir():
            raise InputError(f"--kaggle-test {kaggle_test} is not a folder")
        outputs.refuse_existing([(out or Path(".")) / "submission.csv"], overwrite)
    if threshold is not None:
        check_option(spec, checkpoint_path, "threshold")
    for option, value in (("smooth", smooth), ("preserve_color", preserve_color or None)):
        if value is not None:
            check_option(spec, checkpoint_path, option)
    from cvtool.engine.progress import Reporter
    from cvtool.tasks.video import plan as video_plan, predict_video as video_run

    images = expand_images(images or [])
    videos = [p for p in images if is_video(p)]
    images = [p for p in images if not is_video(p)]
    check_video_options(videos, every, smooth)
    options = {k: v for k, v in {"out": out, "threshold": threshold, "kaggle_test": kaggle_test,
                                 "overwrite": overwrite or None, "preserve_color": preserve_color or None,
                                 }.items() if v is not None}
    clips = [video_plan(spec, clip, out or Path("."), overwrite) for clip in videos]  # refused before any work
    model, metadata, dev = materialise()
    results = spec.predict(model, cfg, metadata, images, dev, options) if images or kaggle_test else []
    for planned in clips:
        results.append(video_run(spec, model, cfg, metadata, planned, dev, options, every or 1, smooth,
                                 Reporter(sys.stderr if as_json else sys.stdout)))
    if as_json:
        emit(as_object(results) if kaggle_test is not None else results, True)
        return
    for r in results:
        typer.echo(format_prediction(r))


def open_model(checkpoint_path: Path, device: str) -> tuple[TaskSpec, Any, Callable[[], tuple[Any, dict, Any]]]:
    """(spec, config, materialise) of a checkpoint or an export; ``materialise()`` builds the model,
    in eval mode on its device, with its metadata and device (after the caller's option checks)."""
    from cvtool.engine import checkpoint, runtime
    from cvtool.export import predict as exported

    loaded = exported.load(checkpoint_path, device) if exported.is_export(checkpoint_path) else None
    ckpt = checkpoint.load(checkpoint_path) if loaded is None else {}
    spec = registry.get(ckpt["task"]) if loaded is None else loaded.spec
    if spec.predict is None or spec.build_model is None:
        raise InputError(f"checkpoint {checkpoint_path} is from {spec.command}, which has no predict")
    cfg = cfglib.from_dict(spec.config, ckpt["config"]) if loaded is None else loaded.config

    def materialise() -> tuple[Any, dict, Any]:
        if loaded is None:
            dev = runtime.select_device(device)
            model = spec.build_model(cfg)
            load_weights(model, ckpt, checkpoint_path)
            metadata = ckpt.get("metadata", {})
        else:  # the export runs itself (ONNX Runtime places itself); its torch side stays on the CPU
            dev, model, metadata = runtime.select_device("cpu"), loaded.model, loaded.metadata
        model.to(dev).eval()
        return model, metadata, dev

    return spec, cfg, materialise


def check_video_options(videos: list[Path], every: int | None, smooth: float | None) -> None:
    from cvtool.data.video import VIDEO_SUFFIXES

    if (every is not None or smooth is not None) and not videos:
        raise InputError(f"--{'every' if every is not None else 'smooth'} is for video inputs "
                         f"({', '.join(VIDEO_SUFFIXES)}); none was given")
    if every is not None and every < 1:
        raise InputError(f"--every expects a whole number >= 1, got {every}")
    if smooth is not None and not 0 <= smooth < 1:
        raise InputError(f"--smooth expects a strength in [0, 1), got {smooth}")


def parse_threads(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    if not text.strip().isdigit() or int(text) < 1:
        raise InputError(f"--threads expects a whole number >= 1 or auto, got {text!r}")
    return int(text)


def as_object(results: list[dict[str, Any]]) -> dict[str, Any]:
    """``--kaggle-test --json``: the submission's object; images given too go under ``images``."""
    head, *rest = results
    return {**head, "images": rest} if rest else head


def check_option(spec: TaskSpec, path: Path, option: str) -> None:
    """A task-specific option is only for the tasks whose spec accepts it."""
    if option not in spec.predict_options:
        flag = "--" + option.replace("_", "-")
        raise InputError(f"{flag} is for {' and '.join(registry.with_option(option))} checkpoints; "
                         f"{path} is from {spec.command}")


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given (images or videos); a folder stands for the images directly inside it, in name order."""
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


def format_prediction(result: dict[str, Any]) -> str:
    """One result as a person reads it (``--json`` gives the same as data)."""
    if "submission" in result:
        return f"{result['submission']}: {result['rows']} rows for the test images in {result['test_dir']}"
    if "frames" in result:
        return format_video(result)
    head = result["image"]
    if "class" in result:
        return f"{head}: {result['class']} ({result['probability']:.3f})"
    if "boxes" in result:
        count = len(result["boxes"])
        lines = [f"{head}: {count} box{'es' if count != 1 else ''} (x1 y1 x2 y2 in the image's pixels)"
                 if count else f"{head}: no box scores above the threshold"]
        lines += [f"  {b['class']:<12} {b['score']:.2f}  " + " ".join(f"{v:7.1f}" for v in b["box"])
                  for b in result["boxes"]]
        return "\n".join(lines + ([f"  drawn: {result['drawn']}"] if "drawn" in result else []))
    if "styled" in result:
        return f"{head}: {result['styled']}"
    if "mask" in result:
        shares = "  ".join(f"{name} {share:.1%}" for name, share in result["pixel_shares"].items())
        return f"{head}: mask {result['mask']}, overlay {result['overlay']}\n  pixels: {shares}"
    rest = {k: v for k, v in result.items() if k != "image"}
    return f"{head}: {json_text(rest)}"


def format_video(result: dict[str, Any]) -> str:
    flicker = result.get("flicker")
    steady = "" if flicker is None else f"; flicker {flicker['raw']:.2f}" + (
        f" -> {flicker['smoothed']:.2f} smoothed" if flicker["smoothed"] is not None else "")
    return (f"{result['video']}: {result['frames']} frames ({result['processed']} run) -> {result['output']}, "
            f"{result['jsonl']}; {result['frames_per_second']:.1f} frames/s{steady}")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
