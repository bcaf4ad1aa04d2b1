"""stylize: its config and spec (it has no training loop), without torch; its code is cvtool.tasks.stylize."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cvtool import config as c
from cvtool.tasks.registry import TaskSpec, register

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
    amp: Literal["auto", "off", "bf16", "fp16"] | None = c.opt(
        None, "former name of train.amp, still read (null = train.amp decides)")
    channels_last: bool | None = c.opt(None, "former name of train.channels_last, still read (null = train's)")
    scales: int = c.opt(1, "optimise at 1/2^(K-1) of the size first, then upsample and refine, K times", ge=1)
    save_every: int = c.opt(0, "with --out-dir: write a snapshot every N steps (0 = none)", ge=0)


@dataclass
class Speed:
    """How the math runs: the same keys, meanings and defaults as the train commands' train section."""

    amp: Literal["auto", "off", "bf16", "fp16"] = c.opt(
        "auto", "mixed precision for VGG: auto = bf16 on CUDA with bf16 and on CPUs with native bf16 "
                "(AVX512-BF16, AMX), off elsewhere")
    channels_last: bool | Literal["auto"] = c.opt(
        "auto", "NHWC memory format for VGG and the image: true, false, or auto (on a GPU, and on the CPU, "
                "where VGG measured 1.2x faster with it)")
    threads: int | Literal["auto"] = c.opt(
        "auto", "CPU threads: N, or auto = the CPUs this process may use, following other processes' load "
                "on Linux; OMP_NUM_THREADS, when set, replaces auto", ge=1)


@dataclass
class Config:
    image: Picture = field(default_factory=Picture)
    model: Model = field(default_factory=Model)
    loss: Loss = field(default_factory=Loss)
    optim: Optim = field(default_factory=Optim)
    run: Run = field(default_factory=Run)
    log: c.LogConfig = field(default_factory=c.LogConfig)
    train: Speed = field(default_factory=Speed)


SPEC = register(TaskSpec(
    command="stylize",
    summary="Neural style transfer: paint CONTENT in the style of STYLE.",
    config=Config, build_model=None, predict=None,
    family="stylize",
))
