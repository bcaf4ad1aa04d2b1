"""The two Kaggle competition layouts of the book (CIFAR-10, dog breeds), read in place.

The book copies every file into one folder per class to make a validation split; here
the split is a seeded, stratified choice of row indices, so the data folder is never
touched. This module holds what both competitions share: the layouts, the label CSVs,
the split and submission.csv. CIFAR-10's decoding and cache live in cvtool.data.cifar10,
the synthetic folders in cvtool.data.kaggle_synth.
"""

from __future__ import annotations

import csv
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from cvtool.data.images import load_rgb, read_or_skip
from cvtool.data.kaggle_layout import CIFAR, CIFAR10_CLASSES, DOGS, Layout  # noqa: F401 - re-exported
from cvtool.errors import InputError, MissingResource
from cvtool.files import atomic_open

Progress = Callable[[int, int], None]  # (done, total): how data code reports on long reads


@dataclass
class Labeled:
    """The labelled training rows of a Kaggle folder, in CSV order."""

    root: Path
    ids: list[str]
    labels: torch.Tensor
    classes: list[str]
    files: list[Path]

    def only(self, files: set[Path]) -> "Labeled":
        """The rows whose image is in ``files`` (the readable ones), classes unchanged."""
        rows = [k for k, f in enumerate(self.files) if f in files]
        if not rows:
            raise InputError(f"no labelled image in {self.root / 'train'} is readable")
        return Labeled(self.root, [self.ids[k] for k in rows], self.labels[rows], self.classes,
                       [self.files[k] for k in rows])

    def readable(self) -> "Labeled":
        """The rows whose image decodes; each unreadable one is logged (data.on_bad_image: skip)."""
        return self.only({f for f in self.files if read_or_skip(f, load_rgb, skip=True) is not None})


# --------------------------------------------------------------------------- locating


def locate(root: str | Path, layout: Layout, download: bool, tiny: bool) -> Path:
    """The data folder, fetching the book's tiny set when ``tiny``; else say what to put where."""
    root = Path(root)
    if root.exists():
        return root
    if tiny:
        from cvtool.data import hub

        return hub.ensure(root, layout.archive, download, layout.describe(root))
    raise MissingResource(
        f"dataset folder {root} does not exist; the full Kaggle {layout.name} set needs a Kaggle account: "
        f"download it from {layout.url}, unpack it so that it holds {layout.describe(root)}, "
        f"use the book's tiny sample with data.tiny: true, "
        f"or write synthetic data with `cvtool data synth {layout.synth_kind} --out {root}`")


# --------------------------------------------------------------------------- CSV reading


def sort_ids(ids: Sequence[str]) -> list[str]:
    """Numeric order when every id is a number (CIFAR's 1..300000), else text order."""
    if all(i.isdigit() for i in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def read_rows(path: Path, header: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of a CSV whose first row must be ``header``; blank lines skipped."""
    if not path.is_file():
        raise MissingResource(f"{path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            first = next(reader, None)
            if first is None or [c.strip().lower() for c in first] != list(header):
                raise InputError(f"{path} line 1: header must be {','.join(header)}, got {','.join(first or [])!r}")
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue
                if len(fields) != len(header):
                    raise InputError(f"{path} line {reader.line_num}: expected {len(header)} fields "
                                     f"({','.join(header)}), got {len(fields)}")
                yield reader.line_num, [f.strip() for f in fields]
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"{path}: {exc}") from None


def sample_columns(root: Path, layout: Layout) -> list[str] | None:
    """The class columns of the sample submission (dogs), or None when it is absent."""
    path = root / layout.sample_csv
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"{path}: {exc}") from None
    if not header or header[0].strip().lower() != "id":
        raise InputError(f"{path} line 1: header must start with id")
    return [c.strip() for c in header[1:]]


def known_classes(root: Path, layout: Layout) -> list[str] | None:
    if layout.classes is not None:
        return list(layout.classes)
    columns = sample_columns(root, layout)
    if columns is None:
        return None
    if len(set(columns)) != len(columns):
        raise InputError(f"{root / layout.sample_csv} line 1: a breed column appears twice")
    return sorted(columns)


def read_labels(root: str | Path, layout: Layout, sample: bool = False) -> Labeled:
    """The CSV's rows, each checked: an id with an image, seen once, with a known class.

    ``sample``: the folder is one of the book's tiny samples, which may keep the whole
    competition CSV beside a subset of its images, so rows without an image are left out.
    """
    root = Path(root)
    path = root / layout.labels_csv
    train = root / "train"
    if not train.is_dir():
        raise MissingResource(f"{train} does not exist (expected {layout.describe(root)}); "
                              f"`cvtool data synth {layout.synth_kind} --out DIR` writes a synthetic set to try")
    present = {e.name for e in os.scandir(train)}
    allowed = known_classes(root, layout)
    allowed_set = set(allowed) if allowed is not None else None
    ids: list[str] = []
    names: list[str] = []
    seen: dict[str, int] = {}
    for line, (ident, label) in read_rows(path, ("id", layout.label_column)):
        if not ident:
            raise InputError(f"{path} line {line}: missing id")
        if ident in seen:
            raise InputError(f"{path} line {line}: duplicate id {ident} (first on line {seen[ident]})")
        if ident + layout.ext not in present:
            if sample:
                continue
            raise InputError(f"{path} line {line}: unknown id {ident}: no image train/{ident}{layout.ext}")
        if not label:
            raise InputError(f"{path} line {line}: id {ident} has no {layout.label_column}")
        if allowed_set is not None and label not in allowed_set:
            raise InputError(f"{path} line {line}: {layout.label_column} {label!r} is not a known class "
                             f"({len(allowed_set)} classes)")
        seen[ident] = line
        ids.append(ident)
        names.append(label)
    if not ids:
        raise InputError(f"{path} holds no rows")
    classes = allowed if allowed is not None else sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[n] for n in names], dtype=torch.int64)
    return Labeled(root, ids, labels, classes, [train / (i + layout.ext) for i in ids])


def test_ids(test_dir: Path, layout: Layout) -> list[str]:
    """The ids of the test folder's images, in submission order."""
    if not test_dir.is_dir():
        raise MissingResource(f"test folder {test_dir} does not exist")
    ids = [e.name[: -len(layout.ext)] for e in os.scandir(test_dir)
           if e.name.endswith(layout.ext) and not e.name.startswith(".")]
    if not ids:
        raise InputError(f"test folder {test_dir} holds no {layout.ext} images")
    return sort_ids(ids)


def find_test_dir(folder: str | Path) -> Path:
    """A competition folder (holding test/) or the test folder itself."""
    folder = Path(folder)
    return folder / "test" if (folder / "test").is_dir() else folder


# --------------------------------------------------------------------------- split


def stratified_split(labels: torch.Tensor, valid_ratio: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, valid) indices: ``floor(n_c * valid_ratio)`` of each class (at least one, never all).

    The choice depends only on (labels, ratio, seed), so every run and rank agree.
    """
    n = labels.numel()
    if valid_ratio <= 0 or n == 0:
        return torch.arange(n), torch.zeros(0, dtype=torch.int64)
    counts = torch.bincount(labels)
    n_val = torch.clamp(torch.floor(counts.double() * valid_ratio).long(), min=1)
    n_val = torch.minimum(n_val, counts - 1).clamp(min=0)
    g = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(n, generator=g)
    grouped = shuffled[torch.sort(labels[shuffled], stable=True).indices]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[labels[grouped]]
    is_val = rank < n_val[labels[grouped]]
    return torch.sort(grouped[~is_val]).values, torch.sort(grouped[is_val]).values


def split_indices(labels: torch.Tensor, split: str, valid_ratio: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``train``: stratified train/valid; ``train_valid``: everything trains, nothing validates."""
    if split == "train_valid":
        return torch.arange(labels.numel()), torch.zeros(0, dtype=torch.int64)
    return stratified_split(labels, valid_ratio, seed)


# --------------------------------------------------------------------------- submissions


class SubmissionWriter:
    """submission.csv written row block by row block, appearing whole when the block ends."""

    def __init__(self, path: Path, header: Sequence[str]):
        self.path = Path(path)
        self.header = list(header)
        self.rows = 0
        self._stack = ExitStack()

    def __enter__(self) -> "SubmissionWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self._stack.enter_context(atomic_open(self.path, "w", newline="", encoding="utf-8"))
        self.writer = csv.writer(fh, lineterminator="\n")
        self.writer.writerow(self.header)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def labels(self, ids: Sequence[str], names: Sequence[str]) -> None:
        self.writer.writerows(zip(ids, names))
        self.rows += len(ids)

    def probabilities(self, ids: Sequence[str], probs: torch.Tensor) -> None:
        """Rows normalised in float64, so that each sums to 1 after formatting too."""
        p = probs.double()
        p = p / p.sum(dim=1, keepdim=True)
        text = np.char.mod("%.8g", p.cpu().numpy())
        self.writer.writerows([ident, *row] for ident, row in zip(ids, text.tolist()))
        self.rows += len(ids)


def submission_columns(classes: Sequence[str], sample: Sequence[str] | None) -> list[int]:
    """Model class index for each column of the sample submission (its order wins)."""
    if sample is None:
        return list(range(len(classes)))
    if sorted(sample) != sorted(classes):
        missing = sorted(set(classes) - set(sample)) or sorted(set(sample) - set(classes))
        raise InputError(f"the sample submission's columns differ from the model's {len(classes)} classes "
                         f"(e.g. {missing[0]!r})")
    index = {c: i for i, c in enumerate(classes)}
    return [index[c] for c in sample]
