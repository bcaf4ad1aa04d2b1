"""What a person (or a CI log) sees while a run trains.

On a terminal: a rich progress bar and a small table per epoch (stylize: a bar per scale).
When the stream is not a TTY or ``CI`` is set: one plain line per epoch, no ANSI codes, so
logs stay greppable. Data code reports its own progress through a callback; the bar
it feeds is drawn here (``terminal_progress``).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

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
        self.console.print(epoch_table(f"epoch {epoch}/{epochs}", shown))


def epoch_table(title: str, row: dict[str, Any]) -> Table:
    """One row per split (train_loss, val_loss -> loss), the rest as a caption: fits 80 columns."""
    splits: dict[str, dict[str, Any]] = {"train": {}, "val": {}}
    rest = {}
    for key, value in row.items():
        split, _, name = key.partition("_")
        if split in splits and name:
            splits[split][name] = value
        else:
            rest[key] = value
    names = list(dict.fromkeys([*splits["train"], *splits["val"]]))
    table = Table(title=title, title_justify="left", caption_justify="left",
                  caption="  ".join(f"{key} {fmt(value)}" for key, value in rest.items()) or None)
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    for split, values in splits.items():
        if values:
            table.add_row(split, *(fmt(values[n]) if n in values else "" for n in names))
    return table


@contextmanager
def terminal_progress(description: str, quiet: bool = False) -> Iterator[Callable[[int, int | None], None]]:
    """A ``(done, total)`` callback to hand to data code, which reports but never draws:
    a transient bar on an interactive stderr; silent in CI logs, pipes and when ``quiet``
    (ranks other than 0)."""
    disable = quiet or is_plain(sys.stderr)
    with Progress(console=Console(file=sys.stderr), transient=True, disable=disable) as bar:
        job = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(job, completed=done, total=total)
