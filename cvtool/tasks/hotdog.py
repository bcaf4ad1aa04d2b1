"""finetune-hotdog: an ImageNet ResNet-18 with a new 2-way output layer.

Defaults are the book's fine-tuning settings. The book sums its loss over the batch;
cvtool averages it, so the same step needs lr x 128 and weight decay / 128.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cvtool import config as c
from cvtool.data import hub, presets
from cvtool.data.folders import ClassFolders
from cvtool.data.hotdog import CLASSES, LAYOUT
from cvtool.engine.task import Task
from cvtool.models.weights import pretrained
from cvtool.tasks import classify
from cvtool.tasks.specs.hotdog import SPEC, Config


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
