"""Milliseconds per image on this CPU: eager PyTorch against its TorchScript and ONNX Runtime exports.

    PYTHONPATH=. python benchmarks/export.py [--tasks train-ssd,train-fcn] [--batch 1] [--repeat 20] [--quick]

Each task's network at its default config (random weights: speed does not depend on what
they mean) is wrapped as `cvtool export` wraps it, written in both formats, and the
three are timed on the same input batch in one process. Ratios are eager / export, so
above 1 means the export is faster. --quick shrinks every model and size so the script
runs in a minute (its numbers then mean nothing); --json FILE writes the rows.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from cvtool import config as cfglib
from cvtool.export import graphs, runtime, writer
from cvtool.files import json_text
from cvtool.tasks import registry

TASKS = ("finetune-hotdog", "train-ssd", "train-rcnn", "train-fcn", "train-cifar", "train-dog")
QUICK = {
    "finetune-hotdog": {"data": {"image_size": 32, "resize": 36}},
    "train-ssd": {"data": {"image_size": 64}, "model": {"width": 0.25}},
    "train-rcnn": {"data": {"image_size": 64}, "model": {"rpn_proposals_test": 16}},
    "train-fcn": {"data": {"crop_size": [32, 48]}, "model": {"width": 8, "num_classes": 4}},
    "train-cifar": {"model": {"width": 4}},
    "train-dog": {"data": {"image_size": 32, "resize": 36}, "model": {"hidden": 8, "num_classes": 3}},
}
# The book datasets' class counts: without data at hand, model.num_classes: auto has nothing to count.
BOOK_CLASSES = {"finetune-hotdog": 2, "train-ssd": 1, "train-rcnn": 1, "train-fcn": 21, "train-cifar": 10, "train-dog": 120}


def median_ms(fn: Callable[[], Any], warmup: int, repeat: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def graph_for(command: str, quick: bool) -> graphs.Graph:
    spec = registry.get(command)
    items = copy.deepcopy(QUICK[command]) if quick else {}
    items.setdefault("model", {}).setdefault("num_classes", BOOK_CLASSES[command])
    cfg = cfglib.from_dict(spec.config, items)
    net = spec.build_model(cfg).eval()
    classes = [str(k) for k in range(cfg.model.num_classes)]
    return graphs.build(spec, net, cfg, classes, graphs.default_size(spec, cfg), half=False)


def measure(command: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    graph = graph_for(command, args.quick)
    batch = 1 if graph.per_image else args.batch  # Faster R-CNN's ONNX graph takes one image
    x = torch.rand(batch, 3, *graph.size, generator=torch.Generator().manual_seed(0))
    onnx_path, ts_path = folder / f"{command}.onnx", folder / f"{command}.torchscript"
    writer.write_onnx(graph, onnx_path, writer.DEFAULT_OPSET, dynamic_batch=True)
    writer.write_torchscript(graph, ts_path)
    runners = {"eager": graph.module, "torchscript": runtime.Runner(ts_path, "torchscript"),
               "onnxruntime": runtime.Runner(onnx_path, "onnx")}
    row: dict[str, Any] = {"task": command, "size": list(graph.size), "batch": batch}
    with torch.no_grad():
        for name, run in runners.items():
            row[f"{name}_ms"] = median_ms(lambda: run(x), args.warmup, args.repeat) / batch
    row["ratio_torchscript"] = row["eager_ms"] / row["torchscript_ms"]
    row["ratio_onnxruntime"] = row["eager_ms"] / row["onnxruntime_ms"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads")
    parser.add_argument("--quick", action="store_true", help="tiny models and sizes: a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.repeat = 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        print(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}", file=sys.stderr)
        return 2
    rows, failed = [], []
    print(f"ms/image, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}"
          f"{' (quick: tiny models, numbers mean nothing)' if args.quick else ''}")
    print(f"{'task':<16} {'size':>9} {'eager':>9} {'torchscript':>12} {'onnxruntime':>12} {'eager/ts':>9} "
          f"{'eager/ort':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for command in chosen:
            try:
                row = measure(command, args, Path(folder))
            except Exception as exc:  # noqa: BLE001 - one task failing must not hide the others
                failed.append({"task": command, "error": f"{type(exc).__name__}: {exc}"})
                print(f"{command:<16} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            rows.append(row)
            size = "x".join(map(str, row["size"]))
            print(f"{command:<16} {size:>9} {row['eager_ms']:>9.2f} {row['torchscript_ms']:>12.2f} "
                  f"{row['onnxruntime_ms']:>12.2f} {row['ratio_torchscript']:>9.2f} {row['ratio_onnxruntime']:>10.2f}")
    if args.json:
        args.json.write_text(json_text({"quick": args.quick, "rows": rows, "failed": failed}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
