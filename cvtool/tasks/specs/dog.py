"""train-dog: its config and spec, without torch; its code is cvtool.tasks.dog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cvtool import config as c
from cvtool.data import stats
from cvtool.tasks.registry import TaskSpec, register
from cvtool.tasks.specs import classify

@dataclass
class Data(c.DataConfig):
    """The Kaggle dog-breed folder and its in-memory stratified split."""

    root: str = c.opt("data/kaggle_dog_tiny", "dataset folder: train/, labels.csv, test/, sample_submission.csv")
    tiny: bool = c.opt(True, "root is the book's small sample, fetched when missing; false = the full Kaggle "
                       "set, which needs a Kaggle account and is unpacked by hand")
    batch_size: int = c.opt(32, "images per training step (the book: 32 on the tiny set, 128 on the full set)",
                            ge=1)
    num_workers: int = c.opt(4, "DataLoader worker processes decoding JPEGs (0 = in the main process)", ge=0)
    valid_ratio: float = c.opt(0.1, "fraction of each breed held out for validation", ge=0, lt=1)
    split: Literal["train", "train_valid"] = c.opt(
        "train", "train: validate on the held-out part; train_valid: train on everything (the book's final pass)")
    split_seed: int = c.opt(0, "seed of the validation split (fixed apart from train.seed)", ge=0)
    image_size: int = c.opt(224, "training crop and test centre-crop size in pixels", ge=8)
    resize: int = c.opt(256, "test view: the shorter side is resized to this, then centre-cropped", ge=8)
    augment: bool = c.opt(True, "the book's RandomResizedCrop (crop_scale, ratio 3/4..4/3) + flip + ColorJitter; "
                          "false = train on the test view")
    crop_scale: list[float] = c.opt([0.08, 1.0], "area range of the random crop")
    jitter: float = c.opt(0.4, "ColorJitter brightness, contrast and saturation", ge=0)
    mean: list[float] = c.opt(stats.IMAGENET_MEAN, "per-channel normalisation mean (ImageNet)")
    std: list[float] = c.opt(stats.IMAGENET_STD, "per-channel normalisation std (ImageNet)")


@dataclass
class Model:
    """ResNet-34 and the new head."""

    weights: str | None = c.opt("IMAGENET1K_V1", "ResNet-34 weights: torchvision name, a .pth file, or none")
    head_on: Literal["logits", "features"] = c.opt(
        "logits", "logits: the book's head on the 1000 ImageNet logits; features: on the 512-d pooled features")
    hidden: int = c.opt(256, "hidden units of the head Linear-ReLU-Linear", ge=1)
    num_classes: classify.NumClasses = c.opt("auto", classify.NUM_CLASSES_HELP + " (labels.csv's breeds: 120)",
                                             ge=2)


@dataclass
class Finetune:
    """Which pretrained parameters train."""

    mode: Literal["frozen", "partial", "full"] = c.opt(
        "frozen", "frozen: only the head trains, backbone BatchNorm in eval mode; partial: the last stage "
        "(layer4, and fc with head_on logits) and the head; full: everything")
    backbone_lr_mult: float = c.opt(0.1, "learning-rate multiplier of the pretrained layers that train "
                                    "(partial, full)", gt=0)
    cache_features: bool = c.opt(False, "frozen without augmentation: compute the backbone features once "
                                 "and train the head on the cache")


@dataclass
class Optim(c.OptimConfig):
    """The book's SGD, rescaled: it sums the loss over the batch, cvtool averages it."""

    lr: float = c.opt(1e-4 * 32, "learning rate at reference_batch for the batch-MEAN loss: the book's 1e-4 on "
                      "a summed loss x 32 (linear scaling gives its full-set 0.0128 at batch 128)", gt=0)
    reference_batch: int = c.opt(32, "the batch optim.lr is meant for: the book's 32", ge=1)
    momentum: float = c.opt(0.9, "SGD momentum", ge=0, lt=1)
    weight_decay: float = c.opt(1e-4 / 32, "L2 weight decay for the mean loss: the book's 1e-4 / batch_size "
                                "(3.125e-6 at 32, 7.8125e-7 at 128)", ge=0)


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    finetune: Finetune = field(default_factory=Finetune)
    loss: classify.Loss = field(default_factory=classify.Loss)
    optim: Optim = field(default_factory=Optim)
    sched: c.SchedConfig = field(default_factory=lambda: c.SchedConfig(name="step", step_size=2, gamma=0.9))
    train: c.TrainConfig = field(default_factory=lambda: c.TrainConfig(epochs=10))
    log: c.LogConfig = field(default_factory=c.LogConfig)


CODE = "cvtool.tasks.dog"
SPEC = register(TaskSpec(
    command="train-dog",
    summary="Classify 120 dog breeds on pretrained ResNet-34 features.",
    config=Config, build=f"{CODE}:build", build_model=f"{CODE}:build_model", predict=f"{CODE}:predict",
    predict_options=("kaggle_test",),
    synth={"dogs": "cvtool.data.kaggle_synth:synthesize_dogs"},
    # `cvtool eval`: the checkpoint holds every weight, and features cached from a
    # freshly built backbone would not be the trained model's.
    eval_settings={"model.weights": None, "finetune.cache_features": False},
    family="classify",
))
