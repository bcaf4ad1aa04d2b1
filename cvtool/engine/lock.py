"""One process per run directory: an OS lock on ``DIR/.cvtool.lock``.

``flock`` belongs to the open file, so the kernel releases it when the process ends in any way
(``kill -9`` included): a lock is never stale. The file itself stays (deleting it would let a
later process lock a new file while an old one still holds the first); it holds the holder's pid,
start time and command for the message another process gets. Only the main process of a
torchrun job takes it (only rank 0 writes). Torch-free, so ``cvtool runs`` can read it cheaply.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from cvtool.errors import InputError
from cvtool.files import json_text

NAME = ".cvtool.lock"
TRIES = 5  # a reader (cvtool runs) holds its shared lock for microseconds


class InUse(InputError):
    """The run directory is held by another cvtool process (exit 2)."""


class RunLock:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.fd: int | None = None
        self.created = False

    def acquire(self, argv: list[str] | None = None) -> RunLock:
        """Take the lock (creating the folder) or raise InUse naming its holder; writes nothing else."""
        path = self.run_dir / NAME
        self.created = not self.run_dir.exists()
        blocked = 0
        while True:
            fd = self.open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                blocked += 1
                if blocked == TRIES:
                    raise InUse(f"{self.run_dir} is in use by cvtool ({holder(self.run_dir)}); "
                                "wait for it or choose another --out") from None
                time.sleep(0.02)
                continue
            if same_file(fd, path):  # else its holder removed it while releasing: lock the new one
                break
            os.close(fd)
        record = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": argv or []}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json_text(record) + "\n").encode(), 0)
        self.fd = fd
        return self

    def open(self, path: Path) -> int:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"--out {self.run_dir} cannot be written: {exc.strerror or exc}") from None

    def release(self) -> None:
        """Unlock; a folder this lock created and nothing else wrote to is removed (a start-up
        that failed leaves nothing behind)."""
        if self.fd is None:
            return
        try:
            if self.created and [p.name for p in self.run_dir.iterdir()] == [NAME]:
                (self.run_dir / NAME).unlink()
                self.run_dir.rmdir()
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def holder(run_dir: Path) -> str:
    """``pid N, started at T`` from the lock file, as far as it can be read."""
    try:
        record = json.loads((Path(run_dir) / NAME).read_text(encoding="utf-8"))
        return f"pid {record['pid']}, started at {record['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting"


def in_use(run_dir: Path) -> bool | None:
    """Whether a process holds ``run_dir``'s lock; None when it has no lock file (or predates them)."""
    try:
        fd = os.open(Path(run_dir) / NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
