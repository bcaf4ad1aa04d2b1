"""A throwaway task outside cvtool: a four-filter CNN on hotdog-layout class folders.

It is what a plugin package would ship: one module that registers a ``TaskSpec`` on
import. tests/test_registry.py loads it as an entry point and drives it through the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms import v2

from cvtool import config as c
from cvtool.data import hotdog
from cvtool.data.folders import ClassFolders
from cvtool.engine.task import Task
from cvtool.tasks import classify
from cvtool.tasks.registry import TaskSpec, register


@dataclass
class Data(c.DataConfig):
    """root/{train,test}/<class>/*.png"""

    root: str = c.opt("data/toy", "dataset folder holding train/ and test/")
    batch_size: int = c.opt(4, "images per training step", ge=1)
    num_workers: int = c.opt(0, "DataLoader worker processes (0 = load in the main process)", ge=0)
    image_size: int = c.opt(16, "images are resized to this square", ge=4)


@dataclass
class Model:
    """The network's width."""

    channels: int = c.opt(4, "convolution filters", ge=1)
    num_classes: int = c.opt(2, "output classes", ge=2)


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    optim: c.OptimConfig = field(default_factory=lambda: c.OptimConfig(name="adam", lr=0.01))
    sched: c.SchedConfig = field(default_factory=c.SchedConfig)
    train: c.TrainConfig = field(default_factory=lambda: c.TrainConfig(epochs=1))


def build_model(cfg: Config) -> nn.Module:
    m = cfg.model
    return nn.Sequential(nn.Conv2d(3, m.channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(m.channels, m.num_classes))


def transform(cfg: Config) -> v2.Compose:
    size = cfg.data.image_size
    return v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)])


def build(cfg: Config, rank_zero: bool = True) -> Task:
    root = Path(cfg.data.root)
    train = ClassFolders(root / "train", transform(cfg))
    val = ClassFolders(root / "test", transform(cfg), classes=train.classes)
    return Task(name=SPEC.command, config=cfg, model=build_model(cfg), train_data=train, val_data=val,
                train_step=classify.train_step, evaluate=classify.evaluate, columns=classify.COLUMNS,
                best_metric="val_acc", metadata={"classes": train.classes})


def predict(model: nn.Module, cfg: Config, metadata: dict[str, Any], paths: list[Path],
            device: torch.device, options: dict[str, Any]) -> list[dict[str, Any]]:
    return classify.predict_images(model, transform(cfg), metadata["classes"], paths, device, top=2)


def synthesize(out: Path, *, n: int = 6, size: int = 24, seed: int = 0) -> Path:
    """The hotdog look-alike, small."""
    return hotdog.synthesize(out, n=n, size=size, seed=seed)


SPEC = register(TaskSpec(
    command="train-toy",
    summary="Train a four-filter CNN on two class folders (a test plugin).",
    config=Config, build=build, build_model=build_model, predict=predict,
    synth={"toy": synthesize},
    family="classify",
))
