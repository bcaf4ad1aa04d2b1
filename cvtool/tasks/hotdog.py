"""finetune-hotdog: an ImageNet ResNet-18 with a new 2-way output layer.

Defaults are the book's fine-tuning settings. The book sums its loss over the batch;
cvtool averages it, so the same step needs lr x 128 and weight decay / 128.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cvtool import config as c
from cvtool.data import hotdog as hotdog_data
from cvtool.data import hub, presets, transforms
from cvtool.data.folders import ClassFolders
from cvtool.data.hotdog import CLASSES, LAYOUT
from cvtool.engine.task import Task
from cvtool.models.weights import pretrained
from cvtool.tasks import classify
from cvtool.tasks.registry import TaskSpec, register

@dataclass
class Data(c.DataConfig):
    """hotdog/{train,test}/{hotdog,not-hotdog}/*.png; test is the validation split."""

    root: str = c.opt("data/hotdog", "dataset folder holding train/ and test/")
    batch_size: int = c.opt(128, "images per training step", ge=1)
    num_workers: int = c.opt(4, "DataLoader worker processes (0 = load in the main process)", ge=0)
    image_size: int = c.opt(224, "training crop and test centre-crop size in pixels", ge=8)
    resize: int = c.opt(256, "test images are resized to resize x resize before the centre crop", ge=8)
    augment: bool = c.opt(True, "random resized crop + flip for training; false = train on the test view")
    mean: list[float] = c.opt(transforms.IMAGENET_MEAN, "per-channel normalisation mean")
    std: list[float] = c.opt(transforms.IMAGENET_STD, "per-channel normalisation std")


@dataclass
class Model:
    """The backbone and where its starting weights come from."""

    arch: Literal["resnet18", "resnet34"] = c.opt("resnet18", "torchvision backbone")
    weights: str | None = c.opt("IMAGENET1K_V1", "torchvision weight name, a .pth state-dict file, or none")
    num_classes: classify.NumClasses = c.opt("auto", classify.NUM_CLASSES_HELP + " (hotdog: 2 class folders)",
                                             ge=2)


@dataclass
class Finetune:
    """How the pretrained part is trained."""

    head_lr_mult: float = c.opt(10.0, "learning-rate multiplier of the new output layer", gt=0)
    freeze_backbone: bool = c.opt(False, "train only the output layer (frozen BatchNorm stays in eval mode)")


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    finetune: Finetune = field(default_factory=Finetune)
    loss: classify.Loss = field(default_factory=classify.Loss)
    optim: c.OptimConfig = field(default_factory=lambda: c.OptimConfig(lr=5e-5 * 128, reference_batch=128,
                                                                       weight_decay=1e-3 / 128))
    sched: c.SchedConfig = field(default_factory=c.SchedConfig)
    train: c.TrainConfig = field(default_factory=lambda: c.TrainConfig(epochs=5))
    log: c.LogConfig = field(default_factory=c.LogConfig)


def build_model(cfg: Config, weights: str | None = None) -> nn.Module:
    model = pretrained(cfg.model.arch, weights)
    model.fc = classify.xavier_head(model.fc.in_features, c.class_count(cfg.model.num_classes, len(CLASSES)))
    return model


def eval_transform(cfg: Config):
    d = cfg.data
    return presets.classification_eval(d.image_size, d.resize, d.mean, d.std)


def build(cfg: Config, rank_zero: bool = True) -> Task:
    d = cfg.data
    root = hub.ensure(Path(d.root), "hotdog", d.download, LAYOUT)
    view = presets.classification_train(d.image_size, d.mean, d.std) if d.augment else eval_transform(cfg)
    skip = d.on_bad_image == "skip"
    train = ClassFolders(root / "train", view, skip_bad=skip, layout=LAYOUT)
    val = ClassFolders(root / "test", eval_transform(cfg), classes=train.classes, skip_bad=skip, layout=LAYOUT)
    cfg = c.with_num_classes(cfg, len(train.classes), str(root / "train"))
    model = build_model(cfg, cfg.model.weights)
    train_mode = classify.freeze(model, model.fc) if cfg.finetune.freeze_backbone else None
    return Task(
        name=SPEC.command, config=cfg, model=model, train_data=train, val_data=val,
        train_step=classify.smoothed_step(cfg.loss.label_smoothing), evaluate=classify.evaluate,
        columns=classify.COLUMNS,
        best_metric="val_acc", best_mode="max",
        param_groups=lambda m: classify.head_groups(m, m.fc, cfg.finetune.head_lr_mult),
        train_mode=train_mode,
        pictures=classify.make_pictures(classify.file_samples(val.samples, eval_transform(cfg)), train.classes),
        metadata={"classes": train.classes, "skipped_images": train.skipped + val.skipped},
    )


def predict(model: nn.Module, cfg: Config, metadata: dict[str, Any], paths: list[Path],
            device: torch.device, options: dict[str, Any]) -> list[dict[str, Any]]:
    classes = metadata.get("classes", CLASSES)
    return classify.predict_images(model, eval_transform(cfg), classes, paths, device, top=options.get("top", 5))


SPEC = register(TaskSpec(
    command="finetune-hotdog",
    summary="Fine-tune an ImageNet ResNet-18 on the hotdog / not-hotdog folders.",
    config=Config, build=build, build_model=build_model, predict=predict,
    synth={"hotdog": hotdog_data.synthesize},
    # `cvtool eval`: the checkpoint holds every weight, so nothing pretrained is loaded.
    eval_settings={"model.weights": None},
    family="classify",
))
