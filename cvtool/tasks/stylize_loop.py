"""stylize's optimisation: targets once per scale, then Adam steps on the image's pixels.

Losses stay on the device and are read back FLUSH_EVERY steps at a time (one sync each),
for the metrics log, the TensorBoard board, the progress line and the divergence check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from PIL import Image

from cvtool.engine import rundir, runtime, tensorboard
from cvtool.engine.progress import Reporter, fmt
from cvtool.engine.threads import Policy
from cvtool.errors import InputError
from cvtool.models import vgg
from cvtool.ops.style import gram, luminance, tv_loss, with_chroma
from cvtool.tasks.stylize_images import denormalize, normalize, resize, save_image, to_image

if TYPE_CHECKING:
    from cvtool.tasks.specs.stylize import Config, Loss, Model, Optim

FLUSH_EVERY = 25  # steps between reading the losses back from the device (one sync each)


@dataclass
class Targets:
    """Content features and style Grams, computed once per scale without gradients."""

    content: dict[int, torch.Tensor]
    grams: dict[int, torch.Tensor]


def compute_targets(net: vgg.VGGFeatures, content: torch.Tensor, style: torch.Tensor, layers: Model,
                    device: torch.device, dtype: torch.dtype | None) -> Targets:
    """Only the network runs under autocast; the Grams are fp32 products (in bf16 they are
    ~0.5% off, which the loss cannot get below; in fp16 conv1_1's overflows at 512x512)."""
    with torch.no_grad():
        with runtime.autocast(device, dtype):
            feats = net(content)
        content_t = {i: feats[i].float() for i in layers.content_layers}
        del feats
        with runtime.autocast(device, dtype):
            feats = net(style)
        grams = {i: gram(feats[i].float()) for i in layers.style_layers}
    return Targets(content_t, grams)


def make_step(net: vgg.VGGFeatures, targets: Targets, weights: Loss, device: torch.device,
              dtype: torch.dtype | None, scaler: torch.amp.GradScaler | None = None,
              ) -> Callable[[torch.Tensor, torch.optim.Optimizer], torch.Tensor]:
    """One Adam step on the image; returns the weighted (content, style, tv, total) without syncing.

    The losses and Grams are fp32 (outside autocast); under fp16 the backward is scaled
    (``scaler``, by default a fresh one) so small gradients survive, and the losses returned
    are the unscaled ones.
    """
    if scaler is None:
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

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
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        return torch.cat([parts, total.unsqueeze(0)]).detach()

    return step


SHORT = {"total": "loss", "content": "c", "style": "s", "tv": "tv"}  # bar status names


def report_losses(reporter: Reporter, row: dict[str, float], total: int) -> str:
    """The bar's status for ``row``; with no bar (plain or quiet) the losses go out as a line instead."""
    if reporter.progress is not None:
        return " ".join(f"{short} {fmt(row[k])}" for k, short in SHORT.items())
    text = " ".join(f"{k}={fmt(v)}" for k, v in row.items() if k != "step")
    reporter.info(f"step {int(row['step'])}/{total} {text}")
    return ""


def step_lr(cfg: Optim, step: int) -> float:
    """StepLR's value at a global step, so the schedule runs on across scales."""
    return cfg.lr * cfg.gamma ** (step // cfg.step_size)


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


class Optimisation:
    """The multi-scale loop: optimise small, upsample, refine; snapshots and the log on the way.

    ``content`` and ``style`` are pixels on the device; with ``image.preserve_color`` both
    become grey and the content's colours come back in :meth:`picture`.
    """

    def __init__(self, cfg: Config, net: vgg.VGGFeatures, content: torch.Tensor, style: torch.Tensor,
                 out_hw: tuple[int, int], device: torch.device, dtype: torch.dtype | None,
                 reporter: Reporter, metrics: rundir.MetricsLog | None, snapshots_dir: Path | None,
                 board: tensorboard.Board | None = None):
        self.cfg, self.net, self.out_hw = cfg, net, out_hw
        self.device, self.dtype = device, dtype
        self.reporter, self.metrics, self.snapshots_dir = reporter, metrics, snapshots_dir
        self.board = board or tensorboard.Board(None)
        self.memory_format = torch.channels_last if cfg.train.channels_last is True else torch.contiguous_format
        self.threads: Policy | None = None  # the thread policy, ticked between steps
        self.chroma = resize(content, out_hw)
        if cfg.image.preserve_color:
            style = luminance(style, like=content)
            content = luminance(content)
        self.content, self.style = content, style
        self.generator = torch.Generator().manual_seed(cfg.run.seed)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # one scale over all scales
        self.image: torch.Tensor | None = None
        self.done = 0
        self.last: dict[str, float] = {}
        self.snapshots: list[str] = []

    def picture(self) -> Image.Image:
        """The current image as the output picture (full size, colours restored when kept)."""
        pixels = resize(denormalize(self.image.detach().float()), self.out_hw)
        if self.cfg.image.preserve_color:
            pixels = with_chroma(pixels, self.chroma)
        return to_image(pixels)

    def prepared(self, pixels: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return normalize(resize(pixels, hw)).contiguous(memory_format=self.memory_format)

    def start(self, content_n: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """The image a scale starts from: content or noise at first, then the last scale upsampled."""
        if self.image is None:
            start = content_n if self.cfg.image.init == "content" else \
                normalize(torch.rand(1, 3, *hw, generator=self.generator).to(self.device))
        else:
            start = F.interpolate(self.image, size=hw, mode="bilinear", align_corners=False)
        return start.detach().clone().contiguous(memory_format=self.memory_format).requires_grad_(True)

    def scale(self, hw: tuple[int, int], style_hw: tuple[int, int], steps: int, stop: runtime.StopFlag) -> None:
        """``steps`` Adam steps at output size ``hw`` (style image at ``style_hw``)."""
        content_n = self.prepared(self.content, hw)
        targets = compute_targets(self.net, content_n, self.prepared(self.style, style_hw), self.cfg.model,
                                  self.device, self.dtype)
        self.image = self.start(content_n, hw)
        optimizer = torch.optim.Adam([self.image], lr=step_lr(self.cfg.optim, self.done))
        step = make_step(self.net, targets, self.cfg.loss, self.device, self.dtype, self.scaler)
        pending: list[torch.Tensor] = []
        status = ""
        self.reporter.start_bar(f"stylize {hw[0]}x{hw[1]}", steps, bar_width=20)
        for k in range(steps):
            optimizer.param_groups[0]["lr"] = step_lr(self.cfg.optim, self.done)
            if self.threads is not None:
                self.threads.tick()
            pending.append(step(self.image, optimizer))
            self.done += 1
            snapshot = self.snapshots_dir is not None and self.done % self.cfg.run.save_every == 0
            if len(pending) == FLUSH_EVERY or snapshot or k == steps - 1:
                status = self.record(pending)
                pending = []
            self.reporter.step(status)
            if stop:
                raise KeyboardInterrupt
            if snapshot:
                path = self.snapshots_dir / f"step_{self.done:05d}.png"
                save_image(self.picture(), path)
                self.snapshots.append(str(path))
                self.board.images({"snapshot": path}, self.done)
        self.reporter.stop_bar()

    def record(self, pending: list[torch.Tensor]) -> str:
        """Log the pending steps' losses; the progress status to show."""
        rows = flush(pending, self.done)
        if self.metrics is not None:
            self.metrics.append(*rows)
        self.board.rows(rows, "step", "stylize/")
        self.last = rows[-1]
        return report_losses(self.reporter, self.last, self.cfg.optim.steps)
