"""A decoded-image cache: uint8 tensors keyed on the folder listing they came from.

The key digests every image's name, size and mtime, so a changed folder makes a new key
and the stale cache is rebuilt instead of silently training on old pixels. A cache file
is read with ``torch.load(weights_only=True)`` and written atomically; a damaged one is
rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

from cvtool.errors import InputError
from cvtool.files import atomic_write

CACHE_VERSION = 1


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


def select_ids(cached_ids: list[str], images: torch.Tensor, ids: list[str]) -> torch.Tensor:
    position = {i: n for n, i in enumerate(cached_ids)}
    return images[torch.tensor([position[i] for i in ids], dtype=torch.int64)]


def load_cache(path: Path, ids: list[str]) -> torch.Tensor | None:
    """The images of ``ids`` from a cache file, or None when it cannot serve them."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return select_ids(blob["ids"], blob["images"], ids)
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, whatever the damage
        return None


def find(dirs: list[Path], name: str, ids: list[str]) -> tuple[torch.Tensor, Path] | None:
    """The first cache named ``name`` in ``dirs`` that holds ``ids``, with its path."""
    for folder in dirs:
        path = folder / name
        if path.is_file():
            images = load_cache(path, ids)
            if images is not None:
                return images, path
    return None


def store(dirs: list[Path], name: str, stale: str, ids: list[str], images: torch.Tensor, root: Path) -> Path:
    """Write the cache into the first writable folder, removing the files matching ``stale`` there."""
    target = next((d for d in dirs if writable(d)), None)
    if target is None:
        raise InputError(f"no writable cache folder for {root}: tried {', '.join(map(str, dirs))}; "
                         "set data.cache_dir")
    for old in target.glob(stale):
        old.unlink(missing_ok=True)
    return atomic_write(target / name, lambda fh: torch.save({"ids": ids, "images": images}, fh))
