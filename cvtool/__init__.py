"""cvtool: the classic computer-vision tasks, trained and run from one command line."""

import os

__version__ = "0.1.0"

# OpenMP reads how its idle threads wait once, when torch loads it, so it is set here, before
# any torch import. GNU OpenMP (torch's Linux wheels) spins 300,000 rounds (milliseconds) before
# a waiting thread sleeps, which on a shared machine takes cores other processes need; PASSIVE
# (sleep at once) cost 7-38% of an idle TinySSD run's speed in wake-ups on 2 cores. 3,000 rounds
# (tens of microseconds) kept most of the idle speed and leave a busy neighbour as much of its
# core as PASSIVE does (benchmarks/wait.py). A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept.
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
USER_WAIT = {k: os.environ[k] for k in WAIT_SETTINGS if k in os.environ}
SPIN_COUNT = "3000"
if not USER_WAIT:
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
