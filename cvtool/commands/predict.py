"""``cvtool predict``: a checkpoint on images; the checkpoint says which task it is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from cvtool.commands.common import DEVICE_HELP, emit, load_torch
from cvtool.errors import InputError
from cvtool.files import json_text


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
    load_torch()
    from cvtool.engine import threads
    from cvtool.engine.progress import Reporter
    from cvtool.model import load

    threads.start(parse_threads(threads_opt), key="--threads")
    results = load(checkpoint_path, device=device).predict_files(
        images or [], out=out, threshold=threshold, kaggle_test=kaggle_test, overwrite=overwrite, every=every,
        smooth=smooth, preserve_color=preserve_color, reporter=Reporter(sys.stderr if as_json else sys.stdout))
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
