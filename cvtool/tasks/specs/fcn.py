"""train-fcn: its config and spec, without torch; its code is cvtool.tasks.fcn."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cvtool import config as c
from cvtool.tasks.registry import TaskSpec, register

@dataclass
class Data(c.DataConfig):
    """A VOC folder (any year) or an images/ + masks/ folder pair; masks hold class indices."""

    root: str = c.opt("data/VOCdevkit", "VOCdevkit folder, a VOC year folder inside it, or a folder holding "
                      "images/{train,val}/ and masks/{train,val}/")
    format: Literal["auto", "voc", "folders"] = c.opt(
        "auto", "layout: auto (found from the folder; a missing one is fetched as VOC2012), voc or folders")
    classes: list[str] | Literal["auto"] = c.opt(
        "auto", "class names, index k = class k; auto = labelmap.txt or classes.txt beside the masks, VOC's 21 "
                "names for masks in VOC's colours, else an error asking for the list")
    palette: list[list[int]] | None = c.opt(
        None, "RGB colour masks: [[r, g, b], ...], one colour per class in class order; null = a labelmap.txt's "
              "colours, else VOC's")
    void: int = c.opt(255, "mask value ignored by the loss and every metric (never a class)", ge=0, le=255)
    train_split: str = c.opt("train", "training split: VOC's ImageSets/Segmentation/<name>.txt or "
                                      "images/<name>/ (VOC with only trainval/test lists: those)")
    val_split: str = c.opt("val", "validation split, named the same way")
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
    num_classes: int | Literal["auto"] = c.opt(
        "auto", "classes including background; auto = as many as the data's names (VOC: 21); a number N "
                "with masks in VOC's colours keeps VOC's first N classes", ge=2)
    width: int = c.opt(64, "channels of the first ResNet stage: 64 = ResNet-18 (pretrained weights need it); "
                           "smaller for quick CPU demos", ge=4)


@dataclass
class Optim(c.OptimConfig):
    """The book's SGD, rescaled for a loss averaged over the batch instead of summed."""

    lr: float = c.opt(0.032, "learning rate at reference_batch for the batch-mean loss: the book's 1e-3 on a "
                             "loss summed over 32 images is 1e-3 x 32", gt=0)
    reference_batch: int = c.opt(32, "the batch optim.lr is meant for: the book's 32", ge=1)
    weight_decay: float = c.opt(3.125e-5, "L2 weight decay: the book's 1e-3 divided by its batch of 32", ge=0)


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    optim: Optim = field(default_factory=Optim)
    sched: c.SchedConfig = field(default_factory=c.SchedConfig)
    train: c.TrainConfig = field(default_factory=c.TrainConfig)
    log: c.LogConfig = field(default_factory=c.LogConfig)


CODE = "cvtool.tasks.fcn"
SPEC = register(TaskSpec(
    command="train-fcn",
    summary="Train an FCN for semantic segmentation on Pascal VOC (any year) or an images/ + masks/ folder pair.",
    config=Config, build=f"{CODE}:build", build_model=f"{CODE}:build_model", predict=f"{CODE}:predict",
    synth={"voc": "cvtool.data.voc_synth:synthesize", "seg-folders": "cvtool.data.seg_synth:synthesize_folders"},
    # `cvtool eval`: the checkpoint holds every weight, so nothing pretrained is loaded.
    eval_settings={"model.weights": None},
    family="segment",
))
