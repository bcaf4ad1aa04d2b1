"""What several commands share: JSON output, config, weights, error lines, the help's look, the torch note."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from cvtool.errors import CvtoolError, InputError
from cvtool.files import json_text
from cvtool.resolve import load_config  # noqa: F401 - shared with the API

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML config file.")
SET_OPTION = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                          help="Override a config key, e.g. optim.lr=0.1 (a YAML value; repeatable).")
DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps."
JSON_HELP = "Print one JSON result object on stdout."
FAIL_UNDER = typer.Option([], "--fail-under", metavar="METRIC=VALUE",
                          help="Exit 4 if METRIC (of the best epoch; eval: of the checkpoint) is under VALUE "
                               "(repeatable), e.g. val_acc=0.9.")
FAIL_OVER = typer.Option([], "--fail-over", metavar="METRIC=VALUE",
                         help="Exit 4 if METRIC is over VALUE, for losses and errors (repeatable), e.g. val_loss=0.5.")


def tidy_help(command: typer.main.TyperGroup | typer.main.TyperCommand) -> None:
    """Help that reads like git's: on/off flags show no type, the rest keep their metavar."""
    params = list(command.params)
    help_option = command.get_help_option(typer.Context(command))
    for param in [*params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_bool_flag", False) and param.metavar is None:
            param.metavar = ""
    for child in getattr(command, "commands", {}).values():
        tidy_help(child)


def load_torch() -> None:
    """Importing torch takes seconds: on a terminal, say so while the commands that need it load it."""
    if "torch" in sys.modules:
        return
    note = sys.stderr.isatty()
    if note:
        sys.stderr.write("cvtool: loading torch...\r")
        sys.stderr.flush()
    try:
        import torch  # noqa: F401 - imported for the note's sake; the command uses it next
    finally:
        if note:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def emit(result: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json_text(result) + "\n")


def load_weights(model: Any, ckpt: dict[str, Any], path: Path) -> None:
    from cvtool.engine import checkpoint

    checkpoint.load_weights(model, ckpt, path)


def one_line(exc: CvtoolError) -> str:
    """The user's message, also when a DataLoader worker wrapped it in its traceback."""
    text = str(exc).strip()
    if "Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    return last.split(": ", 1)[1] if last.startswith(type(exc).__module__) else last


def unexpected(exc: BaseException) -> str:
    """An error cvtool did not foresee, as its type and first line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def describe(exc: BaseException) -> str:
    return one_line(exc) if isinstance(exc, CvtoolError) else unexpected(exc)
