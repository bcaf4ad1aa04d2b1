"""Milliseconds per image on this CPU: eager PyTorch against its TorchScript, ONNX Runtime and INT8 exports.

    PYTHONPATH=. python benchmarks/export.py [--tasks train-ssd,train-fcn] [--batch 1,8] [--repeat 15] [--quick]

Each task's network at its default config (random weights) is wrapped as `cvtool export`
wraps it, written in every format and timed on the same input batch in one process, the
repeats interleaved (cvtool/export/bench.py, which `cvtool benchmark` uses too). The INT8
model is quantized as `--int8` quantizes, calibrated on 16 random images. Random weights
time the networks fairly, but not TinySSD's NMS: a random detector scores every anchor
above the minimum, so NMS runs on all of them (a trained one keeps a few); time a trained
TinySSD with `cvtool benchmark`. Ratios are eager / export, so above 1 means the export is
faster. --quick shrinks every model and size so the script runs in a minute (its numbers
then mean nothing); --json FILE writes the rows and the machine record.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from cvtool import config as cfglib
from cvtool.export import bench, graphs, quantize, runtime, writer
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


def graph_for(command: str, quick: bool) -> graphs.Graph:
    spec = registry.get(command)
    items = copy.deepcopy(QUICK[command]) if quick else {}
    items.setdefault("model", {}).setdefault("num_classes", BOOK_CLASSES[command])
    cfg = cfglib.from_dict(spec.config, items)
    net = spec.build_model(cfg).eval()
    classes = [str(k) for k in range(cfg.model.num_classes)]
    return graphs.build(spec, net, cfg, classes, graphs.default_size(spec, cfg), half=False)


def measure(command: str, args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    graph = graph_for(command, args.quick)
    batches = [1] if graph.per_image else args.batches  # Faster R-CNN's ONNX graph takes one image
    onnx_path, ts_path = folder / f"{command}.onnx", folder / f"{command}.torchscript"
    writer.write_onnx(graph, onnx_path, writer.DEFAULT_OPSET, dynamic_batch=True)
    writer.write_torchscript(graph, ts_path)
    runners = {"eager": graph.module, "torchscript": runtime.Runner(ts_path, "torchscript"),
               "onnxruntime": runtime.Runner(onnx_path, "onnx")}
    if not graph.per_image:  # R-CNN has no INT8 export
        int8_path = folder / f"{command}.int8.onnx"
        gen = torch.Generator().manual_seed(0)
        quantize.quantize_with(onnx_path, int8_path, [torch.rand(3, *graph.size, generator=gen) for _ in range(16)])
        runners["int8"] = runtime.Runner(int8_path, "onnx")
    timed = bench.latency(runners, graph.size, batches, args.warmup, args.repeat)
    rows = []
    for batch in batches:
        row: dict[str, Any] = {"task": command, "size": list(graph.size), "batch": batch}
        for name in runners:
            row[f"{name}_ms"] = timed[name][batch]
        for name in list(runners)[1:]:
            row[f"ratio_{name}"] = row["eager_ms"] / row[f"{name}_ms"]
        if "int8" in runners:
            row["int8_over_onnxruntime"] = row["onnxruntime_ms"] / row["int8_ms"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--batch", default="1", help="batch sizes, comma-separated (e.g. 1,8)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads")
    parser.add_argument("--quick", action="store_true", help="tiny models and sizes: a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    args.batches = bench.parse_batches(args.batch)
    if args.quick:
        args.warmup, args.repeat = 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        print(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}", file=sys.stderr)
        return 2
    record = bench.machine()
    rows, failed = [], []
    print(f"ms/image, {torch.get_num_threads()} threads, torch {torch.__version__}"
          f"{' (quick: tiny models, numbers mean nothing)' if args.quick else ''}")
    print(f"{'task':<16} {'size':>9} {'batch':>5} {'eager':>8} {'torchscript':>11} {'onnxruntime':>11} {'int8':>8} "
          f"{'eager/ort':>9} {'ort/int8':>9}")
    with tempfile.TemporaryDirectory() as folder:
        for command in chosen:
            try:
                found = measure(command, args, Path(folder))
            except Exception as exc:  # noqa: BLE001 - one task failing must not hide the others
                failed.append({"task": command, "error": f"{type(exc).__name__}: {exc}"})
                print(f"{command:<16} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            rows += found
            for row in found:
                size = "x".join(map(str, row["size"]))
                int8 = f"{row['int8_ms']:>8.2f}" if "int8_ms" in row else f"{'-':>8}"
                ratio = f"{row['int8_over_onnxruntime']:>9.2f}" if "int8_ms" in row else f"{'-':>9}"
                print(f"{command:<16} {size:>9} {row['batch']:>5} {row['eager_ms']:>8.2f} {row['torchscript_ms']:>11.2f} "
                      f"{row['onnxruntime_ms']:>11.2f} {int8} {row['ratio_onnxruntime']:>9.2f} {ratio}")
    record["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(f"machine: {record['cpu']} ({', '.join(record['cpu_flags'])}), load average before "
          f"{record['load_average'][0]:.2f}, after {record['load_after'][0]:.2f}; {record['date']}")
    if args.json:
        args.json.write_text(json_text({"quick": args.quick, "machine": record, "rows": rows, "failed": failed},
                                        indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
