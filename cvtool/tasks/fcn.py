"""train-fcn: FCN semantic segmentation of Pascal VOC2012 or any mask set (an ImageNet ResNet-18 underneath).

Defaults are the book's settings with two fixes: void pixels (255) are ignored by the loss
and every metric instead of counting as background, and validation scores whole images
(padded with void) instead of random crops, so the score is the same every time. The book
sums its loss over the batch; cvtool averages it over the non-void pixels, so the book's
lr 1e-3 becomes 1e-3 x 32 and its weight decay 1e-3 becomes 1e-3 / 32.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvtool import config as c
from cvtool.data import hub, masks, seg_dataset, segmentation, voc
from cvtool.data.seg_dataset import MaskDataset
from cvtool.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from cvtool.engine.task import StepOutput, Task
from cvtool.errors import MissingResource
from cvtool.models.fcn import FCN
from cvtool.tasks import segment
from cvtool.tasks.specs.fcn import SPEC, Config, Data

COLUMNS = ("train_loss", "train_pixel_acc", "val_loss", "val_pixel_acc", "val_mean_class_acc", "val_miou")

log = logging.getLogger(__name__)


def class_names(num_classes: int) -> list[str]:
    """Names for a checkpoint that carries none: VOC's, then class<k>."""
    return [voc.CLASSES[i] if i < len(voc.CLASSES) else f"class{i}" for i in range(num_classes)]


BACKGROUND_NAMES = ("background", "_background_", "__background__", "bg")
VOID_COLOUR = (224, 224, 192)  # VOC's void cream


def labels(classes: list[str], colours: Any = None, void: int = voc.VOID) -> segment.Labels:
    """The data's labelling for pictures and masks: its class colours where it has them (else
    VOC's palette), void in cream; class 0 stays untinted in overlays when it is background."""
    palette = voc.PALETTE.copy()
    if colours is not None and len(colours):
        palette[: len(colours)] = np.asarray(colours, dtype=np.uint8)
    palette[void] = VOID_COLOUR
    background = 0 if classes and classes[0].lower() in BACKGROUND_NAMES else None
    return segment.Labels(names=list(classes), palette=palette, void=void, background=background,
                          void_colour="cream")


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) on any device to ImageNet-normalized floats."""
    return normalize(images, IMAGENET_MEAN, IMAGENET_STD)


def forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model(to_input(images))


def train_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], void: int = voc.VOID) -> StepOutput:
    """Cross-entropy averaged over the batch's non-void pixels; void changes nothing."""
    return segment.train_step(model, batch, forward, void)


def make_evaluate(classes: list[str], void: int = voc.VOID):
    """Scores from one confusion matrix over all validation pixels (void excluded)."""
    return segment.make_evaluate(labels(classes, void=void), forward)


def first_samples(data: MaskDataset) -> segment.Samples:
    """A split's first whole images and labels (no crop), for predictions.png."""

    def samples(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [tuple(t.as_subclass(torch.Tensor) for t in data.load(i)) for i in range(min(n, len(data)))]

    return samples


def build_model(cfg: Config) -> FCN:
    return FCN(c.class_count(cfg.model.num_classes, len(voc.CLASSES)), cfg.model.width)


def load_pretrained(model: FCN, weights: str | None) -> None:
    from cvtool.models.weights import is_none, pretrained

    if not is_none(weights):
        model.load_backbone(pretrained("resnet18", weights))


def crop_of(cfg: Config) -> tuple[int, int]:
    crop = cfg.data.crop_size
    if len(crop) != 2 or min(crop) < 1:
        raise c.ConfigError(f"data.crop_size must be [height, width] in pixels, got {crop}")
    return crop[0], crop[1]


def check_data(d: Data) -> tuple[tuple[float, float], np.ndarray | None]:
    """The zoom range and the colour table (data.palette) once checked."""
    zoom = d.scale_range
    if len(zoom) != 2 or not 0 < zoom[0] <= zoom[1]:
        raise c.ConfigError(f"data.scale_range must be [min, max] with 0 < min <= max, got {zoom}")
    if d.palette is None:
        return (zoom[0], zoom[1]), None
    bad = [k for k, rgb in enumerate(d.palette) if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb)]
    if bad or not d.palette:
        raise c.ConfigError(f"data.palette must be a list of [r, g, b] in 0..255, got {d.palette[bad[0]] if bad else []}"
                            + (f" at data.palette[{bad[0]}]" if bad else ""))
    return (zoom[0], zoom[1]), np.array(d.palette, dtype=np.uint8)


def open_data(d: Data) -> segmentation.Layout:
    """The layout at data.root; a missing root is fetched as VOC2012 (format auto or voc)."""
    root = Path(d.root)
    if d.format == "folders" and not root.exists():
        raise MissingResource(f"dataset folder {root} does not exist (expected {segmentation.FOLDERS_LAYOUT})")
    root = hub.ensure(root, "voc2012", d.download, voc.LAYOUT)
    return segmentation.open_layout(root, d.format, (d.train_split, d.val_split))


def resolve_classes(cfg: Config, layout: segmentation.Layout, palette: np.ndarray | None
                    ) -> tuple[Config, masks.Names, masks.MaskFormat]:
    """The names (data.classes against the data), model.num_classes following them, the mask format."""
    d = cfg.data
    names = seg_dataset.names_of(layout, d.classes, cfg.model.num_classes, palette, d.void)
    cfg = c.with_num_classes(cfg, len(names.names), names.source)
    count = len(names.names)
    if d.void < count:
        raise c.ConfigError(f"data.void {d.void} is class {d.void} ({names.names[d.void]!r}); void must be a "
                            f"value no class has (0..{count - 1} are classes)")
    if palette is not None and len(palette) != count:
        raise c.ConfigError(f"data.palette has {len(palette)} colours but there are {count} classes "
                            f"(from {names.source}); give one [r, g, b] per class")
    colours, colours_from = (palette, "data.palette") if palette is not None else (names.colours, names.source)
    return cfg, names, masks.MaskFormat(count, d.void, colours, names.source, colours_from)


def build(cfg: Config, rank_zero: bool = True) -> Task:
    from cvtool.models.weights import is_none

    d, m = cfg.data, cfg.model
    crop = crop_of(cfg)
    zoom, palette = check_data(d)
    if m.width != 64 and not is_none(m.weights):
        raise c.ConfigError(f"model.width {m.width} does not fit pretrained ResNet-18 weights; "
                            f"use width 64 or model.weights: none")
    layout = open_data(d)
    cfg, names, fmt = resolve_classes(cfg, layout, palette)
    seg_dataset.check_sample(layout, fmt)
    if layout.note and rank_zero:
        log.warning("%s", layout.note)
    drop = crop if d.small_images == "drop" else None
    skip = d.on_bad_image == "skip"
    train = MaskDataset(layout.splits["train"], fmt, seg_dataset.train_transform(
        crop, void=d.void, flip=d.flip, scale_range=zoom), min_size=drop, skip_bad=skip)
    val = MaskDataset(layout.splits["val"], fmt, seg_dataset.random_crop(crop, d.void) if d.val_crop else None,
                      min_size=drop if d.val_crop else None, skip_bad=skip)
    for split in (train, val):
        if split.dropped and rank_zero:
            log.warning("%s: dropped %d of %d images smaller than the %dx%d crop (data.small_images: drop)",
                        split.split, split.dropped, split.dropped + len(split), *crop)
    model = build_model(cfg)
    load_pretrained(model, m.weights)
    look = labels(names.names, fmt.colours, d.void)
    return Task(
        name=SPEC.command, config=cfg, model=model, train_data=train, val_data=val,
        train_step=partial(train_step, void=d.void), evaluate=segment.make_evaluate(look, forward), columns=COLUMNS,
        best_metric="val_miou", best_mode="max", collate_fn=partial(seg_dataset.pad_collate, void=d.void),
        finish=segment.make_finish(forward, look, first_samples(val)),
        pictures=segment.make_pictures(forward, look, first_samples(val)),
        metadata={"classes": names.names, "classes_from": names.source,
                  "palette": look.palette[: len(names.names)].tolist(), "void": d.void,
                  "data_format": layout.format, "splits": {"train": train.split, "val": val.split},
                  "dropped_small_images": {"train": train.dropped, "val": val.dropped},
                  "skipped_images": train.skipped + val.skipped},
    )


def predict(model: nn.Module, cfg: Config, metadata: dict[str, Any], paths: list[Path],
            device: torch.device, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Write ``<stem>_mask.png`` (palette PNG in the data's colours) and ``<stem>_overlay.png`` for
    each image into options["out"], classes named as the checkpoint's data names them."""
    classes = metadata.get("classes") or class_names(c.class_count(cfg.model.num_classes, len(voc.CLASSES)))
    look = labels(classes, metadata.get("palette"), metadata.get("void", voc.VOID))
    return segment.predict(model, paths, device, options, look, forward, SPEC.command)
