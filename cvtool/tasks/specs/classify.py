"""Config pieces the classifiers (finetune-hotdog, train-cifar, train-dog) share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cvtool import config as c

NUM_CLASSES_HELP = "output classes; auto = the number of classes in the data (a number must agree with it)"
NumClasses = int | Literal["auto"]


@dataclass
class Loss:
    """The training objective."""

    label_smoothing: float = c.opt(0.0, "cross-entropy label smoothing (validation loss is plain "
                                   "cross-entropy)", ge=0, lt=1)
