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
from cvtool.inputs import Staged, check_video_options, expand_images, is_video, staged
from cvtool.resolve import Gates, Overrides, enforce, gate_list
from cvtool.results import Classification, Detections, Result, Segmentation, Stylized, read_mask
from cvtool.tasks import registry
from cvtool.tasks.registry import TaskSpec

PREDICT_OPTIONS = ("threshold", "out", "overwrite", "preserve_color")  # Model.predict's; predict_files takes more


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

    def predict_files(self, paths: list[Path], *, out: str | Path | None = None, threshold: float | None = None,
                      kaggle_test: str | Path | None = None, overwrite: bool = False, every: int | None = None,
                      smooth: float | None = None, preserve_color: bool = False, reporter: Any = None) -> list[dict[str, Any]]:
        """``cvtool predict``'s entries for image files (a folder: its images) and videos, the options
        checked as the CLI checks them; ``reporter`` shows a video's progress."""
        from cvtool.data.video import is_video
        from cvtool.engine.progress import Reporter
        from cvtool.tasks import outputs
        from cvtool.tasks.video import plan as video_plan, predict_video

        if not paths and kaggle_test is None:
            raise InputError("give at least one IMAGE (or --kaggle-test DIR)")
        if kaggle_test is not None:
            self.check_option("kaggle_test")
            if not Path(kaggle_test).is_dir():
                raise InputError(f"--kaggle-test {kaggle_test} is not a folder")
            outputs.refuse_existing([Path(out or ".") / "submission.csv"], overwrite)
        for option, value in (("threshold", threshold), ("smooth", smooth), ("preserve_color", preserve_color or None)):
            if value is not None:
                self.check_option(option)
        files = expand_images([Path(p) for p in paths])
        videos, images = [p for p in files if is_video(p)], [p for p in files if not is_video(p)]
        check_video_options(videos, every, smooth)
        options = {k: v for k, v in {"out": out, "threshold": threshold, "kaggle_test": kaggle_test,
                                     "overwrite": overwrite or None, "preserve_color": preserve_color or None,
                                     }.items() if v is not None}
        clips = [video_plan(self._spec, clip, Path(out or "."), overwrite) for clip in videos]  # refused before any work
        net, dev = self.network()
        results = self._spec.predict(net, self._cfg, self.metadata, images, dev, options) if images or kaggle_test else []
        for planned in clips:
            results.append(predict_video(self._spec, net, self._cfg, self.metadata, planned, dev, options, every or 1,
                                         smooth, reporter or Reporter(quiet=True)))
        return results

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
        written = self.family not in ("segment", "style") or options.get("out") is not None
        with staged(images) as (inputs, private):  # a segmenter or style network without ``out`` writes privately
            videos = [str(i.path) for i in inputs if is_video(i.path)]
            if videos:
                raise InputError(f"{videos[0]} is a video; Model.predict_files runs videos (writing them to out)")
            given = options if written else {**options, "out": private / "out"}
            entries = self.predict_files([i.path for i in inputs], **given)
            return [self.result(entry, item, written) for entry, item in zip(entries, inputs)]

    def result(self, entry: dict[str, Any], item: Staged, written: bool = True) -> Result:
        """``entry`` as a result object; ``written`` False: its mask files are private (read, then not named)."""
        entry = {**entry, "image": item.source}
        if self.family == "detect":
            return Detections(entry, item.image, item.source, self.classes)
        from PIL import Image

        if self.family == "style":
            with Image.open(entry["styled"]) as picture:
                styled = picture.convert("RGB")
            if not written:
                entry.update(styled=None)
            return Stylized(entry, item.image, item.source, styled)
        if self.family == "segment":
            with Image.open(entry["overlay"]) as picture:
                overlay = picture.convert("RGB")
            mask = read_mask(Path(entry["mask"]))
            if not written:
                entry.update(mask=None, overlay=None)
            return Segmentation(entry, item.image, item.source, mask, overlay, self.classes)
        return Classification(entry, item.image, item.source)

    # ------------------------------------------------------------------ evaluate, export

    def evaluate(self, overrides: Overrides = None, *, out: str | Path | None = None, counts: bool = False,
                 fail_under: Gates = None, fail_over: Gates = None) -> dict[str, Any]:
        """Scored on the task's validation set: ``cvtool eval --json``'s object. ``overrides`` change
        the model's config ({"data.root": "DIR"}) as ``--set`` does; ``fail_under``/``fail_over``
        ({"val_acc": 0.9}) raise GateFailed (carrying the result) as ``--fail-under``/``--fail-over`` exit 4;
        ``out`` and ``counts`` are ``cvtool eval``'s (where its confusion matrix or PR curves go)."""
        result = evaluate_path(self.path, overrides, self.device, gate_list(fail_under, fail_over), out, counts)
        enforce(result["gates"], result)
        return result

    def export(self, format: str = "onnx", out: str | Path | None = None, **options: Any) -> Path:
        """Write the model as ONNX or TorchScript (checked against the checkpoint first); the
        model file's path. Options are ``cvtool export``'s: opset, dynamic_batch, image_size
        ((H, W), N or "H,W"), half, check, check_metric, max_drop, overrides, int8, calib_images."""
        return Path(self.export_report(format, out, **options)["model"])

    def export_report(self, format: str = "onnx", out: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """``cvtool export --json``'s object (raises exporter.Mismatch when the export's answers differ,
        GateFailed, carrying the report, when ``check_metric``'s scores drop past ``max_drop``)."""
        self.checkpoint("export")
        result = export_checkpoint(self.path, format, out, **options)
        enforce_export(result)
        return result

    def benchmark(self, formats: str | list[str] = "pytorch,torchscript,onnx,onnx-int8", batches: str | list[int] = "1,8",
                  max_drop: Gates = None, overrides: Overrides = None) -> dict[str, Any]:
        """``cvtool benchmark --json``'s object: each format timed on the CPU and scored (checkpoints only)."""
        self.checkpoint("benchmark")
        return benchmark_checkpoint(self.path, formats, batches, max_drop, overrides)

    def checkpoint(self, what: str) -> dict[str, Any]:
        if self._ckpt is None:
            raise InputError(f"{self.path} is an exported model; cvtool {what} takes the checkpoint (.pt) "
                             "it was exported from")
        return self._ckpt


def evaluate_path(path: Path, overrides: Overrides = None, device: str | None = None, gates: list[Any] = (),
                  out: str | Path | None = None, counts: bool = False) -> dict[str, Any]:
    """``cvtool eval``'s object for a checkpoint or an export: its task's validation metrics, as
    training scores them, its confusion matrix or PR curves (drawn into ``out``, by default the
    run directory) and the ``gates`` records (not enforced here)."""
    from cvtool import gates as gating
    from cvtool import metrics
    from cvtool.export import scoring

    result = scoring.score(Path(path), overrides, device, Path(out) if out is not None else None, counts)
    metrics.require_known(gates, result["metrics"], result["task"])
    result["gates"] = gating.check(gates, result["metrics"])
    return result


def export_checkpoint(path: Path, format: str = "onnx", out: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """``cvtool export``: the checkpoint at ``path`` as a checked ONNX or TorchScript model; the export's
    report. ``options`` are the command's: opset, dynamic_batch, image_size, half, check, check_metric,
    max_drop ({"val_acc": 0.02} or ["val_acc=0.02"]), overrides, int8, calib_images. A metric gate
    that failed is in ``metric_parity`` (``enforce_export`` raises it)."""
    from cvtool.export import exporter, quantize

    fields = [f.name for f in dataclasses.fields(exporter.Request) if f.name not in ("checkpoint", "format", "out")]
    for name in options:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            raise InputError(f"unknown export option {name!r}" + (f"; did you mean {close[0]!r}?" if close
                             else f"; known: {', '.join(fields)}"))
    given = {k: v for k, v in options.items() if v is not None}
    if "calib_images" in given and not given.get("int8"):
        raise InputError("--calib-images is for --int8 (the images INT8 quantization is calibrated on)")
    size = given.get("image_size")
    if isinstance(size, (str, int)):
        given["image_size"] = exporter.parse_size(str(size))
    elif size is not None:
        given["image_size"] = tuple(int(v) for v in size)
    if isinstance(given.get("max_drop"), dict):
        given["max_drop"] = [f"{k}={v}" for k, v in given["max_drop"].items()]
    given.setdefault("calib_images", quantize.DEFAULT_IMAGES)
    request = exporter.Request(checkpoint=Path(path), format=str(format).lower(),
                               out=Path(out) if out is not None else None, **given)
    return exporter.export(request)


def benchmark_checkpoint(path: Path, formats: str | list[str] = "pytorch,torchscript,onnx,onnx-int8",
                         batches: str | list[int] = "1,8", max_drop: Gates = None, overrides: Overrides = None,
                         warmup: int = 3, repeats: int = 15) -> dict[str, Any]:
    """``cvtool benchmark``: the checkpoint's formats (exported where missing) timed on the CPU and scored
    on the validation set; the fastest within ``max_drop`` is marked."""
    from cvtool.export import bench

    drops = [f"{k}={v}" for k, v in max_drop.items()] if isinstance(max_drop, dict) else list(max_drop or [])
    return bench.benchmark(Path(path), bench.parse_formats(formats if isinstance(formats, str) else ",".join(formats)),
                           bench.parse_batches(batches if isinstance(batches, str) else ",".join(map(str, batches))),
                           drops, overrides or [], warmup=warmup, repeats=repeats)


def enforce_export(result: dict[str, Any]) -> None:
    """GateFailed (exit 4, the export kept) when ``--check-metric``'s scoring dropped past ``max_drop``."""
    from cvtool.errors import GateFailed

    metric = result.get("metric_parity")
    if metric is not None and not metric["ok"]:
        failed = "; ".join(r["message"] for r in metric["gates"] if not r["passed"])
        error = GateFailed(f"{failed}; the export is kept at {result['model']}")
        error.result = result
        raise error


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

