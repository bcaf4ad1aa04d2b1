"""``cvtool predict``: a checkpoint on images; the checkpoint says which task it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from cvtool import config as cfglib
from cvtool.commands.common import DEVICE_HELP, emit, load_weights
from cvtool.errors import InputError
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
    as_json: bool = typer.Option(False, "--json",
                                 help="Print JSON: a list, one object per image (--kaggle-test: one object); "
                                      "boxes are x1, y1, x2, y2 in the image's pixels, clipped to it."),
) -> None:
    """Run a trained checkpoint, or a model `cvtool export` wrote, on images (it says which task it is)."""
    from cvtool.engine import checkpoint, runtime, threads
    from cvtool.export import predict as exported

    threads.start(parse_threads(threads_opt), key="--threads")

    loaded = exported.load(checkpoint_path, device) if exported.is_export(checkpoint_path) else None
    ckpt = checkpoint.load(checkpoint_path) if loaded is None else {}
    spec = registry.get(ckpt["task"]) if loaded is None else loaded.spec
    if spec.predict is None or spec.build_model is None:
        raise InputError(f"checkpoint {checkpoint_path} is from {spec.command}, which has no predict")
    cfg = cfglib.from_dict(spec.config, ckpt["config"]) if loaded is None else loaded.config
    if not images and kaggle_test is None:
        raise InputError("give at least one IMAGE (or --kaggle-test DIR)")
    if kaggle_test is not None:
        check_option(spec, checkpoint_path, "kaggle_test")
        if not kaggle_test.is_dir():
            raise InputError(f"--kaggle-test {kaggle_test} is not a folder")
        outputs.refuse_existing([(out or Path(".")) / "submission.csv"], overwrite)
    if threshold is not None:
        check_option(spec, checkpoint_path, "threshold")
    images = expand_images(images or [])
    if loaded is None:
        dev = runtime.select_device(device)
        model = spec.build_model(cfg)
        load_weights(model, ckpt, checkpoint_path)
        metadata = ckpt.get("metadata", {})
    else:  # the export runs itself (ONNX Runtime places itself); its torch side stays on the CPU
        dev, model, metadata = runtime.select_device("cpu"), loaded.model, loaded.metadata
    model.to(dev).eval()
    options = {k: v for k, v in {"out": out, "threshold": threshold, "kaggle_test": kaggle_test,
                                 "overwrite": overwrite or None}.items() if v is not None}
    results = spec.predict(model, cfg, metadata, images, dev, options)
    if as_json:
        emit(as_object(results) if kaggle_test is not None else results, True)
        return
    for r in results:
        typer.echo(format_prediction(r))


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


def format_prediction(result: dict[str, Any]) -> str:
    """One result as a person reads it (``--json`` gives the same as data)."""
    if "submission" in result:
        return f"{result['submission']}: {result['rows']} rows for the test images in {result['test_dir']}"
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
    if "mask" in result:
        shares = "  ".join(f"{name} {share:.1%}" for name, share in result["pixel_shares"].items())
        return f"{head}: mask {result['mask']}, overlay {result['overlay']}\n  pixels: {shares}"
    rest = {k: v for k, v in result.items() if k != "image"}
    return f"{head}: {json.dumps(rest, default=str)}"


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
