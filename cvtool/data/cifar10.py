"""CIFAR-10 on disk: the Kaggle folder's 32x32 PNGs and torchvision's python batches.

The Kaggle training PNGs (50,000 in the full set) are decoded once into a uint8 tensor
kept in cvtool.data.decoded_cache: later epochs and runs read no PNG. The test folder
(300,000 PNGs) is read in chunks, in bounded memory.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_png

from cvtool.data import decoded_cache, kaggle
from cvtool.data.images import read_or_skip
from cvtool.data.kaggle import CIFAR, Labeled, Progress
from cvtool.data.stats import CIFAR_MEAN, CIFAR_STD  # noqa: F401 - re-exported
from cvtool.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        has_alpha = len(data) > 25 and data[25] in (4, 6)  # IHDR colour type: grey or RGB with alpha
        mode = ImageReadMode.RGB_ALPHA if has_alpha else ImageReadMode.RGB
        image = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
    except RuntimeError as exc:
        raise InputError(f"{path} is not a readable PNG: {str(exc).splitlines()[0]}") from None
    if image.dtype == torch.uint16:
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    return over_white(image) if has_alpha else image


def over_white(rgba: torch.Tensor) -> torch.Tensor:
    """(4, H, W) uint8 to RGB as a viewer shows it, transparency over white (as data.images.load_rgb)."""
    rgb, alpha = rgba[:3].to(torch.int32), rgba[3:].to(torch.int32)
    if bool((alpha == 255).all()):
        return rgba[:3].contiguous()
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).to(torch.uint8)


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
    name = f"cifar-train-{decoded_cache.folder_key(train, CIFAR.ext)}.pt"
    dirs = decoded_cache.cache_dirs(labeled.root, cache_dir)
    found = decoded_cache.find(dirs, name, labeled.ids)
    if found is not None:
        return labeled, found[0], found[1]
    files = kaggle.sort_ids([f.name[: -len(CIFAR.ext)] for f in os.scandir(train) if f.name.endswith(CIFAR.ext)])
    all_images, kept = decode_all([train / (i + CIFAR.ext) for i in files], progress, skip)
    if len(kept) < len(files):
        labeled = labeled.only(set(kept))
        ids = [f.name[: -len(CIFAR.ext)] for f in kept]
        return labeled, decoded_cache.select_ids(ids, all_images, labeled.ids), None
    path = decoded_cache.store(dirs, name, "cifar-train-*.pt", files, all_images, labeled.root)
    return labeled, decoded_cache.select_ids(files, all_images, labeled.ids), path


def cifar_test_chunks(test_dir: Path, chunk: int = 4096,
                      progress: Progress | None = None) -> Iterator[tuple[list[str], torch.Tensor]]:
    """(ids, images) of the test folder, ``chunk`` at a time: 300,000 PNGs in bounded memory."""
    ids = kaggle.test_ids(test_dir, CIFAR)
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
