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

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from cvtool import config as c
from cvtool.data.images import load_rgb
from cvtool.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cvtool.engine import rundir, runtime
from cvtool.engine.progress import Reporter, fmt
from cvtool.errors import InputError, Interrupted
from cvtool.models import vgg
from cvtool.models.weights import is_none

NAME = "stylize"
COLUMNS = ["step", "content", "style", "tv", "total"]
FLUSH_EVERY = 25  # steps between reading the losses back from the device (one sync each)
# Peak memory / fp32 bytes of the optimised image's forward activations: measured 1.5 on the
# CPU at 320x480, 2 leaves a margin. Under bf16/fp16 autocast some buffers stay fp32 (0.9x of
# the fp32 peak measured on the CPU), hence 3 bytes an element rather than 2.
MEMORY_FACTOR = 2.0


@dataclass
class Picture:
    """The output picture and where the optimisation starts."""

    size: list[int] | int = c.opt([300, 450], "output [height, width], or one number: the longer side "
                                              "(the content's aspect kept)", ge=1)
    init: Literal["content", "noise"] = c.opt("content", "start from the content image or from uniform noise")
    style_scale: float = c.opt(1.0, "style image's longer side as a multiple of the output's longer side "
                                    "(smaller = larger brush strokes)", gt=0)
    preserve_color: bool = c.opt(False, "transfer luminance only and keep the content's colours (YCbCr)")


@dataclass
class Model:
    """Which VGG-19 activations describe content and style."""

    weights: str | None = c.opt("IMAGENET1K_V1", "torchvision weight name, a .pth state-dict file, or none "
                                                 "(random features: a meaningless picture, for tests)")
    style_layers: list[int] = c.opt([0, 5, 10, 19, 28], "VGG-19 feature indices for the style (conv1_1 .. conv5_1)")
    content_layers: list[int] = c.opt([25], "VGG-19 feature indices for the content (conv4_4)")


@dataclass
class Loss:
    """Weights of the three terms; the total is their weighted sum."""

    content_weight: float = c.opt(1.0, "weight of the content loss (sum over content layers)", ge=0)
    style_weight: float = c.opt(1e4, "weight of the style loss (sum over style layers)", ge=0)
    tv_weight: float = c.opt(10.0, "weight of the total-variation (smoothness) loss", ge=0)


@dataclass
class Optim:
    """Adam on the pixels with a step-decayed learning rate."""

    lr: float = c.opt(0.3, "Adam learning rate (on the ImageNet-normalised image)", gt=0)
    step_size: int = c.opt(50, "steps between learning-rate decays", ge=1)
    gamma: float = c.opt(0.8, "learning-rate decay factor", gt=0, le=1)
    steps: int = c.opt(500, "optimisation steps in all (split evenly over run.scales)", ge=1)


@dataclass
class Run:
    """Where and how the optimisation runs."""

    device: str = c.opt("auto", "auto | cpu | cuda | cuda:N | mps (a missing device is an error)")
    seed: int = c.opt(0, "random seed (noise init)", ge=0)
    amp: Literal["auto", "off", "bf16", "fp16"] = c.opt(
        "auto", "mixed precision for VGG: auto = bf16 on CUDA when supported, off elsewhere")
    channels_last: bool = c.opt(False, "NHWC memory format for VGG and the image")
    scales: int = c.opt(1, "optimise at 1/2^(K-1) of the size first, then upsample and refine, K times", ge=1)
    save_every: int = c.opt(0, "with --out-dir: write a snapshot every N steps (0 = none)", ge=0)


@dataclass
class Config:
    image: Picture = field(default_factory=Picture)
    model: Model = field(default_factory=Model)
    loss: Loss = field(default_factory=Loss)
    optim: Optim = field(default_factory=Optim)
    run: Run = field(default_factory=Run)


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


# --------------------------------------------------------------------------- the math


def gram(x: torch.Tensor) -> torch.Tensor:
    """Channel correlations of (B, C, H, W) features, divided by C*H*W as in the book."""
    b, ch, h, w = x.shape
    f = x.reshape(b, ch, h * w)
    return f @ f.transpose(1, 2) / (ch * h * w)


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


# Full-range BT.601 (JPEG) RGB -> YCbCr, with Cb and Cr centred on 0.
YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                      [-0.168736, -0.331264, 0.5],
                      [0.5, -0.418688, -0.081312]])


def to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", YCBCR.to(rgb), rgb)


def from_ycbcr(ycc: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(YCBCR.double()).to(ycc), ycc)


def luminance(rgb: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Grey RGB of the luma; with ``like``, shifted and scaled to its luma's mean and std."""
    y = to_ycbcr(rgb)[:, :1]
    if like is not None:
        ref = to_ycbcr(like)[:, :1]
        y = (y - y.mean()) / y.std().clamp_min(1e-6) * ref.std() + ref.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1)


def with_chroma(rgb: torch.Tensor, chroma_from: torch.Tensor) -> torch.Tensor:
    """``rgb``'s luma with ``chroma_from``'s Cb and Cr."""
    y = to_ycbcr(rgb)[:, :1]
    return from_ycbcr(torch.cat([y, to_ycbcr(chroma_from)[:, 1:]], 1)).clamp(0, 1)


# --------------------------------------------------------------------------- tensors


MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def to_pixels(img: Image.Image) -> torch.Tensor:
    return TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True).unsqueeze(0)


def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return TF.resize(x, list(hw), antialias=True).clamp(0, 1)


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - MEAN.to(pixels)) / STD.to(pixels)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    return (x * STD.to(x) + MEAN.to(x)).clamp(0, 1)


def to_image(pixels: torch.Tensor) -> Image.Image:
    data = pixels[0].detach().float().cpu().mul(255).round().clamp(0, 255).to(torch.uint8)
    return TF.to_pil_image(data)


def image_format(path: Path) -> str:
    fmt_name = Image.registered_extensions().get(path.suffix.lower())
    if fmt_name is None or fmt_name not in Image.SAVE:
        raise InputError(f"output {path}: cannot tell the image format from {path.suffix or 'no extension'!r}; "
                         "use .png, .jpg, .webp, .bmp or .tif")
    return fmt_name


def check_output(path: Path) -> None:
    """Refuse an output that could not be written before spending minutes on the picture."""
    if path.is_dir():
        raise InputError(f"output {path} is a folder; give a file name such as {path / 'stylized.png'}")
    image_format(path)
    parent = next(p for p in [path.absolute().parent, *path.absolute().parents] if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"output {path} cannot be written: {parent} is not a writable folder")


def save_image(img: Image.Image, path: Path) -> None:
    """Written to a temporary file and renamed: a reader never sees half a picture."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(tmp, format=image_format(path))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc}") from None


def read_image(path: Path, role: str) -> torch.Tensor:
    img = load_rgb(path)
    if img.width == 0 or img.height == 0:
        raise InputError(f"{role} image {path} is empty")
    return to_pixels(img)


# --------------------------------------------------------------------------- memory


def estimate_memory(out_hw: tuple[int, int], style_hw: tuple[int, int], upto: int, elem_bytes: int) -> int:
    """Peak bytes of a run: the optimised image's activations x a factor, or the style pass if larger."""
    total, _ = vgg.activation_elements(*out_hw, upto)
    _, style_largest = vgg.activation_elements(*style_hw, upto)
    need = max(total * elem_bytes * MEMORY_FACTOR, 3 * style_largest * elem_bytes)
    return int(need) + vgg.parameter_count(upto) * 4


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (GPU memory, or RAM the OS can give); None when unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "mps":
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    except (RuntimeError, AttributeError):
        return None
    return host_available()


def host_available() -> int | None:
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            found.append(int(limit) - int(used))
    except OSError:
        pass
    return min(found) if found else None


def gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB"


# --------------------------------------------------------------------------- one step


@dataclass
class Targets:
    """Content features and style Grams, computed once per scale without gradients."""

    content: dict[int, torch.Tensor]
    grams: dict[int, torch.Tensor]


def compute_targets(net: vgg.VGGFeatures, content: torch.Tensor, style: torch.Tensor, cfg: Config,
                    device: torch.device, dtype: torch.dtype | None) -> Targets:
    with torch.no_grad(), runtime.autocast(device, dtype):
        feats = net(content)
        content_t = {i: feats[i].float() for i in cfg.model.content_layers}
        del feats
        feats = net(style)
        grams = {i: gram(feats[i].float()) for i in cfg.model.style_layers}
    return Targets(content_t, grams)


def make_step(net: vgg.VGGFeatures, targets: Targets, weights: Loss, device: torch.device,
              dtype: torch.dtype | None) -> Callable[[torch.Tensor, torch.optim.Optimizer], torch.Tensor]:
    """One Adam step on the image; returns the weighted (content, style, tv, total) without syncing."""

    def step(image: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with runtime.autocast(device, dtype):
            feats = net(image)
        zero = image.new_zeros(())
        content = sum((F.mse_loss(feats[i].float(), t) for i, t in targets.content.items()), zero)
        style = sum((F.mse_loss(gram(feats[i].float()), g) for i, g in targets.grams.items()), zero)
        parts = torch.stack([content * weights.content_weight, style * weights.style_weight,
                             tv_loss(image) * weights.tv_weight])
        total = parts.sum()
        total.backward()
        optimizer.step()
        return torch.cat([parts, total.unsqueeze(0)]).detach()

    return step


# --------------------------------------------------------------------------- progress


SHORT = {"total": "loss", "content": "c", "style": "s", "tv": "tv"}  # bar status names


def report_losses(reporter: Reporter, row: dict[str, float], total: int) -> str:
    """The bar's status for ``row``; with no bar (plain or quiet) the losses go out as a line instead."""
    if reporter.progress is not None:
        return " ".join(f"{short} {fmt(row[k])}" for k, short in SHORT.items())
    text = " ".join(f"{k}={fmt(v)}" for k, v in row.items() if k != "step")
    reporter.info(f"step {int(row['step'])}/{total} {text}")
    return ""


# --------------------------------------------------------------------------- the command


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


def check_memory(device: torch.device, out_hw: tuple[int, int], style_hw: tuple[int, int], upto: int,
                 dtype: torch.dtype | None, force: bool) -> int:
    need = estimate_memory(out_hw, style_hw, upto, 3 if dtype is not None else 4)
    free = available_memory(device)
    if not force and free is not None and need > free:
        raise InputError(f"output {out_hw[0]}x{out_hw[1]} needs about {gib(need)} on {device} but only "
                         f"{gib(free)} is free; lower --size, or pass --force to try anyway")
    return need


def step_lr(cfg: Optim, step: int) -> float:
    """StepLR's value at a global step, so the schedule runs on across scales."""
    return cfg.lr * cfg.gamma ** (step // cfg.step_size)


def stylize(cfg: Config, content_path: str | Path, style_path: str | Path, output_path: str | Path,
            out_dir: str | Path | None = None, reporter: Reporter | None = None, force: bool = False,
            argv: list[str] | None = None) -> dict[str, Any]:
    """Paint the content image in the style of the style image; write it to ``output_path``.

    Everything that can be refused (files, sizes, memory, weights) is checked before the
    first step; the picture is only written, atomically, once the last step is done.
    """
    reporter = reporter or Reporter(quiet=True)
    output = Path(output_path)
    check_output(output)
    content_px = read_image(Path(content_path), "content")
    style_px = read_image(Path(style_path), "style")
    device = runtime.select_device(cfg.run.device)
    dtype = runtime.amp_dtype(device, cfg.run.amp)

    out_hw = output_size(cfg.image.size, tuple(content_px.shape[-2:]))
    sizes = scale_sizes(out_hw, cfg.run.scales)
    style_hw = tuple(style_px.shape[-2:])
    style_sizes = [style_size(style_hw, hw, cfg.image.style_scale) for hw in sizes]
    upto = deepest_layer(cfg)
    validate_sizes(cfg, out_hw, sizes, style_sizes, upto)
    need = check_memory(device, out_hw, style_sizes[-1], upto, dtype, force)
    run_dir = rundir.choose(NAME, str(out_dir), resuming=False) if out_dir is not None else None

    warnings = []
    if is_none(cfg.model.weights):
        warnings.append("model.weights is none: VGG features are random, so the picture is meaningless "
                        "(use IMAGENET1K_V1 for a real result)")
    runtime.seed_everything(cfg.run.seed)
    net = vgg.vgg19_features(cfg.model.weights, [*cfg.model.style_layers, *cfg.model.content_layers])
    for w in warnings:
        reporter.info(f"warning: {w}")

    runtime.configure(device, deterministic=False)
    memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    net.to(device=device, memory_format=memory_format)

    snapshots_dir = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_config(run_dir / "config.yaml", c.to_dict(cfg))
        rundir.write_json(run_dir / "env.json", rundir.environment(device, cfg.run.seed, argv or []))
        if cfg.run.save_every:
            snapshots_dir = run_dir / "snapshots"
            snapshots_dir.mkdir(exist_ok=True)
    metrics = rundir.MetricsLog(run_dir / "metrics.csv", COLUMNS) if run_dir is not None else None
    if metrics is not None:
        metrics.start(0)

    content_px, style_px = content_px.to(device), style_px.to(device)
    chroma = resize(content_px, out_hw)
    if cfg.image.preserve_color:
        style_px = luminance(style_px, like=content_px)
        content_px = luminance(content_px)

    def finish(image: torch.Tensor) -> Image.Image:
        pixels = resize(denormalize(image.detach().float()), out_hw)
        if cfg.image.preserve_color:
            pixels = with_chroma(pixels, chroma)
        return to_image(pixels)

    reporter.info(f"stylize: {content_path} in the style of {style_path} -> {output} "
                  f"{out_hw[0]}x{out_hw[1]}, {cfg.optim.steps} steps"
                  + (f" over {len(sizes)} scales" if len(sizes) > 1 else "")
                  + f" on {device}" + (f" ({str(dtype).removeprefix('torch.')})" if dtype else ""))
    per_scale = [cfg.optim.steps // len(sizes)] * len(sizes)
    per_scale[-1] += cfg.optim.steps - sum(per_scale)
    generator = torch.Generator().manual_seed(cfg.run.seed)
    image: torch.Tensor | None = None
    last: dict[str, float] = {}
    snapshots: list[str] = []
    done = 0
    started = time.perf_counter()
    try:
        with runtime.StopFlag() as stop:  # SIGTERM ends a run like Ctrl-C: summary kept, exit 130
            for hw, shw, steps in zip(sizes, style_sizes, per_scale):
                content_n = normalize(resize(content_px, hw)).contiguous(memory_format=memory_format)
                style_n = normalize(resize(style_px, shw)).contiguous(memory_format=memory_format)
                targets = compute_targets(net, content_n, style_n, cfg, device, dtype)
                if image is None:
                    start = content_n if cfg.image.init == "content" else \
                        normalize(torch.rand(1, 3, *hw, generator=generator).to(device))
                else:
                    start = F.interpolate(image, size=hw, mode="bilinear", align_corners=False)
                image = start.detach().clone().contiguous(memory_format=memory_format).requires_grad_(True)
                optimizer = torch.optim.Adam([image], lr=step_lr(cfg.optim, done))
                step = make_step(net, targets, cfg.loss, device, dtype)
                pending: list[torch.Tensor] = []
                status = ""
                reporter.start_bar(f"stylize {hw[0]}x{hw[1]}", steps, bar_width=20)
                for k in range(steps):
                    optimizer.param_groups[0]["lr"] = step_lr(cfg.optim, done)
                    pending.append(step(image, optimizer))
                    done += 1
                    snapshot = snapshots_dir is not None and done % cfg.run.save_every == 0
                    if len(pending) == FLUSH_EVERY or snapshot or k == steps - 1:
                        rows = flush(pending, done)
                        if metrics is not None:
                            metrics.append(*rows)
                        last = rows[-1]
                        status = report_losses(reporter, last, cfg.optim.steps)
                        pending = []
                    reporter.step(status)
                    if stop:
                        raise KeyboardInterrupt
                    if snapshot:
                        path = snapshots_dir / f"step_{done:05d}.png"
                        save_image(finish(image), path)
                        snapshots.append(str(path))
                reporter.stop_bar()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            save_image(finish(image), output)
    except KeyboardInterrupt:
        if run_dir is not None:
            rundir.write_json(run_dir / "summary.json", {"status": "interrupted", "step": done, "final": last})
        raise Interrupted(f"stylize stopped at step {done}/{cfg.optim.steps}; {output} was not written") from None
    finally:
        reporter.stop_bar()

    result = {
        "status": "completed",
        "output": str(output),
        "size": list(out_hw),
        "steps": done,
        "scales": [list(hw) for hw in sizes],
        "final": {k: v for k, v in last.items() if k != "step"},
        "seconds": round(seconds, 3),
        "ms_per_step": round(1000 * seconds / max(done, 1), 3),
        "device": str(device),
        "amp": str(dtype).removeprefix("torch.") if dtype else "off",
        "estimated_memory_bytes": need,
        "warnings": warnings,
        "run_dir": str(run_dir) if run_dir is not None else None,
        "snapshots": snapshots,
    }
    if run_dir is not None:
        rundir.write_json(run_dir / "summary.json", result)
    return result


def flush(pending: list[torch.Tensor], done: int) -> list[dict[str, float]]:
    """Read a batch of per-step losses back in one transfer; refuse a diverged run."""
    values = torch.stack(pending).tolist()
    first = done - len(values) + 1
    rows = [{"step": first + n, "content": v[0], "style": v[1], "tv": v[2], "total": v[3]}
            for n, v in enumerate(values)]
    bad = next((r for r in rows if not math.isfinite(r["total"])), None)
    if bad is not None:
        raise InputError(f"the loss became {bad['total']} at step {bad['step']}; lower optim.lr or the loss weights")
    return rows
