"""``cvtool stylize``: the one task without a training loop, so its command is its own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from cvtool.commands.common import CONFIG_OPTION, DEVICE_HELP, JSON_HELP, SET_OPTION, emit, load_torch
from cvtool.errors import InputError
from cvtool.tasks import registry


def stylize(
    inputs: list[Path] = typer.Argument(..., metavar="CONTENT STYLE | CONTENT...",
                                        help="Content and style image; with --model, content images, folders "
                                             "or videos."),
    model: Optional[Path] = typer.Option(None, "--model", help="A train-style checkpoint (or its export): "
                                         "stylise each CONTENT in one forward pass, no optimisation."),
    out: Optional[Path] = typer.Option(None, "--out", help="With --model: output folder (default: the current "
                                       "folder) for <name>_styled.png and videos."),
    overwrite: bool = typer.Option(False, "--overwrite", help="With --model: replace files already in --out."),
    output: Path = typer.Option(Path("stylized.png"), "--output", "-o",
                                help="Output image; format from the extension."),
    config: Optional[Path] = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    size: Optional[str] = typer.Option(None, "--size", help="Output H,W, or one number: the longer side."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimisation steps in all."),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
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
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    load_torch()
    from cvtool.api import stylize_files
    from cvtool.engine.progress import Reporter

    if model is not None:
        optimiser = {"--output": output if output != Path("stylized.png") else None, "--config": config, "--set": overrides or None, "--size": size, "--steps": steps, "--seed": seed,
                     "--out-dir": out_dir, "--save-every": save_every, "--content-weight": content_weight,
                     "--style-weight": style_weight, "--tv-weight": tv_weight, "--scales": scales, "--init": init,
                     "--style-scale": style_scale, "--force": force or None}
        given = [flag for flag, value in optimiser.items() if value is not None]
        if given:
            raise InputError(f"{given[0]} is for the optimising stylize (CONTENT STYLE), not for --model")
        return with_model(model, inputs, out, overwrite, device, bool(preserve_color), as_json)
    if len(inputs) != 2:
        raise InputError(f"stylize takes CONTENT STYLE (two images), got {len(inputs)}; to stylise several "
                         "images with a trained network: cvtool stylize --model STYLE.pt CONTENT...")
    content, style = inputs
    flags = {"image.size": size, "optim.steps": steps,
             "run.device": device, "run.seed": seed, "run.save_every": save_every,
             "image.preserve_color": preserve_color, "loss.content_weight": content_weight,
             "loss.style_weight": style_weight, "loss.tv_weight": tv_weight, "run.scales": scales,
             "image.init": init, "image.style_scale": style_scale}
    reporter = Reporter(sys.stderr if as_json else sys.stdout)
    result = stylize_files(content, style, output, config=config, overrides=overrides, flags=flags, reporter=reporter,
                           argv=["cvtool", *sys.argv[1:]], out_dir=out_dir, force=force)
    height, width = result["size"]
    reporter.info(f"wrote {result['output']} ({height}x{width}) in {result['seconds']:.1f} s "
                  f"({result['ms_per_step']:.0f} ms/step)"
                  + (f"; run files in {result['run_dir']}" if result["run_dir"] else ""))
    emit(result, as_json)


def with_model(model: Path, inputs: list[Path], out: Optional[Path], overwrite: bool, device: Optional[str],
               preserve_color: bool, as_json: bool) -> None:
    """``stylize --model``: ``predict`` with a style network, which must be one."""
    from cvtool.commands.predict import predict
    from cvtool.model import load

    network = load(model, device="cpu")
    if network.family != "style":
        raise InputError(f"--model {model} is a {network.task} model, not a style network (train-style)")
    predict(checkpoint_path=model, images=inputs, out=out or Path("."), threshold=None, kaggle_test=None,
            device=device or "auto", threads_opt="auto", overwrite=overwrite, every=None, smooth=None,
            preserve_color=preserve_color, as_json=as_json)


def register(app: typer.Typer) -> None:
    spec = next((s for s in registry.specs() if s.command == "stylize"), None)
    if spec is not None:
        app.command("stylize", help=spec.summary)(stylize)
