"""Freed memory stays in the process instead of going back to the OS after every tensor.

glibc's malloc gives each large block (over 128 KiB to 32 MiB, its adaptive mmap threshold)
fresh pages from the OS and unmaps them on free, and trims the heap's top: a network whose
activations are tens of MB then takes a page fault on every 4 KiB of every new tensor, every
forward pass. On a 2-core CPU that was a quarter of the style network's time on a 480p frame
(docs/performance.md#memory). Raising both thresholds keeps freed blocks for the next step,
as the allocators PyTorch's CPU tuning guide preloads (jemalloc, tcmalloc) do, without a
preload. Memory once used is not returned until the process ends, and fragmentation adds a
little to the peak (5-13% in the measured training runs).
``CVTOOL_KEEP_MEMORY=0`` leaves malloc as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

ENV = "CVTOOL_KEEP_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
LARGE = 2**31 - 1  # mallopt takes an int


@functools.cache
def keep_freed() -> bool:
    """Once per process; True when glibc took both settings (False on other C libraries and systems)."""
    if os.environ.get(ENV, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE)) and bool(mallopt(M_TRIM_THRESHOLD, LARGE))
