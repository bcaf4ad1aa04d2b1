"""stylize: neural style transfer by optimising the pixels of one image (Gatys et al.).

The defaults are the book's: VGG-19 features, Gram matrices / (c*h*w) for style, mean
squared feature error for content, total variation 0.5*(mean|dx| + mean|dy|), Adam on
the ImageNet-normalised image from the content image, StepLR(50, 0.8), 500 steps at
300x450. The network never needs gradients and the targets are computed once, so a
step is one forward and one backward through the truncated VGG and nothing else.

Beyond the book: multi-scale (optimise small, upsample, refine), luminance-only transfer
that keeps the content's colours, noise init and a style-image scale. The style image
keeps its aspect ratio (the book stretches it to the output shape; a Gram matrix does
not need the shapes to match).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cvtool import config as c
from cvtool.engine import placement, rundir, runtime, tensorboard, threads
from cvtool.engine.progress import Reporter
from cvtool.errors import InputError, Interrupted
from cvtool.models import vgg
from cvtool.models.weights import is_none
from cvtool.tasks.stylize_images import check_output, read_image, save_image
from cvtool.tasks.stylize_loop import Optimisation
from cvtool.tasks.stylize_memory import check_memory
from cvtool.tasks.specs.stylize import SPEC, Config

COLUMNS = ["step", "content", "style", "tv", "total"]


def settle_speed(cfg: Config, device: torch.device) -> None:
    """Fold the former keys run.amp and run.channels_last into train.*, and resolve
    ``channels_last: auto`` for ``device``, so the rest of the run reads train.* alone."""
    for key, default in (("amp", "auto"), ("channels_last", "auto")):
        old, new = getattr(cfg.run, key), getattr(cfg.train, key)
        if old is None:
            continue
        if new not in (default, old):
            raise InputError(f"run.{key} ({old!r}) and train.{key} ({new!r}) disagree; run.{key} is the former "
                             f"name of train.{key}: keep one")
        setattr(cfg.train, key, old)
        setattr(cfg.run, key, None)
    cfg.train.channels_last = placement.channels_last_for(cfg.train.channels_last, device, "stylize")


# --------------------------------------------------------------------------- sizes


def parse_size(text: str) -> list[int] | int:
    """``H,W`` (or ``HxW``) -> [H, W]; ``N`` -> N, the longer side."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"--size expects H,W or LONG_SIDE in pixels, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise InputError(f"--size expects H,W or LONG_SIDE in pixels, got {text!r}")
    return values[0] if len(values) == 1 else values


def fit_long_side(height: int, width: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def output_size(size: list[int] | int, content_hw: tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return fit_long_side(*content_hw, size)
    if len(size) != 2:
        raise InputError(f"image.size must be [height, width] or one number, got {size!r}")
    return size[0], size[1]


def scale_sizes(out_hw: tuple[int, int], scales: int) -> list[tuple[int, int]]:
    """Each scale doubles the previous one and the last is exactly the output size."""
    h, w = out_hw
    return [(max(1, round(h / 2 ** k)), max(1, round(w / 2 ** k))) for k in range(scales - 1, -1, -1)]


def style_size(style_hw: tuple[int, int], hw: tuple[int, int], style_scale: float) -> tuple[int, int]:
    return fit_long_side(*style_hw, max(1, round(max(hw) * style_scale)))


def deepest_layer(cfg: Config) -> int:
    """The last VGG module the run needs; checks the layer lists on the way."""
    vgg.check_layers(cfg.model.style_layers, "model.style_layers")
    vgg.check_layers(cfg.model.content_layers, "model.content_layers")
    if not cfg.model.style_layers:
        raise InputError("model.style_layers must name at least one layer")
    return max(vgg.tap_index(i) for i in [*cfg.model.style_layers, *cfg.model.content_layers])


def validate_sizes(cfg: Config, out_hw: tuple[int, int], sizes: list[tuple[int, int]],
                   style_sizes: list[tuple[int, int]], upto: int) -> None:
    if cfg.run.scales > cfg.optim.steps:
        raise InputError(f"run.scales {cfg.run.scales} needs at least as many optim.steps, got {cfg.optim.steps}")
    need = vgg.min_side(upto)
    layer = max([*cfg.model.style_layers, *cfg.model.content_layers])
    for hw, shw in zip(sizes, style_sizes):
        if min(hw) < need:
            where = "" if hw == out_hw else f" at scale {hw[0]}x{hw[1]} (lower run.scales)"
            raise InputError(f"output size {out_hw[0]}x{out_hw[1]} is too small for VGG layer {layer}{where}: "
                             f"each side needs at least {need} px")
        if min(shw) < need:
            raise InputError(f"the style image at {shw[0]}x{shw[1]} is too small for VGG layer {layer}: "
                             f"each side needs at least {need} px (raise image.style_scale)")


# --------------------------------------------------------------------------- the command


@dataclass
class Plan:
    """Everything checked before the first step: the pictures, the sizes per scale, the device."""

    output: Path
    content: torch.Tensor
    style: torch.Tensor
    device: torch.device
    dtype: torch.dtype | None
    out_hw: tuple[int, int]
    sizes: list[tuple[int, int]]
    style_sizes: list[tuple[int, int]]
    need: int


def plan(cfg: Config, content_path: str | Path, style_path: str | Path, output_path: str | Path,
         force: bool) -> Plan:
    """Refuse what can be refused (files, sizes, memory) before anything is built."""
    output = Path(output_path)
    check_output(output)
    content_px = read_image(Path(content_path), "content")
    style_px = read_image(Path(style_path), "style")
    device = runtime.select_device(cfg.run.device)
    settle_speed(cfg, device)
    dtype = runtime.amp_dtype(device, cfg.train.amp)

    out_hw = output_size(cfg.image.size, tuple(content_px.shape[-2:]))
    sizes = scale_sizes(out_hw, cfg.run.scales)
    style_hw = tuple(style_px.shape[-2:])
    style_sizes = [style_size(style_hw, hw, cfg.image.style_scale) for hw in sizes]
    upto = deepest_layer(cfg)
    validate_sizes(cfg, out_hw, sizes, style_sizes, upto)
    need = check_memory(device, out_hw, style_sizes[-1], upto, dtype, force)
    return Plan(output, content_px, style_px, device, dtype, out_hw, sizes, style_sizes, need)


def load_network(cfg: Config, device: torch.device, reporter: Reporter) -> tuple[vgg.VGGFeatures, list[str]]:
    """The truncated VGG-19 on ``device``, and the warnings the run will report."""
    warnings = []
    if is_none(cfg.model.weights):
        warnings.append("model.weights is none: VGG features are random, so the picture is meaningless "
                        "(use IMAGENET1K_V1 for a real result)")
    runtime.seed_everything(cfg.run.seed)
    net = vgg.vgg19_features(cfg.model.weights, [*cfg.model.style_layers, *cfg.model.content_layers])
    for w in warnings:
        reporter.info(f"warning: {w}")
    runtime.configure(device, deterministic=False)
    memory_format = torch.channels_last if cfg.train.channels_last is True else torch.contiguous_format
    net.to(device=device, memory_format=memory_format)
    return net, warnings


def open_run_dir(cfg: Config, run_dir: Path | None, device: torch.device, argv: list[str],
                 policy: threads.Policy) -> tuple[rundir.MetricsLog | None, Path | None]:
    """With --out-dir: config.yaml, env.json, a started metrics.csv and the snapshots folder."""
    if run_dir is None:
        return None, None
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_config(run_dir / "config.yaml", c.to_dict(cfg))
    env = rundir.environment(device, cfg.run.seed, argv)
    env.update(precision=cfg.train.amp, channels_last=cfg.train.channels_last, threads=policy.record())
    rundir.write_json(run_dir / "env.json", env)
    snapshots_dir = None
    if cfg.run.save_every:
        snapshots_dir = run_dir / "snapshots"
        snapshots_dir.mkdir(exist_ok=True)
    metrics = rundir.MetricsLog(run_dir / "metrics.csv", COLUMNS)
    metrics.start(0)
    return metrics, snapshots_dir


def steps_per_scale(steps: int, scales: int) -> list[int]:
    """An even split, the remainder on the last (full-size) scale."""
    per_scale = [steps // scales] * scales
    per_scale[-1] += steps - sum(per_scale)
    return per_scale


def stylize(cfg: Config, content_path: str | Path, style_path: str | Path, output_path: str | Path,
            out_dir: str | Path | None = None, reporter: Reporter | None = None, force: bool = False,
            argv: list[str] | None = None) -> dict[str, Any]:
    """Paint the content image in the style of the style image; write it to ``output_path``.

    Everything that can be refused (files, sizes, memory, weights) is checked before the
    first step; the picture is only written, atomically, once the last step is done.
    """
    reporter = reporter or Reporter(quiet=True)
    p = plan(cfg, content_path, style_path, output_path, force)
    run_dir = rundir.choose(SPEC.command, str(out_dir), resuming=False) if out_dir is not None else None
    policy = threads.start(cfg.train.threads)
    net, warnings = load_network(cfg, p.device, reporter)
    metrics, snapshots_dir = open_run_dir(cfg, run_dir, p.device, argv or [], policy)
    board = tensorboard.Board(run_dir, cfg.log.tensorboard, cfg.log.every_steps)
    run = Optimisation(cfg, net, p.content.to(p.device), p.style.to(p.device), p.out_hw, p.device, p.dtype,
                       reporter, metrics, snapshots_dir, board)
    run.threads = policy
    how = [str(p.dtype).removeprefix("torch.") if p.dtype else "fp32",
           "channels_last" if cfg.train.channels_last else "NCHW", f"{policy.choice.describe()} threads"]
    reporter.info(f"stylize: {content_path} in the style of {style_path} -> {p.output} "
                  f"{p.out_hw[0]}x{p.out_hw[1]}, {cfg.optim.steps} steps"
                  + (f" over {len(p.sizes)} scales" if len(p.sizes) > 1 else "")
                  + f" on {p.device} ({', '.join(how)})")
    started = time.perf_counter()
    try:
        with runtime.StopFlag() as stop:  # SIGTERM ends a run like Ctrl-C: summary kept, exit 130
            for hw, shw, steps in zip(p.sizes, p.style_sizes, steps_per_scale(cfg.optim.steps, len(p.sizes))):
                run.scale(hw, shw, steps, stop)
            if p.device.type == "cuda":
                torch.cuda.synchronize(p.device)
            seconds = time.perf_counter() - started
            save_image(run.picture(), p.output)
    except KeyboardInterrupt:
        if run_dir is not None:
            rundir.write_json(run_dir / "summary.json", {"status": "interrupted", "step": run.done, "final": run.last})
        raise Interrupted(f"stylize stopped at step {run.done}/{cfg.optim.steps}; {p.output} was not written") from None
    finally:
        reporter.stop_bar()
        board.close()
        if run_dir is not None:
            rundir.update_json(run_dir / "env.json", threads=policy.record())
    result = summary(p, run, seconds, warnings, run_dir)
    if run_dir is not None:
        rundir.write_json(run_dir / "summary.json", result)
    return result


def summary(p: Plan, run: Optimisation, seconds: float, warnings: list[str], run_dir: Path | None) -> dict[str, Any]:
    """What a finished run reports (``--json``) and keeps as summary.json."""
    return {
        "status": "completed",
        "output": str(p.output),
        "size": list(p.out_hw),
        "steps": run.done,
        "scales": [list(hw) for hw in p.sizes],
        "final": {k: v for k, v in run.last.items() if k != "step"},
        "seconds": round(seconds, 3),
        "ms_per_step": round(1000 * seconds / max(run.done, 1), 3),
        "device": str(p.device),
        "amp": str(p.dtype).removeprefix("torch.") if p.dtype else "off",
        "threads": run.threads.record() if run.threads is not None else None,
        "estimated_memory_bytes": p.need,
        "warnings": warnings,
        "run_dir": str(run_dir) if run_dir is not None else None,
        "snapshots": run.snapshots,
    }


# No training loop and no checkpoint: cvtool.commands.stylize runs ``stylize`` itself.
