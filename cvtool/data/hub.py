"""Known dataset archives: download with progress, verify, extract safely.

Unlike a notebook helper, every download is checked against its SHA-1 (not only a
cached one), members that would land outside the target folder are refused, and any
failure leaves neither a partial archive, a half-extracted folder nor a parent folder it made behind.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.error import URLError
from urllib.request import urlopen

from cvtool.errors import InputError, MissingResource

BASE = "http://d2l-data.s3-accelerate.amazonaws.com/"


@dataclass(frozen=True)
class Archive:
    name: str
    url: str
    sha1: str
    folder: str = ""  # the archive's top-level folder: `data fetch`'s default target, as in the configs


ARCHIVES = {a.name: a for a in (
    Archive("hotdog", BASE + "hotdog.zip", "fba480ffa8aa7e0febbb511d181409f899b9baa5", "hotdog"),
    Archive("banana-detection", BASE + "banana-detection.zip", "5de26c8fce5ccdea9f91267273464dc968d20d72",
            "banana-detection"),
    Archive("voc2012", BASE + "VOCtrainval_11-May-2012.tar", "4e443f8a2eca6b1dac8a6c57641b67dd40621a49",
            "VOCdevkit"),
    Archive("cifar10_tiny", BASE + "kaggle_cifar10_tiny.zip", "2068874e4b9a9f0fb07ebe0ad2b29754449ccacd",
            "kaggle_cifar10_tiny"),
    Archive("dog_tiny", BASE + "kaggle_dog_tiny.zip", "0cb91d09b814ecdc07b50f31f8dcad3e81d6a86d",
            "kaggle_dog_tiny"),
)}

Progress = Callable[[int, int | None], None]


def archive(name: str) -> Archive:
    if name not in ARCHIVES:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(ARCHIVES)}")
    return ARCHIVES[name]


def ensure(root: Path, name: str, download: bool, layout: str) -> Path:
    """``root`` if it exists; else fetch archive ``name`` into it, or explain what is missing."""
    root = Path(root)
    if root.exists():
        return root
    fix = f"run `cvtool data fetch {name} --root {root}`"
    elsewhere = f"{fix} where the archive can be reached, or copy the data there"
    if not download:
        raise MissingResource(f"dataset folder {root} does not exist (expected {layout}); "
                              f"{fix} or set data.download: true")
    if os.environ.get("CVTOOL_OFFLINE"):
        raise MissingResource(f"dataset folder {root} does not exist (expected {layout}) and CVTOOL_OFFLINE is set; "
                              f"{elsewhere}")
    try:
        fetch(archive(name), root)
    except MissingResource as exc:
        raise MissingResource(f"{exc}; dataset folder {root} (expected {layout}): {elsewhere}") from None
    return root


def fetch(arc: Archive, target: Path, url: str | None = None, progress: Progress | None = None) -> Path:
    """Download ``arc`` and place its single top-level folder at ``target``."""
    target = Path(target)
    if target.exists():
        raise InputError(f"{target} already exists; remove it or choose another --root")
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]  # deepest first
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
            tmp_dir = Path(tmp)
            file = tmp_dir / PurePosixPath(arc.url).name
            download(url or arc.url, file, arc.sha1, progress)
            out = tmp_dir / "extracted"
            extract(file, out)
            entries = list(out.iterdir())
            top = entries[0] if len(entries) == 1 and entries[0].is_dir() else out
            top.rename(target)
    except BaseException:
        remove_empty(created)
        raise
    return target


def remove_empty(folders: list[Path]) -> None:
    """Undo fetch's mkdir, deepest first, stopping at a folder that something else has written to."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def download(url: str, dest: Path, sha1: str, progress: Progress | None = None) -> None:
    digest = hashlib.sha1()
    try:
        with urlopen(url, timeout=60) as response, open(dest, "wb") as fh:
            size = response.headers.get("Content-Length")
            total = int(size) if size and size.isdigit() else None
            done = 0
            while chunk := response.read(1 << 20):
                fh.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise MissingResource(f"could not download {url}: {reason}") from None
    if digest.hexdigest() != sha1:
        raise MissingResource(f"download of {url} is corrupt: SHA-1 {digest.hexdigest()} != expected {sha1}")


def extract(file: Path, out: Path) -> None:
    out.mkdir()
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as zf:
            for member in zf.namelist():
                check_member(member, file)
            zf.extractall(out)
    elif tarfile.is_tarfile(file):
        with tarfile.open(file) as tf:
            for member in tf.getmembers():
                check_member(member.name, file)
            tf.extractall(out, filter="data")
    else:
        raise MissingResource(f"{file.name} is neither a zip nor a tar archive")


def check_member(name: str, file: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise MissingResource(f"archive {file.name} holds an unsafe path {name!r}; refusing to extract it")
