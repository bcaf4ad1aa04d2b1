"""cvtool: the classic computer-vision tasks, trained and run from one command line."""

import os

__version__ = "0.1.0"

# OpenMP reads its wait policy once, when torch loads it, so it is set here, before any torch
# import: idle threads sleep instead of spinning, which on a shared machine keeps them from
# taking cores other processes need (see cvtool/engine/threads.py). A user's value is kept.
USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
