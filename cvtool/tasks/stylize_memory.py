"""Will a stylize run fit? Its peak memory, estimated from the VGG activations, against what is free.

The estimate is checked before the network is built, so a picture too large for the
device is refused in a second instead of failing minutes in.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cvtool.errors import InputError
from cvtool.models import vgg

# Peak memory / fp32 bytes of the optimised image's forward activations: measured 1.5 on the
# CPU at 320x480, 2 leaves a margin. Under bf16/fp16 autocast some buffers stay fp32 (0.9x of
# the fp32 peak measured on the CPU), hence 3 bytes an element rather than 2.
MEMORY_FACTOR = 2.0
# On CUDA, what the activations do not count: the CUDA context and the cuDNN/cuBLAS workspaces
# (an estimate, about 1 GiB; not calibrated on a GPU).
CUDA_OVERHEAD = 2 ** 30


def estimate_memory(out_hw: tuple[int, int], style_hw: tuple[int, int], upto: int, elem_bytes: int) -> int:
    """Peak bytes of a run: the optimised image's activations x a factor, or the style pass if larger."""
    total, _ = vgg.activation_elements(*out_hw, upto)
    _, style_largest = vgg.activation_elements(*style_hw, upto)
    need = max(total * elem_bytes * MEMORY_FACTOR, 3 * style_largest * elem_bytes)
    return int(need) + vgg.parameter_count(upto) * 4


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (GPU memory, or RAM the OS can give); None when unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "mps":
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    except (RuntimeError, AttributeError):
        return None
    return host_available()


def host_available() -> int | None:
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            found.append(int(limit) - int(used))
    except OSError:
        pass
    return min(found) if found else None


def gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB"


def check_memory(device: torch.device, out_hw: tuple[int, int], style_hw: tuple[int, int], upto: int,
                 dtype: torch.dtype | None, force: bool) -> int:
    need = estimate_memory(out_hw, style_hw, upto, 3 if dtype is not None else 4)
    if device.type == "cuda":
        need += CUDA_OVERHEAD
    free = available_memory(device)
    if not force and free is not None and need > free:
        raise InputError(f"output {out_hw[0]}x{out_hw[1]} needs about {gib(need)} on {device} but only "
                         f"{gib(free)} is free; lower --size, or pass --force to try anyway")
    return need
