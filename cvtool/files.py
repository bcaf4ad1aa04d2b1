"""Files that appear whole or not at all.

Everything a reader may pick up while cvtool runs (checkpoints, run-dir files, pictures,
submissions) is written to a temporary file in the same folder, synced, renamed over the
target and the folder synced: a kill or a full disk at any moment leaves either the old
complete file or the new one, never half of one, and no temporary file behind.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

Writer = Callable[[IO[Any]], object]


def temp_path(path: Path) -> Path:
    """A hidden sibling of ``path``, so the rename stays on one filesystem."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """A handle on a temporary file that replaces ``path`` when the block ends without error.

    On any exception (the block's or the commit's own) the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    fh = open(tmp, mode, **open_args)
    try:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, path)
    except BaseException:
        fh.close()
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str | Writer, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically: bytes, text, or a writer called with a binary handle.

    A writer is anything that fills a file object: ``lambda fh: torch.save(obj, fh)``,
    ``lambda fh: image.save(fh, format="PNG")``, ``lambda fh: fig.savefig(fh, format="png")``.
    """
    path = Path(path)
    if isinstance(data, str):
        with atomic_open(path, "w", encoding=encoding, newline="") as fh:
            fh.write(data)
    else:
        with atomic_open(path, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                data(fh)
    return path


def json_text(data: Any, indent: int | None = None) -> str:
    """The one way cvtool writes JSON, to files and streams: strict JSON, which Python's json does
    not write by default. A non-finite number (a diverged loss) becomes ``null``, since ``NaN``
    and ``Infinity`` are not JSON and strict parsers (JavaScript's JSON.parse, jq) refuse them."""
    return json.dumps(finite(data), indent=indent, default=str, allow_nan=False)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy or torch scalars
        return finite(value.item())
    return value
