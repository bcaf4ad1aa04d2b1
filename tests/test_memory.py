"""engine/memory.py: a process that runs a network keeps its freed tensors' memory (glibc), unless told not to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, os, sys
import torch
from cvtool.engine import runtime
if sys.argv[1] == "select":
    runtime.select_device("cpu")
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
before = rss()
x = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, touched
del x
from cvtool.engine import memory
print(json.dumps({"kept": memory.keep_freed.cache_info().currsize > 0 and memory.keep_freed(),
                  "held_mib": (rss() - before) / 2**20}))
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                                reason="glibc's mallopt")


def probe(mode: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO), **env})
    return json.loads(out.stdout)


def test_picking_a_device_keeps_freed_memory_for_the_next_tensor():
    kept = probe("select")
    assert kept["kept"] is True and kept["held_mib"] > 60  # the 64 MiB stay in the heap for reuse
    plain = probe("none")
    assert plain["kept"] is False and plain["held_mib"] < 4  # glibc's default: unmapped on free


def test_cvtool_keep_memory_0_leaves_malloc_alone():
    off = probe("select", CVTOOL_KEEP_MEMORY="0")
    assert off["kept"] is False and off["held_mib"] < 4
