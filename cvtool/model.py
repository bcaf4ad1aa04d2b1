"""``cvtool.load``: a trained checkpoint or an exported model, to predict, evaluate and export with.

``cvtool predict``, ``cvtool eval`` and ``cvtool export`` are this module's ``Model`` methods
with the arguments parsed: ``predict_files`` gives ``predict --json``'s entries,
``evaluate`` ``eval --json``'s object and ``export_report`` ``export --json``'s, so the API and
the CLI answer alike. torch is imported when a model is loaded, not before.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from cvtool import config as cfglib
from cvtool.errors import InputError
from cvtool.inputs import Staged, expand_images, staged
from cvtool.resolve import Overrides, load_config
from cvtool.results import Classification, Detections, Result, Segmentation, read_mask
from cvtool.tasks import registry
from cvtool.tasks.registry import TaskSpec

PREDICT_OPTIONS = ("threshold", "out", "overwrite")  # Model.predict's; predict_files also takes kaggle_test


class Model:
    """A model to run: ``task`` (the train command), ``family``, ``classes``, ``config`` (a dict)
    and ``path``. Made by ``cvtool.load``; the network is built on the first prediction."""

    def __init__(self, path: Path, spec: TaskSpec, cfg: Any, metadata: dict[str, Any], device: str | None,
                 checkpoint: dict[str, Any] | None, exported: Any = None):
        self.path, self.task, self.family = path, spec.command, spec.family
        self.metadata, self.device = metadata, device
        self._spec, self._cfg, self._ckpt, self._exported = spec, cfg, checkpoint, exported
        self._ready: tuple[Any, Any] | None = None  # (network, torch device)

    @property
    def config(self) -> dict[str, Any]:
        return cfglib.to_dict(self._cfg)

    @property
    def classes(self) -> list[str]:
        from cvtool.export.exporter import class_names

        return class_names(self._spec, self._cfg, self.metadata)

    @property
    def exported(self) -> bool:
        """Whether this is a file ``cvtool export`` wrote (.onnx, .torchscript), not a checkpoint."""
        return self._exported is not None

    def __repr__(self) -> str:
        return f"Model(task={self.task!r}, path={str(self.path)!r}, classes={len(self.classes)})"

    # ------------------------------------------------------------------ predict

    def network(self) -> tuple[Any, Any]:
        """(the network in eval mode, its torch device), built once."""
        if self._ready is None:
            from cvtool.engine import checkpoint, runtime

            if self._exported is not None:  # the export runs itself; its torch side stays on the CPU
                net, dev = self._exported.model, runtime.select_device("cpu")
            else:
                dev = runtime.select_device(self.device or "auto")
                net = self._spec.build_model(self._cfg)
                checkpoint.load_weights(net, self._ckpt, self.path)
            self._ready = (net.to(dev).eval(), dev)
        return self._ready

    def predict_files(self, paths: list[Path], **options: Any) -> list[dict[str, Any]]:
        """``cvtool predict --json``'s entries for image files (options: threshold, out, overwrite,
        kaggle_test), checked as the CLI checks them."""
        from cvtool.tasks import outputs

        kaggle = options.get("kaggle_test")
        if not paths and kaggle is None:
            raise InputError("give at least one IMAGE (or --kaggle-test DIR)")
        if kaggle is not None:
            self.check_option("kaggle_test")
            if not Path(kaggle).is_dir():
                raise InputError(f"--kaggle-test {kaggle} is not a folder")
            outputs.refuse_existing([Path(options.get("out") or ".") / "submission.csv"], bool(options.get("overwrite")))
        if options.get("threshold") is not None:
            self.check_option("threshold")
        paths = expand_images([Path(p) for p in paths])
        net, dev = self.network()
        given = {k: v for k, v in options.items() if v is not None and v is not False}
        return self._spec.predict(net, self._cfg, self.metadata, paths, dev, given)

    def check_option(self, option: str) -> None:
        """A task-specific option is only for the tasks whose spec accepts it."""
        if option not in self._spec.predict_options:
            flag = "--" + option.replace("_", "-")
            raise InputError(f"{flag} is for {' and '.join(registry.with_option(option))} checkpoints; "
                             f"{self.path} is from {self.task}")

    def predict(self, images: Any, **options: Any) -> list[Result]:
        """One result per image: ``images`` is one or a list of paths (a folder: its images), PIL
        images, H x W x 3 uint8 arrays or 3 x H x W tensors (uint8, or floats in [0, 1]).

        Options: ``threshold`` (detectors), ``out`` (a folder for the pictures ``cvtool predict
        --out`` writes) and ``overwrite``. Results are Classification, Detections or Segmentation
        objects whose ``to_dict()`` is the entry ``cvtool predict --json`` prints for that image.
        """
        unknown = sorted(set(options) - set(PREDICT_OPTIONS))
        if unknown:
            close = difflib.get_close_matches(unknown[0], PREDICT_OPTIONS, n=1)
            raise InputError(f"unknown predict option {unknown[0]!r}" + (f"; did you mean {close[0]!r}?" if close
                             else f"; known: {', '.join(PREDICT_OPTIONS)}"))
        written = self.family != "segment" or options.get("out") is not None
        with staged(images) as (inputs, private):  # a segmenter without ``out`` writes into the private folder
            given = options if written else {**options, "out": private / "out"}
            entries = self.predict_files([i.path for i in inputs], **given)
            return [self.result(entry, item, written) for entry, item in zip(entries, inputs)]

    def result(self, entry: dict[str, Any], item: Staged, written: bool = True) -> Result:
        """``entry`` as a result object; ``written`` False: its mask files are private (read, then not named)."""
        entry = {**entry, "image": item.source}
        if self.family == "detect":
            return Detections(entry, item.image, item.source, self.classes)
        if self.family == "segment":
            from PIL import Image

            with Image.open(entry["overlay"]) as picture:
                overlay = picture.convert("RGB")
            mask = read_mask(Path(entry["mask"]))
            if not written:
                entry.update(mask=None, overlay=None)
            return Segmentation(entry, item.image, item.source, mask, overlay, self.classes)
        return Classification(entry, item.image, item.source)

    # ------------------------------------------------------------------ evaluate, export

    def evaluate(self, overrides: Overrides = None) -> dict[str, Any]:
        """The checkpoint scored on its task's validation set: ``cvtool eval --json``'s object.
        ``overrides`` change the checkpoint's config (``{"data.root": "DIR"}``), as ``--set`` does."""
        return evaluate_checkpoint(self.path, overrides, self.device, ckpt=self.checkpoint("eval"))

    def export(self, format: str = "onnx", out: str | Path | None = None, **options: Any) -> Path:
        """Write the model as ONNX or TorchScript (checked against the checkpoint first); the
        model file's path. Options are ``cvtool export``'s: opset, dynamic_batch, image_size
        ((H, W), N or "H,W"), half, check."""
        return Path(self.export_report(format, out, **options)["model"])

    def export_report(self, format: str = "onnx", out: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """``cvtool export --json``'s object (raises exporter.Mismatch, an InputError, when the check fails)."""
        self.checkpoint("export")
        return export_checkpoint(self.path, format, out, **options)

    def checkpoint(self, what: str) -> dict[str, Any]:
        if self._ckpt is None:
            raise InputError(f"{self.path} is an exported model; cvtool {what} takes the checkpoint (.pt) "
                             "it was exported from")
        return self._ckpt


def evaluate_checkpoint(path: Path, overrides: Overrides = None, device: str | None = None,
                        ckpt: dict[str, Any] | None = None) -> dict[str, Any]:
    """``cvtool eval``: the checkpoint at ``path`` scored on its task's validation set, as training scores it."""
    from cvtool.engine import checkpoint, evaluation, placement, runtime, threads

    ckpt = ckpt if ckpt is not None else checkpoint.load(path)
    spec = registry.get(ckpt["task"])
    if spec.build is None:
        raise InputError(f"checkpoint {path} is from {spec.command}, which has no validation set")
    cfg = load_config(spec.config, None, overrides, {"train.device": device}, base=ckpt["config"],
                      settings=spec.eval_settings)
    dev = runtime.select_device(cfg.train.device)
    cfg.train.channels_last = placement.channels_last_for(cfg.train.channels_last, dev, spec.family)
    threads.start(cfg.train.threads, cfg.data.num_workers)
    runtime.seed_everything(cfg.train.seed)
    task = spec.build(cfg)
    trained_on = ckpt.get("metadata", {}).get("classes")
    found = task.metadata.get("classes")
    if trained_on is not None and found not in (None, trained_on):
        raise InputError(f"{cfg.data.root} has other classes ({few(found)}) than checkpoint {path} "
                         f"was trained on ({few(trained_on)})")
    if len(task.val_data) == 0:
        raise InputError(f"{spec.command}'s validation set is empty with this config (data.root {cfg.data.root}); "
                         f"a run on every labelled image has nothing left to score")
    checkpoint.load_weights(task.model, ckpt, path)
    metrics = evaluation.score(task, dev)
    return {"task": spec.command, "checkpoint": str(path), "epoch": ckpt.get("epoch"), "data_root": str(cfg.data.root),
            "items": len(task.val_data), "device": str(dev), "metrics": metrics}


def export_checkpoint(path: Path, format: str = "onnx", out: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """``cvtool export``: the checkpoint at ``path`` as a checked ONNX or TorchScript model; the
    export's report. ``options`` are the command's (opset, dynamic_batch, image_size, half, check)."""
    from cvtool.export import exporter

    fields = [f.name for f in dataclasses.fields(exporter.Request) if f.name not in ("checkpoint", "format", "out")]
    for name in options:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            raise InputError(f"unknown export option {name!r}" + (f"; did you mean {close[0]!r}?" if close
                             else f"; known: {', '.join(fields)}"))
    size = options.get("image_size")
    if isinstance(size, (str, int)):
        options["image_size"] = exporter.parse_size(str(size))
    elif size is not None:
        options["image_size"] = tuple(int(v) for v in size)
    request = exporter.Request(checkpoint=Path(path), format=str(format).lower(),
                               out=Path(out) if out is not None else None, **options)
    return exporter.export(request)


def few(names: list[Any], shown: int = 4) -> str:
    """A class list short enough for one line of an error."""
    head = ", ".join(map(str, names[:shown]))
    return f"{len(names)}: {head}, ..." if len(names) > shown else head


def load(path: str | Path, *, device: str | None = None) -> Model:
    """A ``.pt`` checkpoint a train command wrote, or an ``.onnx`` / ``.torchscript`` model
    ``cvtool export`` wrote (its ``.json`` beside it). ``device``: auto | cpu | cuda | cuda:N | mps."""
    from cvtool.engine import checkpoint
    from cvtool.export import predict as exported

    path = Path(path)
    if exported.is_export(path):
        loaded = exported.load(path, device or "auto")
        return Model(path, loaded.spec, loaded.config, loaded.metadata, device, None, loaded)
    ckpt = checkpoint.load(path)
    spec = registry.get(ckpt["task"])
    if spec.predict is None or spec.build_model is None:
        raise InputError(f"checkpoint {path} is from {spec.command}, which has no predict")
    return Model(path, spec, cfglib.from_dict(spec.config, ckpt["config"]), ckpt.get("metadata", {}), device, ckpt)

