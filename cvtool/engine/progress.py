"""What a person (or a CI log) sees while a run trains.

On a terminal: a rich progress bar and a small table per epoch (stylize: a bar per scale).
When the stream is not a TTY or ``CI`` is set: one plain line per epoch, no ANSI codes, so
logs stay greppable.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


def is_plain(stream: TextIO) -> bool:
    return bool(os.environ.get("CI")) or not stream.isatty()


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Reporter:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.plain = is_plain(self.stream)
        self.quiet = quiet
        self.console = Console(file=self.stream, highlight=False, no_color=self.plain)
        self.progress: Progress | None = None
        self.task_id = None

    def info(self, message: str) -> None:
        if self.quiet:
            return
        if self.plain:
            print(message, file=self.stream, flush=True)
        else:
            self.console.print(message)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        self.start_bar(f"epoch {epoch}/{epochs}", steps, done)

    def start_bar(self, label: str, steps: int, done: int = 0, bar_width: int = 40) -> None:
        """A transient bar of ``steps`` named ``label``; nothing when quiet or plain."""
        if self.quiet or self.plain:
            return
        self.progress = Progress(TextColumn(label), BarColumn(bar_width=bar_width), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.progress.start()
        self.task_id = self.progress.add_task(label, total=steps, completed=done, status="")

    def step(self, status: str = "") -> None:
        if self.progress is not None:
            self.progress.update(self.task_id, advance=1, status=status)

    def stop_bar(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def end_epoch(self, epoch: int, epochs: int, row: dict[str, Any]) -> None:
        self.stop_bar()
        if self.quiet:
            return
        shown = {k: v for k, v in row.items() if k != "epoch" and v is not None}
        if self.plain:
            cells = " ".join(f"{k}={fmt(v)}" for k, v in shown.items())
            print(f"epoch {epoch}/{epochs} {cells}", file=self.stream, flush=True)
            return
        table = Table(title=f"epoch {epoch}/{epochs}", show_header=True, title_justify="left")
        for key in shown:
            table.add_column(key, justify="right")
        table.add_row(*(fmt(v) for v in shown.values()))
        self.console.print(table)
