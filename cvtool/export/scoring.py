"""``cvtool eval`` on a checkpoint or an export: the task's own validation set and evaluate.

An export is scored through the adapters ``cvtool predict`` uses (``export/predict.py``):
the task builds its validation data from the config in the export's JSON (the size the
graph was written at) and its own ``evaluate`` runs with the adapter in place of the
network, so the keys and the arithmetic are the checkpoint's. Metrics the graph's outputs
cannot give (a loss needs the raw class scores, which FCN's argmax and TinySSD's
post-NMS detections no longer hold) are left out and named in ``not_scored``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cvtool import config as cfglib
from cvtool.engine import checkpoint, eval_report, evaluation, placement, runtime, threads
from cvtool.engine.task import Task
from cvtool.errors import InputError
from cvtool.export import predict
from cvtool.export import runtime as export_runtime
from cvtool.resolve import Overrides, split_overrides
from cvtool.tasks import registry
from cvtool.tasks.registry import TaskSpec

# what each adapter's outputs cannot reproduce, by registry family (per-image R-CNN graphs give all)
NOT_SCORED = {
    "segment": {"val_loss": "the graph returns argmax classes, not the per-pixel scores the loss needs"},
    "detect": {key: "the graph returns detections after NMS, not the per-anchor heads this needs"
               for key in ("val_loss", "val_class_err", "val_bbox_mae")},
}


def build_task(spec: TaskSpec, base: dict[str, Any], overrides: Overrides, device: str | None,
               classes: list[Any] | None, where: Path) -> tuple[Task, Any]:
    """The task's validation side, configured as ``cvtool eval`` configures it."""
    if spec.build is None:
        raise InputError(f"{where} is from {spec.command}, which has no validation set")
    sets, typed = split_overrides(overrides)  # --set texts, or the API's {"data.root": DIR}
    values = {**typed, **spec.eval_settings, **({"train.device": device} if device is not None else {})}
    cfg = cfglib.load(spec.config, None, sets, values=values, base=base)
    dev = runtime.select_device(cfg.train.device)
    cfg.train.channels_last = placement.channels_last_for(cfg.train.channels_last, dev, spec.family)
    threads.start(cfg.train.threads, cfg.data.num_workers)
    runtime.seed_everything(cfg.train.seed)
    task = spec.build(cfg)
    found = task.metadata.get("classes")
    if classes is not None and found not in (None, classes):
        raise InputError(f"{cfg.data.root} has other classes ({few(found)}) than {where} "
                         f"was trained on ({few(classes)})")
    if len(task.val_data) == 0:
        raise InputError(f"{spec.command}'s validation set is empty with this config (data.root {cfg.data.root}); "
                         f"a run on every labelled image has nothing left to score")
    return task, dev


def few(names: list[Any], shown: int = 4) -> str:
    """A class list short enough for one line of an error."""
    head = ", ".join(map(str, names[:shown]))
    return f"{len(names)}: {head}, ..." if len(names) > shown else head


def score(path: Path, overrides: Overrides, device: str | None = None, out: Path | None = None,
          counts: bool = False) -> dict[str, Any]:
    """``cvtool eval``'s result for a checkpoint or an exported model (.onnx, .torchscript), with
    its confusion matrix or PR curves drawn into ``out`` (by default the checkpoint's run
    directory, or the export's folder) and their numbers in the result."""
    details: dict[str, Any] = {}
    result = (score_export if predict.is_export(path) else score_checkpoint)(path, overrides, device, details)
    numbers, files = eval_report.write(details, result.pop("classes"), out or run_dir_of(path), counts)
    result.update(numbers)
    if files:
        result["pictures"] = files
    return result


def run_dir_of(path: Path) -> Path:
    """A checkpoint's run directory (``RUN/checkpoints/best.pt``), or the file's own folder."""
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def score_checkpoint(path: Path, overrides: Overrides, device: str | None = None,
                     details: dict[str, Any] | None = None) -> dict[str, Any]:
    ckpt = checkpoint.load(path)
    spec = registry.get(ckpt["task"])
    task, dev = build_task(spec, ckpt["config"], overrides, device, ckpt.get("metadata", {}).get("classes"), path)
    try:
        task.model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"checkpoint {path} does not fit {spec.command}'s model: {checkpoint.mismatch(exc)}") from None
    return _result(spec, path, ckpt.get("epoch"), task, dev, evaluation.score(task, dev, details=details))


def score_export(path: Path, overrides: Overrides, device: str | None = None,
                 details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The export in place of the network; one image a batch where the graph or its adapter needs it."""
    meta = export_runtime.read_meta(path)
    spec = registry.get(meta["task"])
    task, dev = build_task(spec, meta["config"], overrides, device, meta.get("metadata", {}).get("classes"), path)
    task.model = predict.load(path, str(dev)).model
    per_image = meta.get("per_image") or not meta.get("dynamic_batch", True)
    batch = 1 if per_image or spec.family == "detect" else None
    skipped = {} if meta.get("per_image") else NOT_SCORED.get(spec.family, {})
    scored = evaluation.score(task, dev, batch_size=batch, details=details)
    metrics = {k: v for k, v in scored.items() if k not in skipped}
    result = _result(spec, path, meta.get("checkpoint", {}).get("epoch"), task, dev, metrics)
    result.update(format=meta.get("model_format"), int8=meta.get("int8") is not None,
                  not_scored=dict(skipped))
    return result


def _result(spec: TaskSpec, path: Path, epoch: Any, task: Task, dev: Any, metrics: dict[str, float]) -> dict[str, Any]:
    return {"task": spec.command, "checkpoint": str(path), "epoch": epoch, "data_root": str(task.config.data.root),
            "items": len(task.val_data), "device": str(dev), "best_metric": task.best_metric, "metrics": metrics,
            "classes": task.metadata.get("classes")}
