"""train-fcn: FCN semantic segmentation of Pascal VOC2012 (an ImageNet ResNet-18 underneath).

Defaults are the book's settings with two fixes: void pixels (255) are ignored by the loss
and every metric instead of counting as background, and validation scores whole images
(padded with void) instead of random crops, so the score is the same every time. The book
sums its loss over the batch; cvtool averages it over the non-void pixels, so the book's
lr 1e-3 becomes 1e-3 x 32 and its weight decay 1e-3 becomes 1e-3 / 32.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cvtool import config as c
from cvtool.data import hub, voc
from cvtool.data.voc import VOID, VOCSegmentation
from cvtool.errors import InputError
from cvtool.models.fcn import FCN
from cvtool.ops.segmentation_metrics import ConfusionMatrix, background_only_miou
from cvtool.tasks.base import StepOutput, Task

NAME = "train-fcn"
# `cvtool eval`: the checkpoint holds every weight, so nothing pretrained is loaded.
EVAL_SETTINGS = {"model.weights": None}
COLUMNS = ("train_loss", "train_pixel_acc", "val_loss", "val_pixel_acc", "val_mean_class_acc", "val_miou")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PICTURES = 4

log = logging.getLogger(__name__)


@dataclass
class Data(c.DataConfig):
    """VOCdevkit/VOC2012: ImageSets/Segmentation/{train,val}.txt, JPEGImages, SegmentationClass."""

    root: str = c.opt("data/VOCdevkit", "VOCdevkit folder, or the VOC2012 folder inside it")
    batch_size: int = c.opt(32, "images per training and validation step", ge=1)
    num_workers: int = c.opt(4, "DataLoader worker processes (0 = load in the main process)", ge=0)
    crop_size: list[int] = c.opt([320, 480], "training crop [height, width] in pixels")
    small_images: Literal["pad", "drop"] = c.opt(
        "pad", "images smaller than the crop: pad with void, or drop them (the book: 1114 train / 1078 val remain)")
    val_crop: bool = c.opt(
        False, "score random crops like the book (varies run to run) instead of whole images padded with void")
    flip: bool = c.opt(False, "random horizontal flips for training (not in the book)")
    scale_range: list[float] = c.opt(
        [1.0, 1.0], "random zoom [min, max] before the training crop; [1, 1] = off (the book)")


@dataclass
class Model:
    """ResNet-18 features, a 1x1 class conv and a bilinear-initialised 32x transposed conv."""

    weights: str | None = c.opt("IMAGENET1K_V1", "backbone weights: torchvision name, a .pth state-dict file, or none")
    num_classes: int = c.opt(21, "classes including background (VOC: 21)", ge=2)
    width: int = c.opt(64, "channels of the first ResNet stage: 64 = ResNet-18 (pretrained weights need it); "
                           "smaller for quick CPU demos", ge=4)


@dataclass
class Optim(c.OptimConfig):
    """The book's SGD, rescaled for a loss averaged over the batch instead of summed."""

    lr: float = c.opt(0.032, "learning rate for the batch-mean loss: the book's 1e-3 on a loss summed "
                             "over 32 images is 1e-3 x 32 (scale with data.batch_size)", gt=0)
    weight_decay: float = c.opt(3.125e-5, "L2 weight decay: the book's 1e-3 divided by its batch of 32", ge=0)


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    optim: Optim = field(default_factory=Optim)
    sched: c.SchedConfig = field(default_factory=c.SchedConfig)
    train: c.TrainConfig = field(default_factory=c.TrainConfig)


def class_names(num_classes: int) -> list[str]:
    return [voc.CLASSES[i] if i < len(voc.CLASSES) else f"class{i}" for i in range(num_classes)]


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) on any device to ImageNet-normalized floats."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def train_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
    """Cross-entropy averaged over the batch's non-void pixels; void changes nothing."""
    images, labels = batch
    target = labels.long()
    logits = model(to_input(images))
    valid = target != VOID
    pixels = valid.sum().clamp(min=1)
    loss = F.cross_entropy(logits, target, ignore_index=VOID, reduction="sum") / pixels
    acc = ((logits.argmax(1) == target) & valid).sum() / pixels
    n = len(images)
    return StepOutput(loss=loss, count=n, stats={"pixel_acc": (acc.detach() * n, n)})


def make_evaluate(classes: list[str]):
    """Scores from one confusion matrix over all validation pixels (void excluded)."""

    def evaluate(model: nn.Module, batches: Iterable, device: torch.device) -> dict[str, float]:
        matrix = ConfusionMatrix(len(classes), device)
        loss = torch.zeros((), device=device)
        pixels = torch.zeros((), device=device, dtype=torch.long)
        for images, labels in batches:
            target = labels.long()
            logits = model(to_input(images))
            loss += F.cross_entropy(logits, target, ignore_index=VOID, reduction="sum")
            pixels += (target != VOID).sum()
            matrix.update(logits.argmax(1), target)
        if pixels.item() == 0:
            return {}
        s = matrix.scores()
        result = {"val_loss": (loss / pixels).item(), "val_pixel_acc": s.pixel_acc,
                  "val_mean_class_acc": s.mean_class_acc, "val_miou": s.miou,
                  "val_miou_background_only": background_only_miou(matrix.matrix.cpu())}
        result.update({f"val_iou/{name}": v for name, v in zip(classes, s.iou) if not math.isnan(v)})
        return result

    return evaluate


def build_model(cfg: Config) -> FCN:
    return FCN(cfg.model.num_classes, cfg.model.width)


def load_pretrained(model: FCN, weights: str | None) -> None:
    from cvtool.models.weights import is_none, pretrained

    if not is_none(weights):
        model.load_backbone(pretrained("resnet18", weights))


def crop_of(cfg: Config) -> tuple[int, int]:
    crop = cfg.data.crop_size
    if len(crop) != 2 or min(crop) < 1:
        raise c.ConfigError(f"data.crop_size must be [height, width] in pixels, got {crop}")
    return crop[0], crop[1]


def build(cfg: Config, rank_zero: bool = True) -> Task:
    from cvtool.models.weights import is_none

    d, m = cfg.data, cfg.model
    crop = crop_of(cfg)
    zoom = d.scale_range
    if len(zoom) != 2 or not 0 < zoom[0] <= zoom[1]:
        raise c.ConfigError(f"data.scale_range must be [min, max] with 0 < min <= max, got {zoom}")
    if m.width != 64 and not is_none(m.weights):
        raise c.ConfigError(f"model.width {m.width} does not fit pretrained ResNet-18 weights; "
                            f"use width 64 or model.weights: none")
    root = hub.ensure(Path(d.root), "voc2012", d.download, voc.LAYOUT)
    drop = crop if d.small_images == "drop" else None
    skip = d.on_bad_image == "skip"
    train = VOCSegmentation(root, "train", voc.train_transform(crop, flip=d.flip, scale_range=tuple(zoom)),
                            num_classes=m.num_classes, min_size=drop, skip_bad=skip)
    val = VOCSegmentation(root, "val", voc.random_crop(crop) if d.val_crop else None,
                          num_classes=m.num_classes, min_size=drop if d.val_crop else None, skip_bad=skip)
    for split in (train, val):
        if split.dropped and rank_zero:
            log.warning("%s: dropped %d of %d images smaller than the %dx%d crop (data.small_images: drop)",
                        split.split, split.dropped, split.dropped + len(split), *crop)
    model = build_model(cfg)
    load_pretrained(model, m.weights)
    classes = class_names(m.num_classes)

    def finish(model: nn.Module, run_dir: Path, device: torch.device) -> dict[str, str]:
        path = prediction_grid(model, val, classes, device, run_dir / "predictions.png")
        return {"predictions": str(path)}

    return Task(
        name=NAME, config=cfg, model=model, train_data=train, val_data=val,
        train_step=train_step, evaluate=make_evaluate(classes), columns=COLUMNS,
        best_metric="val_miou", best_mode="max", collate_fn=voc.pad_collate, finish=finish,
        metadata={"classes": classes, "dropped_small_images": {"train": train.dropped, "val": val.dropped},
                  "skipped_images": train.skipped + val.skipped},
    )


@torch.no_grad()
def segment(model: nn.Module, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Class indices (H, W) on the CPU for one uint8 (3, H, W) image of any size."""
    model.eval()
    logits = model(to_input(image[None].to(device)))
    return logits.argmax(1)[0].to("cpu", torch.uint8)


def prediction_grid(model: nn.Module, data: VOCSegmentation, classes: list[str], device: torch.device,
                    path: Path) -> Path:
    """image | truth | prediction for the first few validation images, with a class legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = min(PICTURES, len(data))
    fig, axes = plt.subplots(rows, 3, figsize=(11, 2.8 * rows), squeeze=False, constrained_layout=True)
    for r in range(rows):
        image, truth = (t.as_subclass(torch.Tensor) for t in data.load(r))
        pred = segment(model, image, device)
        panels = (image.permute(1, 2, 0).numpy(), voc.colorize(truth), voc.colorize(pred))
        for ax, panel, title in zip(axes[r], panels, ("image", "truth (void = cream)", "prediction")):
            ax.imshow(panel)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title)
        shown = sorted((set(truth.unique().tolist()) | set(pred.unique().tolist())) - {VOID})
        legend = [Patch(color=voc.PALETTE[k] / 255, label=classes[k]) for k in shown if k < len(classes)]
        axes[r][2].legend(handles=legend, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def predict(model: nn.Module, cfg: Config, metadata: dict[str, Any], paths: list[Path],
            device: torch.device, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Write ``<stem>_mask.png`` (VOC palette) and ``<stem>_overlay.png`` for each image into options["out"]."""
    from cvtool.data.images import load_rgb

    if options.get("out") is None:
        raise InputError("train-fcn predict writes mask pictures: give an output folder with --out DIR")
    out = Path(options["out"])
    out.mkdir(parents=True, exist_ok=True)
    classes = metadata.get("classes") or class_names(cfg.model.num_classes)
    results, stems = [], set()
    for path in paths:
        rgb = np.asarray(load_rgb(path))
        mask = segment(model, torch.from_numpy(rgb.copy()).permute(2, 0, 1), device).numpy()
        stem = Path(path).stem
        stem = stem if stem not in stems else f"{stem}-{len(stems)}"
        stems.add(stem)
        mask_path, overlay_path = out / f"{stem}_mask.png", out / f"{stem}_overlay.png"
        voc.palette_image(mask).save(mask_path)
        blend = np.where((mask > 0)[..., None], 0.5 * rgb + 0.5 * voc.colorize(mask), rgb)
        Image.fromarray(blend.astype(np.uint8)).save(overlay_path)
        results.append({"image": str(path), "mask": str(mask_path), "overlay": str(overlay_path),
                        "classes_present": [classes[k] for k in np.unique(mask).tolist() if k < len(classes)]})
    return results
