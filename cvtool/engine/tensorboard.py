"""TensorBoard event files in the run directory, so `tensorboard --logdir runs` sees every run.

Logging is a by-product of training, never a reason for it to stop: the first failure of
the event writer (a full disk, a read-only folder) becomes one warning and the board
switches itself off for the rest of the run.

Every scalar is logged against the global step (the number of optimizer steps done), so
per-step and per-epoch curves share one x axis; ``epoch/epoch`` maps it back to epochs.
A resumed run reopens the folder with ``purge_step`` = the saved global step + 1: events an
interrupted run wrote after its checkpoint are dropped and none is written twice.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys, each value one TensorBoard accepts as an hparam."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = "none" if value is None else str(value)
    return flat


def to_image(picture: str | Path | torch.Tensor) -> tuple[np.ndarray | torch.Tensor, str]:
    """A PNG path as an HWC uint8 array; a tensor as given (CHW, float in [0, 1] or uint8)."""
    if isinstance(picture, torch.Tensor):
        return picture.detach().cpu(), "CHW"
    with Image.open(picture) as img:
        return np.asarray(img.convert("RGB")), "HWC"


class Board:
    """One run's event writer. Off (every call a no-op) unless enabled on the main process."""

    def __init__(self, run_dir: Path | None, enabled: bool = True, every_steps: int = 50,
                 purge_step: int | None = None):
        self.every_steps = max(1, every_steps)
        self.writer = None
        if run_dir is not None and enabled:
            self.guard(lambda: self.open(Path(run_dir), purge_step))

    def open(self, run_dir: Path, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step, flush_secs=30)

    @classmethod
    def for_run(cls, run_dir: Path, log_cfg: Any, main: bool, saved_step: int | None) -> "Board":
        """The board of a training run: ``saved_step`` is the resumed checkpoint's global step."""
        enabled = main and log_cfg is not None and log_cfg.tensorboard
        every = log_cfg.every_steps if log_cfg is not None else 50
        return cls(run_dir, enabled, every, None if saved_step is None else saved_step + 1)

    @property
    def on(self) -> bool:
        return self.writer is not None

    def guard(self, write: Callable[[], None]) -> None:
        """Run one write; on its first failure warn once and switch the board off."""
        try:
            write()
        except Exception as exc:  # noqa: BLE001 - any writer failure must leave training running
            writer, self.writer = self.writer, None
            log.warning("TensorBoard logging stopped: %s: %s (training goes on; metrics.csv is complete)",
                        type(exc).__name__, exc)
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - already warned; the file is given up
                    pass

    # ------------------------------------------------------------------ writes

    def scalars(self, values: Mapping[str, Any], step: int, prefix: str = "") -> None:
        """Every finite number in ``values`` under ``prefix/name``."""
        if not self.on:
            return

        def write() -> None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"{prefix}{name}", value, step)

        self.guard(write)

    def train_step(self, step: int, loss: torch.Tensor | float, lr: float) -> None:
        """Train loss and lr every ``every_steps`` steps (the loss is read back only then)."""
        if self.on and step % self.every_steps == 0:
            value = loss.item() if isinstance(loss, torch.Tensor) else float(loss)
            self.scalars({"train_loss": value, "lr": lr}, step, "step/")

    def rows(self, rows: list[Mapping[str, Any]], x: str, prefix: str) -> None:
        """Rows of per-step values (stylize's losses), every ``every_steps``-th by ``x``."""
        for row in rows:
            if int(row[x]) % self.every_steps == 0:
                self.scalars({k: v for k, v in row.items() if k != x}, int(row[x]), prefix)

    def epoch(self, row: Mapping[str, Any], step: int,
              pictures: Callable[[], Mapping[str, torch.Tensor]] | None = None) -> None:
        """One metrics.csv row, and the task's pictures (drawn only when the board is on)."""
        self.scalars(row, step, "epoch/")
        if self.on and pictures is not None:
            with torch.no_grad():
                drawn = pictures()
            self.images(drawn, step)

    def complete(self, config: Mapping[str, Any], metrics: Mapping[str, Any], artifacts: Mapping[str, str],
                 step: int) -> None:
        """The end of a run: the PNGs the task wrote in its finish, then the hparams."""
        self.images({f"final/{k}": v for k, v in artifacts.items() if str(v).endswith(".png")}, step)
        self.hparams(config, metrics, step)

    def images(self, pictures: Mapping[str, str | Path | torch.Tensor], step: int) -> None:
        if not self.on:
            return

        def write() -> None:
            for tag, picture in pictures.items():
                array, layout = to_image(picture)
                self.writer.add_image(tag, array, step, dataformats=layout)

        self.guard(write)

    def hparams(self, config: Mapping[str, Any], metrics: Mapping[str, Any], step: int) -> None:
        """The resolved config and the final metrics, for TensorBoard's HParams table."""
        if not self.on:
            return
        final = {f"hparam/{k}": float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}

        def write() -> None:
            from torch.utils.tensorboard.summary import hparams

            file_writer = self.writer._get_file_writer()
            for part in hparams(flatten(config), final):
                file_writer.add_summary(part)
            for tag, value in final.items():
                self.writer.add_scalar(tag, value, step)

        self.guard(write)

    def close(self) -> None:
        if self.on:
            self.guard(self.writer.close)
            self.writer = None
