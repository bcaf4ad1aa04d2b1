"""An exponential moving average of the weights (``train.ema_decay``).

torch.optim.swa_utils.AveragedModel keeps the average, BatchNorm statistics included
(``use_buffers=True``). For the first ``train.ema_warmup`` updates the average is reset
to a copy of the weights, as torchvision's classification recipe does during warm-up:
early weights are far from where training ends and would only drag the average back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cvtool.config import TrainConfig


class Ema:
    def __init__(self, model: nn.Module, tc: TrainConfig):
        self.model = model
        self.warmup = tc.ema_warmup
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay), use_buffers=True)
        self.averaged.eval()

    @property
    def module(self) -> nn.Module:
        """The averaged network: what validation, best.pt, predict and eval use."""
        return self.averaged.module

    @torch.no_grad()
    def update(self, updates_done: int) -> None:
        """After an optimizer step; ``updates_done`` counts the steps before this one."""
        if updates_done < self.warmup:
            self.averaged.n_averaged.zero_()  # the next update copies
        self.averaged.update_parameters(self.model)

    def state(self) -> dict[str, Any]:
        return {"n_averaged": int(self.averaged.n_averaged.item())}

    def restore(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.module.load_state_dict(weights)
        self.averaged.n_averaged.fill_(int(state["n_averaged"]))


def create(model: nn.Module, tc: TrainConfig) -> Ema | None:
    return Ema(model, tc) if tc.ema_decay > 0 else None
