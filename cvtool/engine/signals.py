"""SIGINT/SIGTERM handling and the test seam that holds a process at a named moment.

No torch here: ``cli.main`` guards every command with a StopFlag, ``--help`` included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator


class Signalled(KeyboardInterrupt):
    """What an ``immediate`` StopFlag raises: a KeyboardInterrupt that names its signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopFlag:
    """SIGINT/SIGTERM. The first signal either stops at once (``immediate``: start-up, where
    nothing needs saving, so it raises Signalled) or asks the loop to stop at its next step;
    every later signal is ignored, so saving and shutting down are never cut short. Nested
    inside another StopFlag (the CLI's), it hands a received signal back to it on exit."""

    def __init__(self, immediate: bool = False) -> None:
        self.immediate = immediate
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.handle)
                outer = getattr(self.previous[sig], "__self__", None)
                if isinstance(outer, StopFlag) and outer.signum is not None:
                    self.signum = outer.signum
        return self

    def handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        if self.immediate:
            raise Signalled(signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            outer = getattr(handler, "__self__", None)
            if isinstance(outer, StopFlag) and outer.signum is None:
                outer.signum = self.signum
            signal.signal(sig, handler)

    def __bool__(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A block that must not be cut in half: a signal waits for its end, then stops as usual."""
        immediate, self.immediate = self.immediate, False
        try:
            yield
        finally:
            self.immediate = immediate
        if immediate and self.signum is not None:
            raise Signalled(self.signum)


def pause_point(name: str) -> None:
    """Test seam for signal tests: with ``name`` in CVTOOL_PAUSE_AT (comma-separated), create
    CVTOOL_PAUSE_DIR/<name> once and wait until the test removes it, so a test can signal
    the process at a known moment. Without both variables it does nothing."""
    folder, names = os.environ.get("CVTOOL_PAUSE_DIR"), os.environ.get("CVTOOL_PAUSE_AT", "").split(",")
    if not folder or name not in names:
        return
    marker = Path(folder) / name
    if marker.with_suffix(".done").exists():
        return
    marker.with_suffix(".done").touch()
    marker.touch()
    deadline = time.monotonic() + 60
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
