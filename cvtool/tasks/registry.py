"""The one list of tasks: each task's declaration ends with ``SPEC = register(TaskSpec(...))``.

The CLI generates its train commands, ``data synth`` kinds, ``config`` targets and
``predict`` option checks from here. A built-in task declares itself in cvtool.tasks.specs
(its config schema and options, no torch) and names its code by "module:function", imported
when a command runs, so ``--help`` and ``config show`` never load torch. Other packages add
tasks through the ``cvtool.tasks`` entry-point group (name: the command, value: the module
that registers it); such a module may pass functions or "module:function" names alike.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Union

from cvtool.config import check_task_config
from cvtool.errors import InputError

GROUP = "cvtool.tasks"
PREDICT_OPTIONS = ("threshold", "kaggle_test", "preserve_color", "smooth")
FAMILIES = ("classify", "detect", "segment", "style", "stylize")
SPECS = f"{__package__}.specs"  # the built-in tasks' declarations


@dataclass(frozen=True)
class Lazy:
    """A function named "module:function", imported on its first call: a task is listed
    without importing its code."""

    target: str

    def load(self) -> Callable[..., Any]:
        return pkgutil.resolve_name(self.target)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)


Code = Union[Callable[..., Any], str]  # a function, or its "module:function" name


def load(code: Callable[..., Any]) -> Callable[..., Any]:
    """The function itself, imported if it was named."""
    return code.load() if isinstance(code, Lazy) else code


def lazy(code: Code | None) -> Callable[..., Any] | None:
    return Lazy(code) if isinstance(code, str) else code


@dataclass(frozen=True)
class TaskSpec:
    """What the CLI needs to know about one task.

    Each function may be given as "module:function", imported when first called.
    ``build(cfg, rank_zero=True) -> engine.task.Task`` is the training set-up (None: the
    command has no training loop, like stylize); ``build_model(cfg)`` the bare architecture
    ``predict`` and ``eval`` load a checkpoint into; ``predict(model, cfg, metadata, paths,
    device, options) -> list[dict]``; ``predict_options`` the extra ``cvtool predict``
    options it accepts; ``synth`` its synthetic-data writers by ``data synth`` kind, each
    ``writer(out, *, seed, **sizes) -> Path``; ``eval_settings`` the config keys ``cvtool
    eval`` sets before ``build`` (no pretrained download for weights the checkpoint replaces).
    """

    command: str
    summary: str
    config: type
    build_model: Code | None
    predict: Code | None
    build: Code | None = None
    predict_options: tuple[str, ...] = ()
    synth: dict[str, Code] = field(default_factory=dict)
    eval_settings: dict[str, Any] = field(default_factory=dict)
    family: Literal["classify", "detect", "segment", "style", "stylize"] = "classify"
    # (height, width) every input is squashed to, for a network that takes no other size
    # (its config has no data.image_size); export refuses any other --image-size.
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("build_model", "predict", "build"):
            object.__setattr__(self, name, lazy(getattr(self, name)))
        object.__setattr__(self, "synth", {kind: lazy(writer) for kind, writer in self.synth.items()})
        unknown = set(self.predict_options) - set(PREDICT_OPTIONS)
        if unknown:
            raise ValueError(f"{self.command}: unknown predict options {sorted(unknown)}; known: {PREDICT_OPTIONS}")
        if self.family not in FAMILIES:
            raise ValueError(f"{self.command}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.build is not None:
            if self.build_model is None or self.predict is None:
                raise ValueError(f"{self.command}: a trainable task needs build_model and predict")
            check_task_config(self.config)


_SPECS: dict[str, TaskSpec] = {}
_MISSING: dict[str, str] = {}  # entry points whose module cannot be imported: command -> module
_DISCOVERED = [False]


def register(spec: TaskSpec) -> TaskSpec:
    """Add ``spec``; a module imported again (a reload) replaces its own earlier entry."""
    before = _SPECS.get(spec.command)
    if before is not None and before.config.__module__ != spec.config.__module__:
        raise ValueError(f"two tasks claim the command {spec.command!r}: "
                         f"{before.config.__module__} and {spec.config.__module__}")
    _SPECS[spec.command] = spec
    _MISSING.pop(spec.command, None)
    return spec


def entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=GROUP))


def discover() -> None:
    """Import every built-in task's declaration, then every installed plugin's module."""
    _MISSING.clear()
    package = importlib.import_module(SPECS)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{SPECS}.{info.name}")
    for point in entry_points():
        if point.name in _SPECS:
            continue
        try:
            point.load()
        except ModuleNotFoundError:
            _MISSING[point.name] = point.value
            continue
        if point.name not in _SPECS:
            raise ValueError(f"entry point {point.name} = {point.value} registered no task of that name")
    _DISCOVERED[0] = True


def discovered() -> None:
    if not _DISCOVERED[0]:
        discover()


def specs() -> list[TaskSpec]:
    """Every registered task, in registration order."""
    discovered()
    return list(_SPECS.values())


def missing() -> list[str]:
    """Declared commands whose module is not there (listed, and they say so when run)."""
    discovered()
    return list(_MISSING)


def get(command: str) -> TaskSpec:
    discovered()
    if command in _SPECS:
        return _SPECS[command]
    if command in _MISSING:
        raise InputError(f"{command} is not built yet in cvtool {__import__('cvtool').__version__}")
    raise InputError(f"unknown task {command!r}; known: {', '.join(_SPECS)}")


def with_option(option: str) -> list[str]:
    """The commands whose ``predict`` accepts ``option``, sorted so messages do not depend on import order."""
    return sorted(s.command for s in specs() if option in s.predict_options)


def synth_writers() -> dict[str, Callable[..., Path]]:
    """Every ``data synth`` kind over all tasks, its writer imported (writers import no torch)."""
    return {kind: load(writer) for spec in specs() for kind, writer in spec.synth.items()}
