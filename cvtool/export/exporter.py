"""``cvtool export``: a checkpoint to a checked ONNX or TorchScript model and its JSON."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import cvtool
from cvtool import config as cfglib
from cvtool.engine import checkpoint
from cvtool.errors import CvtoolError, InputError
from cvtool.export import check, graphs, parity, quantize, runtime, writer
from cvtool.files import atomic_write, json_text
from cvtool.tasks import registry
from cvtool.tasks.registry import TaskSpec


class Mismatch(CvtoolError):
    """The export does not give the checkpoint's answers (exit 1); nothing was kept."""

    exit_code = 1

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


@dataclass
class Request:
    checkpoint: Path
    format: str = "onnx"
    out: Path | None = None
    opset: int | None = None
    dynamic_batch: bool = True
    image_size: tuple[int, int] | None = None
    half: bool = False
    check: bool = True
    check_metric: bool = False
    max_drop: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # config changes for the scoring and --int8 calibration
    int8: bool = False
    calib_images: int = quantize.DEFAULT_IMAGES


def parse_size(text: str) -> tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        h, w = (int(p) for p in parts) if len(parts) == 2 else (int(parts[0]),) * 2
    except ValueError:
        raise InputError(f"--image-size must be H,W (or one number), got {text!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"--image-size must be positive, got {text!r}")
    return h, w


def refuse_stylize(path: Path) -> None:
    """A stylize run optimises an image, not a network: say so rather than "not a checkpoint"."""
    folder = path if path.is_dir() else path.parent
    for spec in registry.specs():
        if spec.family != "stylize":
            continue
        try:
            cfglib.load(spec.config, folder / "config.yaml")
        except CvtoolError:
            continue
        raise InputError(f"{path} is a {spec.command} run: {spec.command} has no network to export "
                         f"(it optimises an image)")
    if path.is_dir():
        raise InputError(f"--checkpoint {path} is a folder; give a checkpoint file, e.g. {path}/checkpoints/best.pt")


def class_names(spec: TaskSpec, cfg: Any, metadata: dict[str, Any]) -> list[str]:
    if spec.family == "style":  # pictures in, pictures out: no classes
        return []
    if metadata.get("classes"):
        return [str(c) for c in metadata["classes"]]
    if getattr(cfg.data, "classes", None):
        return [str(c) for c in cfg.data.classes]
    names = getattr(graphs.task_module(spec), "class_names", None)
    return list(names(cfg.model.num_classes)) if callable(names) else [str(k) for k in range(cfg.model.num_classes)]


def resized_config(spec: TaskSpec, config: dict, metadata: dict, size: tuple[int, int]) -> tuple[dict, dict]:
    """The checkpoint's config and metadata as predict must read them to feed a graph of ``size``
    (checked against the task's config: a size it cannot train at is refused)."""
    config, metadata = copy.deepcopy(config), copy.deepcopy(metadata)
    data = config.setdefault("data", {})
    if spec.family in ("classify", "detect") and "image_size" in data and data["image_size"] != size[0]:
        if "resize" in data:  # keep the test view's resize : crop ratio
            data["resize"] = round(data["resize"] * size[0] / data["image_size"])
        data["image_size"] = size[0]
        if "image_size" in metadata:
            metadata["image_size"] = size[0]
    try:
        cfglib.from_dict(spec.config, config)
    except CvtoolError as exc:
        raise InputError(f"--image-size {size[0]},{size[1]} does not fit {spec.command}: {exc}") from None
    return config, metadata


def targets(req: Request, command: str) -> tuple[Path, Path, bool]:
    """The model and JSON paths, and whether their folder is new (removed again on failure)."""
    folder = req.out
    if folder is None:
        parent = req.checkpoint.resolve().parent
        folder = (parent.parent if parent.name == "checkpoints" else parent) / "export"
    model = folder / f"{command}{'.int8' if req.int8 else ''}{writer.EXTENSIONS[req.format]}"
    for path in (model, runtime.meta_path(model)):
        if path.exists():
            raise InputError(f"{path} already exists; remove it or pass another --out DIR")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = writer.temp_name(model)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to --out {folder}: {exc.strerror or exc}") from None
    return model, runtime.meta_path(model), created


def load_graph(req: Request) -> tuple[graphs.Graph, dict[str, Any], Any]:
    refuse_stylize(req.checkpoint)
    ckpt = checkpoint.load(req.checkpoint)
    spec = registry.get(ckpt["task"])
    if spec.family not in graphs.EXPORTABLE or spec.build_model is None:
        raise InputError(f"checkpoint {req.checkpoint} is from {spec.command}: {spec.command} has no network to export")
    cfg = cfglib.from_dict(spec.config, ckpt["config"])
    size = req.image_size or graphs.default_size(spec, cfg)
    graphs.check_size(spec, cfg, size)
    resized_config(spec, ckpt["config"], ckpt.get("metadata", {}), size)
    net = spec.build_model(cfg)
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"checkpoint {req.checkpoint} does not fit {spec.command}'s model: "
                         f"{checkpoint.mismatch(exc)}") from None
    classes = class_names(spec, cfg, ckpt.get("metadata", {}))
    return graphs.build(spec, net.eval(), cfg, classes, size, req.half), ckpt, cfg


def dynamic_batch(graph: graphs.Graph, req: Request) -> bool:
    """Whether the written model takes any batch: TorchScript always, ONNX unless --static or per-image."""
    return req.format == "torchscript" or (req.dynamic_batch and not graph.per_image)


def describe(graph: graphs.Graph, req: Request, ckpt: dict[str, Any], opset: int | None,
             model: Path, report: dict[str, Any] | None) -> dict[str, Any]:
    config, metadata = resized_config(registry.get(graph.command), ckpt["config"], ckpt.get("metadata", {}), graph.size)
    h, w = ("height", "width") if graph.dynamic_size else graph.size
    batch = "batch" if dynamic_batch(graph, req) else 1
    return {
        "format": runtime.META_FORMAT, "task": graph.command, "family": graph.family,
        "model_file": model.name, "model_format": req.format, "opset": opset,
        "cvtool_version": cvtool.__version__, "torch_version": torch.__version__,
        "checkpoint": {"path": str(req.checkpoint), "sha256": writer.sha256(req.checkpoint),
                       "epoch": ckpt.get("epoch")},
        "classes": graph.classes,
        "input": {"name": "images", "dtype": "float32", "shape": [batch, 3, h, w],
                  "layout": "NCHW", "colour_order": "RGB", "range": [0, 1], "size": list(graph.size),
                  "mean": graph.mean, "std": graph.std,
                  "normalisation": "inside the graph: (images - mean) / std; feed plain RGB pixels / 255"},
        "outputs": graph.outputs, "dynamic_batch": dynamic_batch(graph, req),
        "dynamic_size": graph.dynamic_size, "per_image": graph.per_image, "half": req.half, "check": report,
        "config": config, "metadata": metadata,
    }


def export(req: Request) -> dict[str, Any]:
    if req.format not in writer.EXTENSIONS:
        raise InputError(f"--format must be onnx or torchscript, got {req.format!r}")
    if req.max_drop and not (req.check_metric or req.int8):
        raise InputError("--max-drop needs --check-metric (or --int8, which always scores the export)")
    opset = writer.check_opset(req.opset, req.format)
    graph, ckpt, cfg = load_graph(req)
    writer.check_graph_opset(graph, opset)
    if req.int8:
        quantize.refuse(graph.command, graph.per_image, req.format, req.half, req.calib_images)
    if req.format == "onnx" and (req.check or req.int8):
        runtime.onnxruntime()  # missing -> exit 3 before anything is written
    baseline, gates = None, []
    if req.check_metric or req.int8:  # the checkpoint's scores first: a bad --max-drop costs no export
        baseline = parity.baseline(req.checkpoint, req.overrides)
        gates = parity.gates(req.max_drop, baseline)
    model, meta, created = targets(req, graph.command)
    tmp_model, tmp_meta = writer.temp_name(model), writer.temp_name(meta)
    try:
        report, int8 = write_checked(graph, req, cfg, ckpt, tmp_model, opset)
        described = describe(graph, req, ckpt, opset, model, report)
        described["int8"] = int8
        tmp_meta.write_text(json_text(described, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_model, model)
        os.replace(tmp_meta, meta)
        metric = None
        if baseline is not None:  # scored as written; kept whatever it scores
            metric = parity.measure(model, baseline, req.overrides, gates)
            atomic_write(meta, json_text({**described, "metric_parity": metric}, indent=2) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write the export to {model.parent}: {exc.strerror or exc}") from None
    finally:
        tmp_model.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
        if created and not model.exists() and not any(model.parent.iterdir()):
            model.parent.rmdir()
    return {"status": "ok", "task": graph.command, "format": req.format, "model": str(model), "meta": str(meta),
            "opset": opset, "size": list(graph.size), "half": req.half, "int8": int8,
            "bytes": model.stat().st_size, "check": report, "metric_parity": metric}


def write_checked(graph: graphs.Graph, req: Request, cfg: Any, ckpt: dict[str, Any], path: Path,
                  opset: int | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The model at ``path`` (quantized with --int8) and its tensor check. An INT8 model cannot
    match fp32 tensors to 1e-4: its check is recorded, and its metrics are the gate."""
    int8 = None
    if req.format == "onnx":
        writer.write_onnx(graph, path, opset, dynamic_batch(graph, req))
        if req.int8:
            fp32 = path.with_name(path.name + ".fp32")
            try:
                os.replace(path, fp32)
                int8 = quantize.quantize(graph, fp32, path, ckpt["config"], req.calib_images, req.overrides)
            finally:
                fp32.unlink(missing_ok=True)
    else:
        writer.write_torchscript(graph, path)
    if not req.check:
        return None, int8
    batch = 3 if dynamic_batch(graph, req) else 1
    loose = req.half or int8 is not None  # INT8 is read at fp16's tolerances, for information
    report = check.verify(graph, runtime.Runner(path, req.format), getattr(cfg.data, "root", None), batch, loose)
    if int8 is not None:
        report["gating"] = False
    elif not report["ok"]:
        raise Mismatch(f"the exported {graph.command} model does not give the checkpoint's answers "
                       f"({summary(report)}); nothing was written", report)
    return report, int8


def summary(report: dict[str, Any] | None) -> str:
    """The parity numbers in one line."""
    if report is None:
        return "not checked (--no-check)"
    head = f"{report['images']} images ({report['source']})"
    if report.get("gating") is False:
        head = f"INT8, for information (the metrics are its gate): {head}"
    if "top1_identical" in report:
        top1 = "identical" if report["top1_identical"] else f"differs on {report['top1_differing']} images"
        return (f"{head}: max |dprob| {report['max_abs_diff']:.2e} (tolerance {report['tolerance']:.0e}), "
                f"top-1 {top1}")
    if "top1_identical" not in report and "max_abs_diff" in report:
        return f"{head}: max |dpixel| {report['max_abs_diff']:.2e} (tolerance {report['tolerance']:.0e})"
    if "masks_identical" in report:
        return (f"{head}: argmax masks {'identical' if report['masks_identical'] else 'differ'} "
                f"({report['pixels_differing']} of {report['pixels']} pixels differ)")
    gap, unmatched = report["max_abs_score_diff"], report["unmatched"]
    scores = (f", max |dscore| {gap:.2e}" if gap is not None
              else f", none with a box within {report['box_tolerance_px']} px" if unmatched else "")
    return (f"{head}: {report['detections']} detections, {unmatched} unmatched{scores} "
            f"(tolerance {report['tolerance']:.0e})")
