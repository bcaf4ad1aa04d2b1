"""Where a model and its batches live: device, memory format, SyncBatchNorm, DDP, compile.

Training and ``cvtool eval`` place a model with the same ``place``, so a checkpoint is
scored the way it was trained.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cvtool.config import TrainConfig
from cvtool.engine.runtime import Processes
from cvtool.errors import InputError


# train.channels_last: auto on the CPU, per task family: NHWC only where benchmarks/layout.py
# measured it faster in fp32 training steps (oneDNN runs convolutions in NHWC blocks either
# way; the gain is the reorders it saves around batch norm, ReLU and pooling, which is worth
# most for large feature maps and least for 32-px inputs).
#   stylize: VGG-19 at 300x450, 1.2x (8.8 vs 10.6 s a step, benchmarks/layout.py)
#   detect:  TinySSD, faster with NHWC (configs/demo/ssd.yaml's setting, measured on the CPU)
#   classify: ResNet-18 at 32 and 224 px, NHWC 0.86x and 0.90x (a first, loaded-machine reading:
#             no gain), so NCHW
#   segment:  FCN's ResNet-18 trunk, the classifiers' convolutions at larger maps; NCHW until measured
# A family missing here (a plugin's) stays NCHW. On CUDA auto is NHWC (tensor cores), on MPS NCHW.
CPU_CHANNELS_LAST = {"stylize": True, "detect": True, "classify": False, "segment": False}


def channels_last_for(setting: bool | str, device: torch.device, family: str | None) -> bool:
    """``train.channels_last`` resolved: true/false as given, ``auto`` from the device and the family."""
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        return CPU_CHANNELS_LAST.get(family or "", False)
    return False


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last is True and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


def place(model: nn.Module, device: torch.device, tc: TrainConfig, procs: Processes = Processes()) -> nn.Module:
    """The model on ``device`` in ``train.channels_last`` format (SyncBatchNorm under torchrun
    with ``train.sync_bn``); checked before anything is written."""
    if procs.distributed and tc.sync_bn and device.type != "cuda":
        raise InputError("train.sync_bn needs CUDA devices (SyncBatchNorm runs on NCCL only); "
                         "set it to false for CPU processes")
    if procs.distributed and tc.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if tc.channels_last is True:  # "auto" is resolved by the caller (channels_last_for)
        model = model.to(memory_format=torch.channels_last)
    return model


def wrap(model: nn.Module, device: torch.device, tc: TrainConfig, procs: Processes) -> tuple[nn.Module, nn.Module]:
    """(the network training steps run, the one validation runs): DDP across processes,
    ``torch.compile`` when asked; validation runs on rank 0 alone, so never through DDP."""
    wrapped: nn.Module = model
    if procs.distributed:
        wrapped = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    net: nn.Module = torch.compile(wrapped) if tc.compile else wrapped
    return net, model if procs.distributed else net


def no_sync(net: nn.Module, accumulating: bool) -> ContextManager:
    """DDP's ``no_sync`` on the micro-steps before an update: gradients add up locally and are
    all-reduced once, on the last one; a plain context elsewhere."""
    ddp = getattr(net, "_orig_mod", net)  # under torch.compile
    if accumulating and isinstance(ddp, DistributedDataParallel):
        return ddp.no_sync()
    return contextlib.nullcontext()
