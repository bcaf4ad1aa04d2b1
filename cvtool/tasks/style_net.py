"""train-style: a feed-forward style network for one style image (Johnson et al., 2016).

Trained once per style on a folder of content photos, it then stylises a picture of any
size in one forward pass. Defaults follow pytorch/examples' fast_neural_style (itself
Johnson et al. with instance norm and upsample + conv): 256 px crops, batch 4, Adam lr
1e-3, 2 epochs, content weight 1e5 and style weight 1e10 on Grams / (C*H*W), no total
variation. Where cvtool differs: VGG-19 (the trunk ``cvtool stylize`` uses) instead of
VGG-16, read at its matching layers (relu1_2, relu2_2, relu3_3, relu4_3 for style,
relu2_2 for content); training crops are random with flips instead of centred; and a
fixed set of held-out photos is scored and drawn every epoch.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from torchvision.utils import make_grid

from cvtool import config as c
from cvtool.data import photos
from cvtool.data.video import Frame, pixels_of
from cvtool.engine import runtime
from cvtool.engine.task import StepOutput, Task
from cvtool.errors import InputError
from cvtool.models import vgg
from cvtool.models.transformer_net import TransformerNet
from cvtool.models.weights import is_none
from cvtool.ops.style import with_chroma
from cvtool.tasks import outputs
from cvtool.tasks.style_loss import PARTS, Perceptual
from cvtool.tasks.stylize_images import read_image, resize
from cvtool.tasks.specs.style_net import SPEC, Config, Style

COLUMNS = ("train_loss", "train_content_loss", "train_style_loss", "train_tv_loss", "val_loss", "val_content_loss",
           "val_style_loss", "val_tv_loss")
PICTURES = 8
log = logging.getLogger(__name__)


def build_model(cfg: Config) -> TransformerNet:
    return TransformerNet(cfg.model.width, cfg.model.residual_blocks)


def style_pixels(s: Style) -> torch.Tensor:
    if not s.image:
        raise c.ConfigError("style.image is not set: name the style image (--set style.image=PATH)")
    pixels = read_image(Path(s.image), "style")
    if s.size is not None:
        h, w = pixels.shape[-2:]
        scale = s.size / max(h, w)
        pixels = resize(pixels, (max(1, round(h * scale)), max(1, round(w * scale))))
    return pixels


def perceptual(cfg: Config, style: torch.Tensor) -> Perceptual:
    lo = cfg.loss
    vgg.check_layers(lo.content_layers, "loss.content_layers")
    vgg.check_layers(lo.style_layers, "loss.style_layers")
    if not lo.content_layers or not lo.style_layers:
        raise c.ConfigError("loss.content_layers and loss.style_layers must each name at least one VGG-19 layer")
    need = vgg.min_side(max(vgg.tap_index(i) for i in lo.style_layers))
    if min(style.shape[-2:]) < need:
        raise InputError(f"the style image at {style.shape[-2]}x{style.shape[-1]} is too small for VGG layer "
                         f"{max(lo.style_layers)}: each side needs at least {need} px (raise style.size)")
    net = vgg.vgg19_features(cfg.model.vgg_weights, [*lo.content_layers, *lo.style_layers])
    return Perceptual(net, style, lo.content_layers, lo.style_layers, (lo.content_weight, lo.style_weight, lo.tv_weight))


def make_train_step(loss: Perceptual):
    def train_step(model: nn.Module, batch: torch.Tensor) -> StepOutput:
        x = batch.float() / 255
        parts = loss(model(x), x)
        n = len(x)
        stats = {name: (parts[:, k].detach().sum(), n) for k, name in enumerate(PARTS)}
        return StepOutput(loss=parts.sum(1).mean(), count=n, stats=stats)

    return train_step


def make_evaluate(loss: Perceptual):
    def evaluate(model: nn.Module, batches: Iterable, device: torch.device) -> dict[str, float]:
        sums, n = torch.zeros(3, device=device), 0
        for batch in batches:
            x = batch.float() / 255
            sums += loss(model(x), x).sum(0)
            n += len(x)
        if n == 0:
            return {}
        means = (sums / n).tolist()
        return {"val_loss": sum(means), **{f"val_{name}": v for name, v in zip(PARTS, means)}}

    return evaluate


def stylise(model: nn.Module, pixels: torch.Tensor, preserve_color: bool = False) -> torch.Tensor:
    """[0, 1] (B, 3, H, W) pixels to their stylised [0, 1] pixels; colours kept from the input when asked."""
    out = model(pixels).float().clamp(0, 1)
    return with_chroma(out, pixels.float()) if preserve_color else out


def as_uint8(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.mul(255).round_().clamp_(0, 255).to(torch.uint8).cpu()


def make_grid_of(val: photos.Photos, style: torch.Tensor, count: int = PICTURES):
    """Top row: the style image, then held-out photos; bottom row: their stylisations."""
    held: list[torch.Tensor] = []

    def grid(model: nn.Module, device: torch.device) -> torch.Tensor:
        if not held:
            held.extend(val[i] for i in range(min(count, len(val))))
        x = torch.stack(held).to(device).float() / 255
        with torch.no_grad():
            styled = as_uint8(stylise(model, x))
        side = x.shape[-1]
        thumb = as_uint8(resize(style, (side, side)))[0]
        blank = torch.full_like(thumb, 255)
        tiles = [thumb, *held, blank, *styled]
        return make_grid(torch.stack(tiles), nrow=len(held) + 1, padding=4, pad_value=255)

    return grid


def build(cfg: Config, rank_zero: bool = True) -> Task:
    d = cfg.data
    style = style_pixels(cfg.style)
    loss = perceptual(cfg, style)
    if is_none(cfg.model.vgg_weights) and rank_zero:
        log.warning("model.vgg_weights is none: the loss network is random, so the network learns no real style")
    train_files, val_files = photos.split(photos.find(Path(d.root)), d.val_count)
    skip = d.on_bad_image == "skip"
    train = photos.Photos(train_files, d.image_size, train=True, skip_bad=skip)
    val = photos.Photos(val_files, d.image_size, train=False, skip_bad=skip)
    grid = make_grid_of(val, style)

    def finish(model: nn.Module, run_dir: Path, device: torch.device) -> dict[str, str]:
        model.eval()
        return {"predictions": str(outputs.save_png(run_dir / "predictions.png", grid(model, device)))}

    return Task(
        name=SPEC.command, config=cfg, model=build_model(cfg), train_data=train, val_data=val,
        train_step=make_train_step(loss), evaluate=make_evaluate(loss), columns=COLUMNS,
        best_metric="val_loss", best_mode="min", finish=finish,
        pictures=lambda model, device: {"predictions": grid(model, device)},
        metadata={"style_image": cfg.style.image, "style_size": list(style.shape[-2:]),
                  "skipped_images": train.skipped + val.skipped},
    )


# --------------------------------------------------------------------------- predict


@dataclass
class Inference:
    """The network as predict runs it, and the dtype and memory format of its input."""

    net: nn.Module
    dtype: torch.dtype = torch.float32
    layout: torch.memory_format = torch.contiguous_format


def inference_net(model: nn.Module, cfg: Config, device: torch.device) -> Inference:
    """A copy of the network in ``train.amp``'s precision as a whole (auto: bf16 on CPUs with native
    bf16, where oneDNN runs the convolutions on AMX; autocast would put every reflection padding
    back in fp32), channels_last; the caller's model is untouched. A network trained in fp16 on a
    GPU runs in ``auto``'s precision on the CPU. An export runs as exported."""
    if not isinstance(model, TransformerNet):
        return Inference(model.eval())
    amp = "auto" if cfg.train.amp == "fp16" and device.type == "cpu" else cfg.train.amp  # fp16 was a GPU's choice
    dtype = runtime.amp_dtype(device, amp) or torch.float32
    layout = torch.channels_last
    return Inference(copy.deepcopy(model).to(dtype=dtype, memory_format=layout).eval(), dtype, layout)


def stylise_pixels(run: Inference, pixels: torch.Tensor, device: torch.device,
                   preserve_color: bool = False) -> torch.Tensor:
    """uint8 (B, 3, H, W) pictures to their uint8 stylisations, one at a time (InstanceNorm's fast
    channels_last path is for one picture, and one picture's tensors stay small)."""
    styled = []
    with torch.inference_mode():
        for picture in pixels:
            x = picture[None].to(device).float().div_(255)
            y = run.net(x.to(run.dtype).contiguous(memory_format=run.layout)).float().clamp_(0, 1)
            styled.append(as_uint8(with_chroma(y, x) if preserve_color else y)[0])
    return torch.stack(styled)


def predict(model: nn.Module, cfg: Config, metadata: dict[str, Any], paths: list[Any],
            device: torch.device, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Each image stylised at its own size, written as ``<stem>_styled.png`` into options["out"].

    Decoded video frames (cvtool.data.video.Frame) go through in one call and come back as
    pictures (``picture``, uint8 (3, H, W)) instead of files.
    """
    keep = bool(options.get("preserve_color"))
    run = inference_net(model, cfg, device)
    if paths and all(isinstance(p, Frame) for p in paths):
        styled = stylise_pixels(run, torch.stack([p.pixels for p in paths]), device, keep)
        return [{"image": str(p), "picture": s} for p, s in zip(paths, styled)]
    if options.get("out") is None:
        raise InputError(f"{SPEC.command} predict writes stylised pictures: give an output folder with --out DIR")
    out = Path(options["out"])
    files = outputs.plan(out, paths, ("styled",), bool(options.get("overwrite")))
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path, planned in zip(paths, files):
        styled = stylise_pixels(run, pixels_of(path)[None], device, keep)[0]
        outputs.save_png(planned["styled"], styled)
        results.append({"image": str(path), "styled": str(planned["styled"]), "size": list(styled.shape[-2:])})
    return results
