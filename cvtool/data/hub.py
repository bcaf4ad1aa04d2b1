"""Known dataset archives: download with progress, verify, extract safely.

Unlike a notebook helper, every download is checked against its SHA-1 (not only a
cached one), only regular files and folders that stay inside the target are extracted, and any
failure leaves neither a partial archive, a half-extracted folder nor a parent folder it made behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any, Callable
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
    synth: str = ""  # the `data synth` kind that writes a synthetic set in the same layout


ARCHIVES = {a.name: a for a in (
    Archive("hotdog", BASE + "hotdog.zip", "fba480ffa8aa7e0febbb511d181409f899b9baa5", "hotdog", "hotdog"),
    Archive("banana-detection", BASE + "banana-detection.zip", "5de26c8fce5ccdea9f91267273464dc968d20d72",
            "banana-detection", "bananas"),
    Archive("voc2012", BASE + "VOCtrainval_11-May-2012.tar", "4e443f8a2eca6b1dac8a6c57641b67dd40621a49",
            "VOCdevkit", "voc"),
    Archive("cifar10_tiny", BASE + "kaggle_cifar10_tiny.zip", "2068874e4b9a9f0fb07ebe0ad2b29754449ccacd",
            "kaggle_cifar10_tiny", "cifar"),
    Archive("dog_tiny", BASE + "kaggle_dog_tiny.zip", "0cb91d09b814ecdc07b50f31f8dcad3e81d6a86d",
            "kaggle_dog_tiny", "dogs"),
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
    arc = archive(name)
    fix = f"run `cvtool data fetch {name} --root {root}`"
    offline = f"; to try it offline: `cvtool data synth {arc.synth} --out {root}`" if arc.synth else ""
    elsewhere = f"{fix} where the archive can be reached, or copy the data there{offline}"
    if not download:
        raise MissingResource(f"dataset folder {root} does not exist (expected {layout}); "
                              f"{fix} or set data.download: true{offline}")
    if os.environ.get("CVTOOL_OFFLINE"):
        raise MissingResource(f"dataset folder {root} does not exist (expected {layout}) and CVTOOL_OFFLINE is set; "
                              f"{elsewhere}")
    try:
        fetch(arc, root)
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
    """Unpack ``file`` into a new folder ``out``: regular files and folders only.

    Datasets need no links, devices or fifos: those members are refused by type, and names
    that would leave ``out`` by name, before anything is written. The check is cvtool's own,
    the same on every Python, rather than tarfile's data filter, which link chains got around
    before 3.11.13/3.12.11/3.13.4 (CVE-2025-4517). Members are then written one by one.
    """
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as zf:
            write(checked([(i.filename, zip_kind(i), i) for i in zf.infolist()], file), out, zf.open)
    elif tarfile.is_tarfile(file):
        with tarfile.open(file) as tf:
            write(checked([(m.name, tar_kind(m), m) for m in tf.getmembers()], file), out, tf.extractfile)
    else:
        raise MissingResource(f"{file.name} is neither a zip nor a tar archive")


OTHER_KINDS = {stat.S_IFLNK: "symlink", stat.S_IFCHR: "device", stat.S_IFBLK: "device", stat.S_IFIFO: "fifo",
               stat.S_IFSOCK: "socket"}


def zip_kind(info: zipfile.ZipInfo) -> str:
    """'file', 'dir', or what else the entry's Unix mode says it is (a symlink, say)."""
    fmt = stat.S_IFMT(info.external_attr >> 16)
    if fmt == stat.S_IFDIR or (fmt in (0, stat.S_IFREG) and info.is_dir()):
        return "dir"
    return "file" if fmt in (0, stat.S_IFREG) else OTHER_KINDS.get(fmt, "special file")


def tar_kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    return "hard link" if member.islnk() else "device or fifo"


def refuse(file: Path, name: str, why: str) -> InputError:
    return InputError(f"archive {file.name}: member {name!r} {why}; refusing to extract the archive")


def member_path(name: str, kind: str, file: Path) -> PurePosixPath:
    """The member's path inside the target, after refusing its kind or a name that escapes."""
    if kind not in ("file", "dir"):
        raise refuse(file, name, f"is a {kind} (only regular files and folders are extracted)")
    posix = name.replace("\\", "/")
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if posix.startswith("/") or PureWindowsPath(name).drive or ".." in parts:
        raise refuse(file, name, "has an unsafe path outside the target folder")
    if not parts and kind == "file":
        raise refuse(file, name, "is a file without a name")
    return PurePosixPath(*parts)


def checked(members: list[tuple[str, str, Any]], file: Path) -> list[tuple[PurePosixPath, str, Any]]:
    """(path, kind, member) for every (name, kind, member), or the refusal of the first bad one.

    Besides kind and name, a path that is both a file and a folder (a file ``a`` and a
    member ``a/b``) is refused, so writing cannot fail halfway on the archive's account.
    """
    plan = [(member_path(name, kind, file), kind, member) for name, kind, member in members]
    folders = {parent for path, _, _ in plan for parent in path.parents}
    folders |= {path for path, kind, _ in plan if kind == "dir"}
    for (path, kind, _), (name, _, _) in zip(plan, members):
        if kind == "file" and path in folders:
            raise refuse(file, name, "is a file where other members need a folder")
    return plan


def write(plan: list[tuple[PurePosixPath, str, Any]], out: Path, opener: Callable[[Any], IO[bytes]]) -> None:
    """Create ``out`` and write the checked members; on any failure remove ``out`` again."""
    out.mkdir()
    try:
        for path, kind, member in plan:
            target = out / path
            if kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with opener(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
