"""train-cifar: its config and spec, without torch; its code is cvtool.tasks.cifar."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cvtool import config as c
from cvtool.data import stats
from cvtool.tasks.registry import TaskSpec, register
from cvtool.tasks.specs import classify

INPUT_SIZE = (32, 32)  # CIFAR-10's images; predict squashes any picture to it


@dataclass
class Data(c.DataConfig):
    """The Kaggle CIFAR-10 folder (or torchvision's cifar-10-batches-py) and its in-memory split."""

    root: str = c.opt("data/kaggle_cifar10_tiny", "dataset folder: train/, trainLabels.csv, test/ "
                      "(or torchvision's cifar-10-batches-py)")
    tiny: bool = c.opt(True, "root is the book's 1000-image sample, fetched when missing; false = the full "
                       "Kaggle set, which needs a Kaggle account and is unpacked by hand")
    format: Literal["auto", "kaggle", "torchvision"] = c.opt(
        "auto", "on-disk layout: kaggle (PNGs + trainLabels.csv), torchvision (python batches), auto = detect")
    batch_size: int = c.opt(32, "images per training step (the book: 32 on the tiny set, 128 on the full set)",
                            ge=1)
    num_workers: int = c.opt(0, "DataLoader workers; batches are slices of a decoded tensor, so 0 is fastest",
                             ge=0)
    valid_ratio: float = c.opt(0.1, "fraction of each class held out for validation", ge=0, lt=1)
    split: Literal["train", "train_valid"] = c.opt(
        "train", "train: train on the rest, validate on the held-out part; train_valid: train on everything "
        "(the book's final pass before predicting the test set)")
    split_seed: int = c.opt(0, "seed of the validation split (fixed apart from train.seed)", ge=0)
    cache_dir: str | None = c.opt(None, "where the decoded uint8 cache goes; null = next to the data, or "
                                  "$XDG_CACHE_HOME/cvtool when the data folder is read-only")
    on_device: bool = c.opt(False, "keep the decoded training set on the training device (GPU): no per-step "
                            "host-to-device copies; needs num_workers: 0")
    augment: Literal["book", "flip_translate", "none"] = c.opt(
        "book", "book: Resize 40 + RandomResizedCrop 32 (crop_scale, ratio 1) + flip; flip_translate: flip + "
        "shift by up to translate pixels (reflect padding); both run batch-wise on the device")
    crop_scale: list[float] = c.opt([0.64, 1.0], "book: area range of the random crop, as a fraction of the "
                                    "40x40 resized image")
    translate: int = c.opt(2, "flip_translate: largest shift in pixels", ge=0, le=8)
    mean: list[float] = c.opt(list(stats.CIFAR_MEAN), "per-channel normalisation mean (the book's CIFAR values)")
    std: list[float] = c.opt(list(stats.CIFAR_STD), "per-channel normalisation std")
    test_chunk: int = c.opt(4096, "test images decoded and predicted per chunk (bounds memory)", ge=1)


@dataclass
class Model:
    """The network."""

    arch: Literal["resnet18", "fastnet"] = c.opt(
        "resnet18", "resnet18: the book's CIFAR ResNet-18 (3x3 stem, stride 1, no max-pool); fastnet: a "
        "small VGG-style net with batch norm for fast GPU training")
    width: int = c.opt(64, "channels of the first stage; resnet18 uses width x (1,2,4,8), fastnet "
                       "width x (1/2, 1, 4, 4)", ge=4)
    num_classes: classify.NumClasses = c.opt("auto", classify.NUM_CLASSES_HELP + " (CIFAR-10: 10)", ge=2)


@dataclass
class Eval:
    """How validation and test predictions are made."""

    tta_flip: bool = c.opt(False, "average the logits of each image and its mirror image")


@dataclass
class Optim(c.OptimConfig):
    """The book's SGD, rescaled: it sums the loss over the batch, cvtool averages it."""

    lr: float = c.opt(2e-4 * 32, "learning rate at reference_batch for the batch-MEAN loss: the book's 2e-4 on "
                      "a summed loss x 32 (linear scaling gives its full-set 0.0256 at batch 128)", gt=0)
    reference_batch: int = c.opt(32, "the batch optim.lr is meant for: the book's 32", ge=1)
    momentum: float = c.opt(0.9, "SGD momentum", ge=0, lt=1)
    weight_decay: float = c.opt(5e-4 / 32, "L2 weight decay for the mean loss: the book's 5e-4 / batch_size "
                                "(1.5625e-5 at 32, 3.90625e-6 at 128)", ge=0)


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    loss: classify.Loss = field(default_factory=classify.Loss)
    eval: Eval = field(default_factory=Eval)
    optim: Optim = field(default_factory=Optim)
    sched: c.SchedConfig = field(default_factory=lambda: c.SchedConfig(name="step", step_size=4, gamma=0.9))
    train: c.TrainConfig = field(default_factory=lambda: c.TrainConfig(epochs=20))
    log: c.LogConfig = field(default_factory=c.LogConfig)


CODE = "cvtool.tasks.cifar"
SPEC = register(TaskSpec(
    command="train-cifar",
    summary="Train on CIFAR-10 in the Kaggle layout and write submission.csv.",
    config=Config, build=f"{CODE}:build", build_model=f"{CODE}:build_model", predict=f"{CODE}:predict",
    predict_options=("kaggle_test",),
    synth={"cifar": "cvtool.data.kaggle_synth:synthesize_cifar"},
    family="classify", input_size=INPUT_SIZE,
))
