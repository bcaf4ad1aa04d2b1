"""Early stopping: ``train.patience`` epochs without a gain of the best metric by more than
``train.min_delta`` end the run (as Keras' EarlyStopping counts them).

The count lives in the trainer's checkpoint, so a resumed run keeps it; it is kept even with
patience off, so a resume that turns it on counts from where the run is.
"""

from __future__ import annotations

import math
from typing import Any

from cvtool.config import TrainConfig
from cvtool.errors import InputError


def fresh() -> dict[str, Any]:
    """``reference``: the value the last counted gain reached; ``since``: epochs since it;
    ``stopped``: the epoch the run stopped early, else None."""
    return {"reference": None, "since": 0, "stopped": None}


def update(state: dict[str, Any], value: float | None, clean: bool, mode: str, tc: TrainConfig, epoch: int) -> bool:
    """After an epoch (``clean``: its results were all finite); True when the run stops here."""
    if clean and value is not None and math.isfinite(value):
        reference = state["reference"]
        if reference is None or (value - reference if mode == "max" else reference - value) > tc.min_delta:
            state.update(reference=value, since=0)
            return False
    state["since"] += 1
    if tc.patience is not None and state["since"] >= tc.patience:
        state["stopped"] = epoch
        return True
    return False


def check_resume(state: dict[str, Any], tc: TrainConfig, run_dir: Any) -> None:
    """A run that stopped early continues only with more patience than it has used up."""
    if state.get("stopped") is None:
        return
    if tc.patience is not None and state["since"] >= tc.patience:
        raise InputError(f"{run_dir} stopped early at epoch {state['stopped']} ({state['since']} epochs without a "
                         f"gain > train.min_delta); pass --set train.patience=N with N > {state['since']} "
                         "(or null) to train further")
    state["stopped"] = None
