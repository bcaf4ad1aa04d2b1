"""Modules that are also API functions: ``cvtool.config("train-ssd")``, ``cvtool.runs()``,
``cvtool.compare([...])`` and ``cvtool.commands()``.

Those four names were modules (the config schemas, run reading, run comparison, the CLI's
commands) before they were API functions, and every ``from cvtool import config`` must keep
getting the module. So each of them ends with ``make_callable(__name__)``: the module stays a
module, and calling it calls ``cvtool.api.<its name>``, imported only then.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call is the API function of its last name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from cvtool import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(name: str) -> None:
    sys.modules[name].__class__ = CallableModule
