"""The two Kaggle competition layouts of the book (CIFAR-10, dog breeds), read in place.

The book copies every file into one folder per class to make a validation split; here
the split is a seeded, stratified choice of row indices, so the data folder is never
touched. CIFAR-10's 50,000 PNGs are decoded once into a uint8 tensor cache keyed on
the folder's listing (names, sizes, mtimes): later epochs and runs read no PNG, and a
changed folder rebuilds the cache instead of silently training on stale pixels.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import pickle
import struct
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError
from rich.console import Console
from rich.progress import Progress as RichProgress
from torch.utils.data import Dataset, default_collate
from torchvision.io import ImageReadMode, decode_png

from cvtool.data.images import load_rgb, read_or_skip
from cvtool.data.textures import background
from cvtool.engine.progress import is_plain
from cvtool.errors import InputError, MissingResource

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CACHE_VERSION = 1

Progress = Callable[[int, int], None]


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

    def describe(self, root: Path) -> str:
        return (f"{root}/train/<id>{self.ext}, {root}/{self.labels_csv} (id,{self.label_column}), "
                f"{root}/test/<id>{self.ext} and {root}/{self.sample_csv}")


CIFAR = Layout("cifar10", "trainLabels.csv", "label", ".png", "sampleSubmission.csv",
               "cifar10_tiny", "https://www.kaggle.com/c/cifar-10/data")
DOGS = Layout("dogs", "labels.csv", "breed", ".jpg", "sample_submission.csv",
              "dog_tiny", "https://www.kaggle.com/c/dog-breed-identification/data")


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
        f"or write synthetic data with `cvtool data synth {'cifar' if layout is CIFAR else 'dogs'} --out {root}`")


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
    if layout is CIFAR:
        return list(CIFAR10_CLASSES)
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
        raise MissingResource(f"{train} does not exist (expected {layout.describe(root)})")
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


# --------------------------------------------------------------------------- decoding


def decode_cifar_png(path: Path) -> torch.Tensor:
    """One 32x32 PNG as a (3, 32, 32) uint8 tensor; anything else is the user's file to fix.

    The size comes from the header before decoding, so a header claiming a huge image
    allocates nothing; 16-bit PNGs keep their high byte.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(f"{path} is not a PNG image")
    ihdr = data[12:24]
    if ihdr[:4] == b"IHDR" and len(ihdr) == 12:
        width, height = struct.unpack(">II", ihdr[4:])
        if (width, height) != (32, 32):
            raise InputError(f"{path} is {width}x{height} pixels; CIFAR-10 images are 32x32")
    try:
        image = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise InputError(f"{path} is not a readable PNG: {str(exc).splitlines()[0]}") from None
    if image.dtype == torch.uint16:
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    return image


def decode_all(files: Sequence[Path], progress: Progress | None = None,
               skip: bool = False) -> tuple[torch.Tensor, list[Path]]:
    """Decode into one preallocated (N, 3, 32, 32) tensor (sequential: 32x32 PNGs decode in ~50 us).

    Returns the images and the files they came from: all of them, or with ``skip`` the
    readable ones (each other one logged).
    """
    out = torch.empty((len(files), 3, 32, 32), dtype=torch.uint8)
    kept: list[Path] = []
    for i, path in enumerate(files):
        image = read_or_skip(path, decode_cifar_png, skip)
        if image is not None:
            out[len(kept)] = image
            kept.append(path)
        if progress is not None and (i + 1) % 1000 == 0:
            progress(i + 1, len(files))
    if progress is not None:
        progress(len(files), len(files))
    return (out if len(kept) == len(files) else out[:len(kept)].clone()), kept


def check_images(files: Sequence[Path]) -> None:
    """Open each file's header (cheap) so a bad file fails before training, not in a worker."""
    for path in files:
        try:
            with Image.open(path) as img:
                img.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise InputError(f"{path} is not a readable image: {exc}") from None


def folder_key(folder: Path, ext: str) -> str:
    """A digest of the folder's images (name, size, mtime): any change makes a new key."""
    digest = hashlib.sha1(f"v{CACHE_VERSION}".encode())
    rows = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.name.endswith(ext))
    for name, size, mtime in rows:
        digest.update(f"{name}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()[:20]


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cvtool"


def cache_dirs(root: Path, cache_dir: str | Path | None) -> list[Path]:
    """Where a cache may live: next to the data, then (read-only data) under the user cache."""
    if cache_dir is not None:
        return [Path(cache_dir)]
    tag = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return [root / ".cvtool-cache", user_cache_dir() / f"{root.name}-{tag}"]


def writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def cached_train_images(labeled: Labeled, cache_dir: str | Path | None = None,
                        progress: Progress | None = None) -> tuple[torch.Tensor, Path | None]:
    """The training images of ``labeled`` in its row order and the cache file holding them."""
    _, images, path = load_train_images(labeled, cache_dir, progress)
    return images, path


def load_train_images(labeled: Labeled, cache_dir: str | Path | None = None, progress: Progress | None = None,
                      skip: bool = False) -> tuple[Labeled, torch.Tensor, Path | None]:
    """``labeled`` and its training images in row order, decoded at most once per folder state.

    With ``skip`` the rows of unreadable images are left out (each logged); a folder
    holding one is never cached, so every run logs it again and a cache always holds
    every image of its folder.
    """
    train = labeled.root / "train"
    key = folder_key(train, CIFAR.ext)
    name = f"cifar-train-{key}.pt"
    dirs = cache_dirs(labeled.root, cache_dir)
    for folder in dirs:
        path = folder / name
        if path.is_file():
            images = load_cache(path, labeled.ids)
            if images is not None:
                return labeled, images, path
    files = sort_ids([f.name[: -len(CIFAR.ext)] for f in os.scandir(train) if f.name.endswith(CIFAR.ext)])
    all_images, kept = decode_all([train / (i + CIFAR.ext) for i in files], progress, skip)
    if len(kept) < len(files):
        labeled = labeled.only(set(kept))
        return labeled, select_ids([f.name[: -len(CIFAR.ext)] for f in kept], all_images, labeled.ids), None
    target = next((d for d in dirs if writable(d)), None)
    if target is None:
        raise InputError(f"no writable cache folder for {labeled.root}: tried {', '.join(map(str, dirs))}; "
                         "set data.cache_dir")
    path = target / name
    for stale in target.glob("cifar-train-*.pt"):
        stale.unlink(missing_ok=True)
    tmp = target / f".{name}.{os.getpid()}.tmp"
    torch.save({"ids": files, "images": all_images}, tmp)
    os.replace(tmp, path)
    return labeled, select_ids(files, all_images, labeled.ids), path


def load_cache(path: Path, ids: list[str]) -> torch.Tensor | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return select_ids(blob["ids"], blob["images"], ids)
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, whatever the damage
        return None


def select_ids(cached_ids: list[str], images: torch.Tensor, ids: list[str]) -> torch.Tensor:
    position = {i: n for n, i in enumerate(cached_ids)}
    return images[torch.tensor([position[i] for i in ids], dtype=torch.int64)]


def cifar_test_chunks(test_dir: Path, chunk: int = 4096,
                      progress: Progress | None = None) -> Iterator[tuple[list[str], torch.Tensor]]:
    """(ids, images) of the test folder, ``chunk`` at a time: 300,000 PNGs in bounded memory."""
    ids = test_ids(test_dir, CIFAR)
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        yield part, decode_all([test_dir / (i + CIFAR.ext) for i in part])[0]
        if progress is not None:
            progress(start + len(part), len(ids))


# --------------------------------------------------------------------------- torchvision's CIFAR folder


class ArrayUnpickler(pickle.Unpickler):
    """Reads the CIFAR python batches without running arbitrary pickled code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as fh:
            blob = ArrayUnpickler(fh, encoding="latin1").load()
        data = np.asarray(blob["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = torch.tensor(list(blob["labels"]), dtype=torch.int64)
    except Exception as exc:  # noqa: BLE001 - unpickling a foreign file fails in many ways
        raise InputError(f"{path} is not a CIFAR-10 python batch: {exc}") from None
    return torch.from_numpy(data.copy()), labels


def torchvision_folder(root: Path) -> Path | None:
    for folder in (root, root / "cifar-10-batches-py"):
        if (folder / "data_batch_1").is_file():
            return folder
    return None


def read_torchvision_cifar(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels) of a cifar-10-batches-py folder."""
    parts = [read_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    test_images, test_labels = read_batch(folder / "test_batch")
    return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), test_images, test_labels)


# --------------------------------------------------------------------------- submissions


class SubmissionWriter:
    """submission.csv written row block by row block, then renamed into place."""

    def __init__(self, path: Path, header: Sequence[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.fh = open(self.tmp, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.fh, lineterminator="\n")
        self.writer.writerow(header)
        self.rows = 0

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

    def close(self) -> Path:
        self.fh.close()
        os.replace(self.tmp, self.path)
        return self.path

    def __enter__(self) -> "SubmissionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.fh.close()
            self.tmp.unlink(missing_ok=True)


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


# --------------------------------------------------------------------------- synthetic data


def draw_shape(draw: ImageDraw.ImageDraw, kind: int, box: tuple[float, float, float, float],
               fill: tuple[int, int, int]) -> None:
    """One of ten shapes a small convnet tells apart at 32x32 under crops and flips."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    t = max(2.0, w / 5)
    if kind == 0:
        draw.ellipse(box, fill=fill)
    elif kind == 1:
        draw.rectangle(box, fill=fill)
    elif kind == 2:
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif kind == 3:
        draw.ellipse(box, outline=fill, width=int(t))
    elif kind == 4:
        draw.rectangle((cx - t / 2, y0, cx + t / 2, y1), fill=fill)
        draw.rectangle((x0, cy - t / 2, x1, cy + t / 2), fill=fill)
    elif kind == 5:
        for k in range(3):
            top = y0 + k * h / 3
            draw.rectangle((x0, top, x1, top + h / 6), fill=fill)
    elif kind == 6:
        for k in range(3):
            left = x0 + k * w / 3
            draw.rectangle((left, y0, left + w / 6, y1), fill=fill)
    elif kind == 7:
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    elif kind == 8:
        draw.rectangle(box, outline=fill, width=int(t))
    else:
        draw.line((x0, y0, x1, y1), fill=fill, width=int(t))
        draw.line((x0, y1, x1, y0), fill=fill, width=int(t))


def class_colour(rng: np.random.Generator, hue: float) -> tuple[int, int, int]:
    """A saturated colour near ``hue`` (0..1), jittered so colour alone is a weak cue."""
    h = (hue + rng.normal(0, 0.03)) % 1.0
    rgb = np.clip(np.abs(((h * 6 + np.array([0, 4, 2])) % 6) - 3) - 1, 0, 1)
    value = rng.uniform(0.7, 1.0)
    return tuple(int(c) for c in (rgb * value * 255).astype(np.uint8))


def synth_image(rng: np.random.Generator, cls: int, n_classes: int, w: int, h: int) -> Image.Image:
    img = background(rng, h, w)
    size = rng.uniform(0.45, 0.75) * min(w, h)
    cx = rng.uniform(size / 2, w - size / 2)
    cy = rng.uniform(size / 2, h - size / 2)
    box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
    hue = (cls // 10) / max(1, math.ceil(n_classes / 10)) + 0.37 * (cls % 10)
    draw_shape(ImageDraw.Draw(img), cls % 10, box, class_colour(rng, hue % 1.0))
    return img


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def synthesize_cifar(out: str | Path, *, n_train: int = 1000, n_test: int = 50, seed: int = 0) -> Path:
    """A Kaggle CIFAR-10 folder of synthetic 32x32 PNGs: one shape per class, balanced."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "test").mkdir(parents=True, exist_ok=True)
    labels = rng.permutation(np.arange(n_train) % len(CIFAR10_CLASSES))
    rows = []
    for i, cls in enumerate(labels, start=1):
        synth_image(rng, int(cls), len(CIFAR10_CLASSES), 32, 32).save(out / "train" / f"{i}.png")
        rows.append((i, CIFAR10_CLASSES[cls]))
    write_csv(out / CIFAR.labels_csv, ("id", "label"), rows)
    for i in range(1, n_test + 1):
        cls = int(rng.integers(len(CIFAR10_CLASSES)))
        synth_image(rng, cls, len(CIFAR10_CLASSES), 32, 32).save(out / "test" / f"{i}.png")
    write_csv(out / CIFAR.sample_csv, ("id", "label"), [(i, "cat") for i in range(1, n_test + 1)])
    return out


def synthesize_dogs(out: str | Path, *, n_train: int = 600, n_test: int = 30, classes: int = 120,
                    seed: int = 0) -> Path:
    """A Kaggle dog-breed folder of synthetic JPEGs of varied sizes, ``classes`` breeds."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    breeds = [f"breed_{k:03d}" for k in range(classes)]
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "test").mkdir(parents=True, exist_ok=True)

    def save(folder: str, cls: int) -> str:
        ident = rng.bytes(16).hex()
        w, h = (int(v) for v in rng.integers(96, 257, size=2))
        synth_image(rng, cls, classes, w, h).save(out / folder / f"{ident}.jpg", quality=90)
        return ident

    labels = rng.permutation(np.arange(n_train) % classes)
    write_csv(out / DOGS.labels_csv, ("id", "breed"), [(save("train", int(c)), breeds[c]) for c in labels])
    test = [save("test", int(rng.integers(classes))) for _ in range(n_test)]
    uniform = f"{1 / classes:.8g}"
    write_csv(out / DOGS.sample_csv, ("id", *breeds), [(i, *([uniform] * classes)) for i in test])
    return out


# --------------------------------------------------------------------------- datasets


class Batch(tuple):
    """A ready-made batch: collation passes it through and pinning skips device tensors."""

    def pin_memory(self) -> "Batch":
        return Batch(t.pin_memory() if t.device.type == "cpu" else t for t in self)


class TensorBatches(Dataset):
    """Rows of in-memory tensors (decoded images, cached features), fetched a batch at a time.

    ``__getitems__`` makes the DataLoader gather a whole batch with one indexing op
    instead of N ``__getitem__`` calls and a stack; with the tensors on the GPU the
    batch never leaves it.
    """

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        if len(inputs) != len(labels):
            raise ValueError("inputs and labels differ in length")
        self.inputs = inputs
        self.labels = labels.to(inputs.device)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.int64, device=self.inputs.device)
        return Batch((self.inputs[idx], self.labels[idx]))


def collate(batch: Any) -> Any:
    """The task's collate_fn: ready batches as they are, lists of samples stacked."""
    return batch if isinstance(batch, Batch) else default_collate(batch)


class ImageRows(Dataset):
    """Image files with one integer target each (a class, or a row number for test images)."""

    def __init__(self, files: Sequence[Path], targets: torch.Tensor, transform: Callable):
        self.files = list(files)
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(load_rgb(self.files[i])), self.targets[i]


@contextmanager
def terminal_progress(description: str) -> Iterator[Progress]:
    """A transient bar on an interactive stderr; silent in CI logs and pipes."""
    with RichProgress(console=Console(file=sys.stderr), transient=True, disable=is_plain(sys.stderr)) as bar:
        job = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(job, completed=done, total=total)
