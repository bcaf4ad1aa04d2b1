"""A command's config from its defaults, a YAML file or a dict, dotted overrides and typed flags.

The CLI (``--config``, ``--set KEY=VALUE``, ``--epochs`` ...) and the Python API (``config=``,
``overrides={"optim.lr": 0.1}``, ``epochs=`` ...) both come through ``load_config``, so the
same settings give the same config and the same mistakes the same errors (unknown keys with
their did-you-mean, wrong types, values out of range, another task's config file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from cvtool import config as cfglib
from cvtool.errors import InputError
from cvtool.tasks import registry

Overrides = Union[Sequence[str], Mapping[str, Any], None]  # ["optim.lr=0.1"] (--set) or {"optim.lr": 0.1}


def load_config(schema: type, config: str | Path | Mapping[str, Any] | None, overrides: Overrides,
                flags: dict[str, Any], base: dict | None = None, settings: dict[str, Any] | None = None) -> Any:
    """Defaults, then ``base`` or the file (or dict) ``config``, then the overrides, then
    ``settings`` (typed, as given), then the typed flags that were given (a None flag was not)."""
    sets, typed = split_overrides(overrides)
    values = {**typed, **(settings or {}), **{key: value for key, value in flags.items() if value is not None}}
    if isinstance(config, Mapping):
        return cfglib.load(schema, None, sets, values=values, base=dict(config))
    if config is not None and not isinstance(config, (str, Path)):
        raise InputError(f"config must be a YAML file's path or a dict, got {type(config).__name__}")
    try:
        return cfglib.load(schema, config, sets, values=values, base=base)
    except cfglib.ConfigError:
        others = other_tasks(schema, Path(config)) if config is not None else []
        if not others:
            raise
        mine = next((spec.command for spec in registry.specs() if spec.config is schema), "this command")
        raise cfglib.ConfigError(f"{config} is not a {mine} config: it looks like a {' or '.join(others)} "
                                 f"config; run cvtool {others[0]} --config {config}") from None


def split_overrides(overrides: Overrides) -> tuple[list[str], dict[str, Any]]:
    """(``KEY=VALUE`` texts, typed values by dotted key): a dict's values are taken as given."""
    if overrides is None:
        return [], {}
    if isinstance(overrides, Mapping):
        wrong = next((key for key in overrides if not isinstance(key, str) or not key.strip()), None)
        if wrong is not None:
            raise InputError(f"overrides: keys are dotted config keys such as 'optim.lr', got {wrong!r}")
        return [], dict(overrides)
    if isinstance(overrides, str) or not all(isinstance(item, str) for item in overrides):
        raise InputError("overrides must be a dict of dotted keys, e.g. {'optim.lr': 0.1}")
    return list(overrides), {}


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


Gates = Union[Mapping[str, float], Sequence[str], None]  # {"val_acc": 0.9} or the CLI's ["val_acc=0.9"]


def gate_list(fail_under: Gates = None, fail_over: Gates = None, max_drop: Gates = None) -> list[Any]:
    """Quality gates from the API's dicts or the CLI's METRIC=VALUE texts, parsed (and refused)
    exactly as ``--fail-under``, ``--fail-over`` and ``--max-drop`` are."""
    from cvtool import metrics

    gates: list[Any] = []
    for given, kind in ((fail_under, "under"), (fail_over, "over"), (max_drop, "drop")):
        if given:
            gates += metrics.parse([f"{k}={v}" for k, v in given.items()] if isinstance(given, Mapping)
                                   else list(given), kind)
    return gates


def enforce(records: list[dict], result: Any) -> None:
    """GateFailed (exit 4) when a gate failed; it carries ``result``, which was kept."""
    from cvtool import gates as gating
    from cvtool.errors import GateFailed

    try:
        gating.enforce(records)
    except GateFailed as exc:
        exc.result = result
        raise
