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

# The Python API (cvtool/api.py), loaded on first use so that ``import cvtool`` stays light: torch
# is imported when a function is called, not before. ``config``, ``runs``, ``compare`` and
# ``commands`` are also modules; calling them runs the API function of that name (cvtool/callable.py).
API = ("train", "load", "stylize", "Run", "Best", "Model", "Result", "Classification", "Detections", "Segmentation",
       "Stylized")
MODULES = ("api", "config", "runs", "compare", "commands", "errors")
__all__ = [*API, *MODULES]


def __getattr__(name: str):
    import importlib

    if name in API:
        return getattr(importlib.import_module("cvtool.api"), name)
    if name in MODULES:
        return importlib.import_module(f"cvtool.{name}")
    raise AttributeError(f"module 'cvtool' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
