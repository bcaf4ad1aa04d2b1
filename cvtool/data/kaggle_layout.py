"""What each Kaggle competition folder of the book holds (no torch: the synthetic writers use it too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Layout:
    """What one competition's folder holds."""

    name: str
    labels_csv: str
    label_column: str
    ext: str
    sample_csv: str
    archive: str
    url: str
    synth_kind: str
    classes: tuple[str, ...] | None = None  # fixed by the competition, else read from the folder

    def describe(self, root: Path) -> str:
        return (f"{root}/train/<id>{self.ext}, {root}/{self.labels_csv} (id,{self.label_column}), "
                f"{root}/test/<id>{self.ext} and {root}/{self.sample_csv}")


CIFAR = Layout("cifar10", "trainLabels.csv", "label", ".png", "sampleSubmission.csv",
               "cifar10_tiny", "https://www.kaggle.com/c/cifar-10/data", "cifar", CIFAR10_CLASSES)
DOGS = Layout("dogs", "labels.csv", "breed", ".jpg", "sample_submission.csv",
              "dog_tiny", "https://www.kaggle.com/c/dog-breed-identification/data", "dogs")
