"""Where and how the math runs: device, seeds, precision, processes, stop signals.

A requested device that is absent is an error, never a silent fall back to the CPU:
a CI job that asked for a GPU must not pass by training for hours on a CPU.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import random
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from cvtool.engine import memory
from cvtool.engine.signals import Signalled, StopFlag, pause_point  # noqa: F401 - re-exported
from cvtool.errors import InputError


@dataclass(frozen=True)
class Processes:
    """This process's place among torchrun's (one process when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def processes_from_env() -> Processes:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes()
    return Processes(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


DIST_TIMEOUT_ENV = "CVTOOL_DIST_TIMEOUT"
DIST_TIMEOUT_DEFAULT = 2 * 3600


def dist_timeout() -> timedelta:
    """How long a rank waits in a collective: CVTOOL_DIST_TIMEOUT seconds, 2 h by default.

    Ranks > 0 wait at a barrier while rank 0 downloads and prepares the data, and in a
    broadcast while it validates; NCCL's 10-minute default would kill a job in either.
    """
    text = os.environ.get(DIST_TIMEOUT_ENV, "").strip()
    if not text:
        return timedelta(seconds=DIST_TIMEOUT_DEFAULT)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InputError(f"{DIST_TIMEOUT_ENV}={text!r} must be a number of seconds > 0")
    return timedelta(seconds=seconds)


def init_processes(procs: Processes, device: torch.device) -> None:
    """Join torchrun's process group: NCCL between GPUs, gloo between CPU processes."""
    if not procs.distributed or dist.is_initialized():
        return
    timeout = dist_timeout()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)


def close_processes() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a no-op in one process)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def local_device(spec: str) -> torch.device:
    """The device this process works on: under torchrun, the GPU of its LOCAL_RANK."""
    procs = processes_from_env()
    return select_device(spec, procs.local_rank, world=procs.world)


def select_device(spec: str, local_rank: int = 0, *, world: int = 1) -> torch.device:
    """Every command that runs a network picks its device here, so this is where its process
    stops handing freed tensors back to the OS (engine/memory.py)."""
    memory.keep_freed()
    spec = spec.strip().lower()
    if world > 1 and spec.startswith("cuda:"):
        raise InputError(f"device {spec} would put all {world} torchrun processes on one GPU; "
                         "use --device cuda (each process takes the GPU of its LOCAL_RANK)")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not mps_available():
            raise InputError("device mps was requested but this machine has no MPS backend")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {spec} was requested but no CUDA GPU is available")
        index = local_rank % count if spec == "cuda" else parse_index(spec)
        if index >= count:
            raise InputError(f"device {spec} was requested but only {count} CUDA GPU(s) exist")
        return torch.device("cuda", index)
    raise InputError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")


def parse_index(spec: str) -> int:
    try:
        index = int(spec.split(":", 1)[1])
    except ValueError:
        raise InputError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if index < 0:
        raise InputError(f"unknown device {spec!r}; the GPU index must be >= 0")
    return index


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for ``train.amp``; None means full fp32. ``auto`` is bf16 where the
    hardware computes it natively (CUDA with bf16, a CPU with AVX512-BF16 or AMX) and fp32
    elsewhere: a CPU without it emulates bf16, which is slower than fp32."""
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    if amp == "fp16" and device.type == "cpu":
        raise InputError("train.amp fp16 needs a GPU; use bf16 or off on the CPU")
    return torch.bfloat16 if amp == "bf16" else torch.float16


BF16_FLAGS = {"avx512_bf16", "amx_bf16"}  # x86 /proc/cpuinfo "flags"
ARM_BF16_FLAG = "bf16"  # aarch64 /proc/cpuinfo "Features" (Graviton3, Neoverse V1/N2)


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor listed in /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16(flags: set[str], machine: str) -> bool:
    if machine in ("aarch64", "arm64"):
        return ARM_BF16_FLAG in flags
    return bool(BF16_FLAGS & flags)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively; torch's own probes first, then /proc/cpuinfo."""
    probes = [getattr(torch._C._cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None and probe() for probe in probes):
        return True
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return native_bf16(cpu_flags(text), platform.machine().lower())


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def deterministic_cublas(deterministic: bool) -> None:
    """cuBLAS reads CUBLAS_WORKSPACE_CONFIG when it first runs, so this comes before anything
    touches the GPU (a task's build may already run a network, e.g. train-dog's feature cache)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def configure(device: torch.device, deterministic: bool) -> None:
    """Kernel choice: cuDNN autotuning for speed, or bitwise reproducibility.

    Deterministic means it: an op with no deterministic kernel raises instead of warning.
    """
    deterministic_cublas(deterministic)
    torch.use_deterministic_algorithms(deterministic)
    if deterministic:
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type
