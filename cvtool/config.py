"""Typed run configuration: YAML in, validated dataclasses out; called, ``cvtool.config(command)``.

Every task's config is a dataclass of sections; a field's ``metadata`` holds its help line (``cvtool config show``)
and valid range, so schema, defaults, docs and checks live in one place. Loading never guesses: unknown keys,
wrong types and out-of-range values are errors naming the dotted key and, for a misspelling, the nearest valid one.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Union

import yaml

from cvtool.callable import make_callable
from cvtool.errors import InputError


class ConfigError(InputError):
    """A config file, ``--set`` override or value that does not fit the schema."""


def opt(default: Any, help: str, *, ge: float | None = None, gt: float | None = None,
        le: float | None = None, lt: float | None = None) -> Any:
    """A config field with its help line and numeric bounds."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    """Keys every task's data section has; tasks subclass it with their own."""

    root: str = opt("data/dataset", "dataset folder in its real on-disk layout")
    download: bool = opt(True, "fetch the dataset into root when it is missing")
    batch_size: int = opt(32, "images per training step", ge=1)
    num_workers: int = opt(2, "DataLoader worker processes (0 = load in the main process)", ge=0)
    on_bad_image: Literal["error", "skip"] = opt(
        "error", "a corrupt or unreadable image in the dataset: error (exit 2 naming it) or skip it (each file "
                 "logged, the count in summary.json); test images for a submission are always an error")


@dataclass
class OptimConfig:
    """The optimizer; optim.lr is the learning rate at optim.reference_batch images a step."""

    name: Literal["sgd", "adam", "adamw"] = opt("sgd", "optimizer")
    lr: float = opt(0.1, "learning rate at reference_batch (the loss is the batch mean); the run uses it "
                    "scaled to the effective batch by lr_scaling", gt=0)
    reference_batch: int = opt(32, "the batch optim.lr is meant for (each task: the book's batch)", ge=1)
    lr_scaling: Literal["auto", "linear", "sqrt", "none"] = opt(
        "auto", "lr x (effective batch / reference_batch) [linear] or its square root [sqrt], or unscaled [none]; "
                "auto = linear for sgd, sqrt for adam/adamw")
    momentum: float = opt(0.0, "SGD momentum", ge=0, lt=1)
    nesterov: bool = opt(False, "Nesterov momentum (SGD)")
    weight_decay: float = opt(0.0, "L2 weight decay (decoupled for adamw)", ge=0)
    decay_norm_and_bias: bool = opt(False, "weight decay on normalisation-layer weights and on biases too "
                                    "(the book: true; false = decay 0 for them, as torchvision and timm)")


@dataclass
class SchedConfig:
    name: Literal["none", "step", "cosine", "onecycle"] = opt("none", "learning-rate schedule")
    step_size: int = opt(1, "step: epochs between decays", ge=1)
    gamma: float = opt(0.1, "step: decay factor", gt=0, le=1)
    warmup_epochs: float = opt(0.0, "linear warm-up from lr/100, in epochs (fractions allowed)", ge=0)
    min_lr: float = opt(0.0, "cosine/onecycle: final learning rate", ge=0)


@dataclass
class TrainConfig:
    epochs: int = opt(5, "number of epochs", ge=1)
    device: str = opt("auto", "auto | cpu | cuda | cuda:N | mps (a missing device is an error)")
    seed: int = opt(0, "random seed for init, shuffling and augmentation", ge=0)
    amp: Literal["auto", "off", "bf16", "fp16"] = opt(
        "auto", "mixed precision: auto = bf16 autocast on CUDA with bf16 and on CPUs with native bf16 "
                "(AVX512-BF16, AMX), off elsewhere")
    channels_last: bool | Literal["auto"] = opt(
        "auto", "NHWC memory format: true, false, or auto = on a GPU, and on the CPU for the model families "
                "where it measured faster (cvtool/engine/placement.py)")
    threads: int | Literal["auto"] = opt(
        "auto", "CPU threads for the math: N, or auto = the CPUs this process may use less DataLoader workers, "
                "following other processes' load on Linux; OMP_NUM_THREADS, when set, replaces auto", ge=1)
    compile: bool = opt(False, "torch.compile the model")
    deterministic: bool = opt(False, "deterministic kernels and, with threads auto, a fixed CPU thread count "
                                     "(slower on GPU)")
    grad_clip: float | None = opt(None, "clip the gradient norm to this value; null = off", gt=0)
    on_nan: Literal["stop", "skip"] = opt(
        "stop", "a NaN/inf loss: stop (exit 1, the last good checkpoint kept) or skip that batch's update "
                "(costs a device sync per step)")
    sync_bn: bool = opt(False, "under torchrun on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm)")
    max_steps: int | None = opt(
        None, "at most this many train and validation batches per epoch (smoke runs); null = all", ge=1)
    accumulate_steps: int = opt(1, "batches whose gradients add up to one update: the effective batch is "
                                "data.batch_size x accumulate_steps (optim.lr_scaling counts it)", ge=1)
    ema_decay: float = opt(0.0, "exponential moving average of the weights (e.g. 0.999): validation, best.pt, "
                           "predict and eval use the average; 0 = off", ge=0, lt=1)
    ema_warmup: int = opt(0, "updates during which the average just copies the weights", ge=0)
    patience: int | None = opt(None, "early stopping: end after N epochs with no best-metric gain > min_delta; null: off",
                               ge=1)
    min_delta: float = opt(0.0, "early stopping: the least change of the best metric that counts as a gain", ge=0)


@dataclass
class LogConfig:
    """TensorBoard event files in the run directory (view them: tensorboard --logdir runs)."""

    tensorboard: bool = opt(True, "write TensorBoard event files: metrics.csv per epoch, loss and lr per "
                                  "every_steps, the task's pictures, hparams")
    every_steps: int = opt(50, "train loss and lr every N optimizer steps", ge=1)


class TaskConfig(Protocol):
    """What the trainer reads from every trainable task's config; each task's ``Config`` dataclass has these
    four sections (subclasses of the ones above) plus its own; a ``log`` section (LogConfig) is optional."""

    data: DataConfig
    optim: OptimConfig
    sched: SchedConfig
    train: TrainConfig


TRAINER_SECTIONS = {"data": DataConfig, "optim": OptimConfig, "sched": SchedConfig, "train": TrainConfig}


def check_task_config(schema: type) -> None:
    """A trainable task's config must be a dataclass with the sections the trainer reads."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{schema.__qualname__} is not a dataclass")
    hints = typing.get_type_hints(schema)
    for name, base in TRAINER_SECTIONS.items():
        kind = hints.get(name)
        if not (isinstance(kind, type) and issubclass(kind, base)):
            raise TypeError(f"{schema.__module__}.{schema.__qualname__}.{name} must be a {base.__name__} "
                            f"(or a subclass), got {kind!r}")


def num_classes(given: int | str, found: int, source: str) -> int:
    """``model.num_classes``: ``auto`` takes the count the data holds; a number must agree with it."""
    if given != "auto" and given != found:
        raise ConfigError(f"model.num_classes is {given} but {source} holds {found} classes "
                          "(model.num_classes: auto takes the count from the data)")
    return found


def with_num_classes(cfg: Any, found: int, source: str) -> Any:
    """``cfg`` with ``model.num_classes`` resolved against the data, so checkpoints hold the number."""
    count = num_classes(cfg.model.num_classes, found, source)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=count))


def class_count(given: int | str, standard: int) -> int:
    """A model built without data at hand (no ``build``): ``auto`` means the dataset's standard count."""
    return standard if given == "auto" else int(given)


# --------------------------------------------------------------------------- loading


def field_help(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def load(schema: type, path: str | Path | None = None, overrides: list[str] | None = None,
         values: dict[str, Any] | None = None, base: dict | None = None) -> Any:
    """``schema`` from its defaults, then ``base`` (a saved config) or a YAML file, then ``KEY=VALUE`` overrides, then
    ``values``: typed dotted keys (CLI flags, API keywords), as given."""
    data: dict = copy.deepcopy(base) if base is not None and path is None else {}
    if path is not None:
        data = read_yaml(Path(path))
    for item in overrides or []:
        set_dotted(data, *parse_override(item))
    for key, value in (values or {}).items():
        set_dotted(data, key, value)
    return from_dict(schema, data)


def read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"config path {path} is not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not a {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: {raw!r} is not a valid YAML value") from None
    return key.strip(), value


def set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def dotted_keys(schema: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(schema):
        name = prefix + f.name
        sub = resolve_type(schema, f)
        if dataclasses.is_dataclass(sub):
            keys.extend(dotted_keys(sub, name + "."))
        else:
            keys.append(name)
    return keys


def resolve_type(schema: type, f: dataclasses.Field) -> Any:
    return typing.get_type_hints(schema)[f.name]


def from_dict(schema: type, data: dict, prefix: str = "", root: type | None = None) -> Any:
    root = root or schema
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    names = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in data.items():
        if key not in names:
            full = prefix + str(key)
            if isinstance(value, dict) and value:
                full += "." + str(next(iter(value)))
            close = difflib.get_close_matches(full, dotted_keys(root), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"unknown config key {full}{hint}")
    values = {}
    for name, f in names.items():
        kind = resolve_type(schema, f)
        full = prefix + name
        if dataclasses.is_dataclass(kind):
            section = data.get(name) or {}
            if isinstance(section, dict):
                section = {**dataclasses.asdict(default_of(f)), **section}
            values[name] = from_dict(kind, section, full + ".", root)
        elif name in data:
            values[name] = coerce(full, kind, data[name], f)
        else:
            values[name] = default_of(f)
    return schema(**values)


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


YAML_BOOL_WORDS = {False: ("off", "no", "false"), True: ("on", "yes", "true")}


def coerce(key: str, kind: Any, value: Any, f: dataclasses.Field | None = None) -> Any:
    """Check ``value`` against the annotation ``kind``; return it in its canonical type."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(key, inner[0], value, f)
        errors = []
        for a in inner:
            try:
                return coerce(key, a, value, f)
            except ConfigError as exc:
                errors.append(str(exc))
        in_range = [e for e in errors if any(f" must be {op} " in e for op in (">=", ">", "<=", "<"))]
        if in_range:  # the right kind of value, out of bounds
            raise ConfigError(in_range[0])
        wants = [e.split(" must be ", 1)[1].rsplit(", got ", 1)[0] for e in errors]
        raise ConfigError(f"{key} must be {' or '.join(wants)}, got {value!r}")
    if origin is Literal:
        if isinstance(value, bool):  # YAML reads an unquoted off/no/on/yes as a boolean
            value = next((word for word in YAML_BOOL_WORDS[value] if word in args), value)
        if value not in args:
            choices = " | ".join(map(str, args))
            raise ConfigError(f"{key} must be one of {choices}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item = args[0] if args else Any
        return [coerce(f"{key}[{i}]", item, v, f) for i, v in enumerate(value)]
    if kind is Any:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        check_range(key, value, f)
        return value
    if kind is float:
        if isinstance(value, str):
            value = parse_float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        check_range(key, value, f)
        return value
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config annotation {kind!r} for {key}")


def parse_float(text: str) -> float | str:
    """YAML 1.1 reads ``1e-3`` as a string; people mean a number."""
    try:
        return float(text)
    except ValueError:
        return text


def check_range(key: str, value: float, f: dataclasses.Field | None) -> None:
    if f is None:
        return
    m = f.metadata
    for bound, ok, word in (("ge", lambda b: value >= b, ">="), ("gt", lambda b: value > b, ">"),
                            ("le", lambda b: value <= b, "<="), ("lt", lambda b: value < b, "<")):
        b = m.get(bound)
        if b is not None and not ok(b):
            raise ConfigError(f"{key} must be {word} {b}, got {value!r}")


# --------------------------------------------------------------------------- printing


def render(cfg: Any) -> str:
    """The config as commented YAML: each key with its help line."""
    lines: list[str] = []
    render_section(cfg, 0, lines)
    return "\n".join(lines) + "\n"


def render_section(obj: Any, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().splitlines()
            header = f"{pad}{f.name}:"
            if doc and not doc[0].startswith(type(value).__name__ + "("):
                header += f"  # {doc[0]}"
            lines.append(header)
            render_section(value, depth + 1, lines)
            continue
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        if text.endswith("\n...") or text.endswith("..."):
            text = text.replace("\n...", "").removesuffix("...").strip()
        comment = field_help(f)
        lines.append(f"{pad}{f.name}: {text}" + (f"  # {comment}" if comment else ""))


make_callable(__name__)  # cvtool.config(command) is cvtool.api.config
