"""The data section both detectors (train-ssd, train-rcnn) read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cvtool import config as c


@dataclass
class DetectionData(c.DataConfig):
    """What both detectors read: a bananas, VOC, COCO or YOLO folder (data.format; docs/data.md)."""

    root: str = c.opt("data/banana-detection", "dataset folder: banana-detection (bananas_{train,val}/), a "
                      "VOCdevkit or VOC<year> folder, a COCO folder or a YOLO folder with data.yaml")
    format: Literal["auto", "bananas", "voc", "coco", "yolo"] = c.opt(
        "auto", "dataset layout: auto (found from the folder and named in the run header; a missing folder is "
        "fetched as bananas), bananas, voc, coco or yolo")
    image_size: int = c.opt(256, "images are resized to image_size x image_size", ge=32)
    classes: Literal["auto"] | list[str] = c.opt(
        "auto", "object class names: auto = the data's (COCO categories, YOLO names, VOC object names sorted; "
        "bananas: banana); a list given must agree with the data (VOC: name every class its XML uses)")
    train_split: str = c.opt("auto", "VOC: the ImageSets/Main list that trains (auto: train, else trainval); "
                             "COCO: the training annotation JSON, relative to root (auto: found)")
    val_split: str = c.opt("auto", "VOC: the list that validates (auto: val, else test); COCO: the validation "
                           "annotation JSON, relative to root")
    train_images: str = c.opt("auto", "COCO: the training images' folder, relative to root (auto: found)")
    val_images: str = c.opt("auto", "COCO: the validation images' folder, relative to root (auto: found)")
    cache: Literal["auto", "on", "off"] = c.opt(
        "auto", "decode each split into memory once (on), or each image when it is needed (off); auto: on when "
        "the decoded splits fit data.cache_budget_mb and half the free memory (the run header says which)")
    cache_budget_mb: int = c.opt(2048, "most memory data.cache: auto lets the decoded images take", ge=0)
    flip: bool = c.opt(False, "augment: random horizontal flips, boxes moved along")
    scale_jitter: float = c.opt(0.0, "augment: random zoom by up to +-this fraction, boxes moved along; 0 = off",
                                ge=0, lt=1)
