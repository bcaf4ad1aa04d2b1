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

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text


def is_plain(stream: TextIO) -> bool:
    """Plain lines unless a person watches: a terminal, or a Jupyter notebook (rich draws its live
    bars there too)."""
    return bool(os.environ.get("CI")) or not (stream.isatty() or in_notebook())


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell; Colab's is one too)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and any(kind.__name__ == "ZMQInteractiveShell" for kind in type(shell).__mro__)


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
        """One step done; a ``status`` (the running loss) stays shown until the next one."""
        if self.progress is not None:
            self.progress.update(self.task_id, advance=1, **({"status": status} if status else {}))

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


FOOTER = {"lr": "lr {}", "epoch_seconds": "{} s", "images_per_second": "{} images/s"}


def epoch_table(title: str, row: dict[str, Any]) -> Group:
    """One row per split (train_loss, val_loss -> loss); per-class figures (``val_iou/cat``)
    and the rest as short wrapped lines below: fits 80 columns for any number of classes."""
    splits: dict[str, dict[str, Any]] = {"train": {}, "val": {}}
    per_class: dict[str, dict[str, Any]] = {}
    rest = {}
    for key, value in row.items():
        split, _, name = key.partition("_")
        if "/" in name:
            family, _, cls = name.partition("/")
            per_class.setdefault(f"{split} {family}", {})[cls] = value
        elif split in splits and name:
            splits[split][name] = value
        else:
            rest[key] = value
    names = list(dict.fromkeys([*splits["train"], *splits["val"]]))
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for split, values in splits.items():
        if values:
            table.add_row(split, *(fmt(values[n]) if n in values else "" for n in names))
    lines = [Text(f"{family}: " + "  ".join(f"{cls} {fmt(v)}" for cls, v in values.items()))
             for family, values in per_class.items()]
    footer = "  ".join(FOOTER.get(key, key + " {}").format(fmt(value)) for key, value in rest.items())
    return Group(table, *lines, *([Text(footer, style="dim")] if footer else []))


@contextmanager
def terminal_progress(description: str, quiet: bool = False) -> Iterator[Callable[[int, int | None], None]]:
    """A ``(done, total)`` callback to hand to data code, which reports but never draws:
    a transient bar on an interactive stderr; silent in CI logs, pipes and when ``quiet``
    (ranks other than 0)."""
    disable = quiet or is_plain(sys.stderr)
    with Progress(console=Console(file=sys.stderr), transient=True, disable=disable) as bar:
        job = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(job, completed=done, total=total)
