"""What several commands share: JSON output, config loading, checkpoint weights, error lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from cvtool import config as cfglib
from cvtool.errors import CvtoolError, InputError
from cvtool.files import json_text
from cvtool.tasks import registry

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


def emit(result: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json_text(result) + "\n")


def load_config(schema: type, config: Optional[Path], overrides: list[str], flags: dict[str, Any],
                base: dict | None = None, settings: dict[str, Any] | None = None) -> Any:
    """Defaults, then ``base`` or the YAML file, then ``--set``, then ``settings`` (typed, as
    given), then the typed flags that were given (a None flag was not)."""
    values = {**(settings or {}), **{key: value for key, value in flags.items() if value is not None}}
    try:
        return cfglib.load(schema, config, overrides, values=values, base=base)
    except cfglib.ConfigError:
        others = other_tasks(schema, config) if config is not None else []
        if not others:
            raise
        mine = next((spec.command for spec in registry.specs() if spec.config is schema), "this command")
        raise cfglib.ConfigError(f"{config} is not a {mine} config: it looks like a {' or '.join(others)} "
                                 f"config; run cvtool {others[0]} --config {config}") from None


def other_tasks(schema: type, path: Path) -> list[str]:
    """The tasks whose schema accepts the file ``schema`` refuses (none: the file fits, or fits nothing)."""
    def fits(kind: type) -> bool:
        try:
            cfglib.load(kind, path)
        except cfglib.ConfigError:
            return False
        return True

    if fits(schema):
        return []
    return [spec.command for spec in registry.specs() if spec.config is not schema and fits(spec.config)]


def load_weights(model: Any, ckpt: dict[str, Any], path: Path) -> None:
    from cvtool.engine import checkpoint

    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"checkpoint {path} does not fit {ckpt['task']}'s model: {checkpoint.mismatch(exc)}") from None


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
