"""One module per command. Each task module exposes:

- ``Config``: its config dataclass (sections from cvtool.config plus its own);
- ``build(cfg, rank_zero=True) -> cvtool.tasks.base.Task``: data, model, loss and metrics;
- ``build_model(cfg) -> nn.Module``: the bare architecture (no pretrained download), so
  ``cvtool predict`` can rebuild it from a checkpoint's saved config;
- ``predict(model, cfg, metadata, paths, device, options) -> list[dict]``;
- optionally ``EVAL_SETTINGS``: config keys ``cvtool eval`` sets before ``build`` (no
  pretrained download; nothing computed from weights the checkpoint replaces).

``COMMANDS`` maps a command name to its module; a command whose module is absent is
listed by ``cvtool --help`` and says it is not built yet.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cvtool.errors import InputError

COMMANDS: dict[str, str] = {
    "finetune-hotdog": "cvtool.tasks.hotdog",
    "train-ssd": "cvtool.tasks.ssd",
    "train-fcn": "cvtool.tasks.fcn",
    "stylize": "cvtool.tasks.stylize",
    "train-cifar": "cvtool.tasks.cifar",
    "train-dog": "cvtool.tasks.dog",
}


def available(command: str) -> bool:
    return importlib.util.find_spec(COMMANDS[command]) is not None


def module(command: str) -> ModuleType:
    if command not in COMMANDS:
        raise InputError(f"unknown task {command!r}; known: {', '.join(COMMANDS)}")
    if not available(command):
        raise InputError(f"{command} is not built yet in cvtool {__import__('cvtool').__version__}")
    return importlib.import_module(COMMANDS[command])
