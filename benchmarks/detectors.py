"""TinySSD (train-ssd) against Faster R-CNN (train-rcnn) on the same synthetic detection data.

    PYTHONPATH=. python benchmarks/detectors.py                    # bananas at 96 px, 4 epochs each
    PYTHONPATH=. python benchmarks/detectors.py --data voc --json detectors.json
    PYTHONPATH=. python benchmarks/detectors.py --quick            # smoke test: tiny sizes, 2 steps

Both detectors start from random weights (``model.weights: none``, ``weights_backbone:
none``; TinySSD has no pretrained weights) and train for the same number of epochs on the
same images, written first in the real on-disk layout by the data's own ``synthesize``.
Each runs through the command's own task and trainer (cvtool.engine.run.train), so what is
measured is what ``cvtool train-ssd`` / ``train-rcnn`` do with the demo configs
(configs/demo/ssd.yaml, configs/demo/rcnn.yaml) at this script's sizes and epochs.

Columns: val mAP@0.5 and mAP@[.5:.95] (the project's COCO metric, the same for both),
training images/s (the trainer's own figure, mean over epochs), inference ms/image
(the best checkpoint's detector on validation images one at a time, after a warm-up).
The record names the CPU, cores, torch threads, load average and date: on a shared
machine the timings say little, so run it on an idle one.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DEMOS = {"train-ssd": REPO / "configs" / "demo" / "ssd.yaml", "train-rcnn": REPO / "configs" / "demo" / "rcnn.yaml"}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("bananas", "voc"), default="bananas", help="synthetic data set to write")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=100)
    p.add_argument("--size", type=int, default=96, help="image side, written and trained at")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=None, help="batches per epoch at most (both detectors)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--timed", type=int, default=20, help="validation images timed for inference")
    p.add_argument("--quick", action="store_true", help="tiny sizes: 8/4 images of 64 px, 1 epoch of 2 steps")
    p.add_argument("--json", type=Path, help="also write the record here")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_val, args.size, args.epochs, args.max_steps, args.timed = 8, 4, 64, 1, 2, 2
    return args


def write_data(kind: str, folder: Path, args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The data set and its class names (VOC: the first 3 VOC classes)."""
    if kind == "bananas":
        from cvtool.data.bananas import synthesize

        return synthesize(folder / "banana-detection", n_train=args.n_train, n_val=args.n_val, size=args.size), [
            "banana"]
    from cvtool.data.voc_detection import CLASSES
    from cvtool.data.voc_detection_synth import synthesize_voc_detection

    root = synthesize_voc_detection(folder / "VOCdevkit", n_train=args.n_train, n_val=args.n_val, size=args.size,
                                    classes=3, seed=0)
    return root, list(CLASSES[:3])


def config(command: str, root: Path, classes: list[str], args: argparse.Namespace) -> Any:
    from cvtool import config as cfglib
    from cvtool.tasks import registry

    sets = {"data.root": str(root), "data.download": False, "data.image_size": args.size,
            "data.classes": "[" + ",".join(classes) + "]", "model.num_classes": len(classes),
            "data.num_workers": 0, "train.epochs": args.epochs, "train.device": "cpu"}
    if args.max_steps is not None:
        sets["train.max_steps"] = args.max_steps
    if command == "train-rcnn":
        sets.update({"model.weights": "none", "model.weights_backbone": "none"})
    return cfglib.load(registry.get(command).config, DEMOS[command], [f"{k}={v}" for k, v in sets.items()])


def measure(command: str, cfg: Any, out: Path, timed: int) -> dict[str, Any]:
    """Train ``command`` and score it: the trainer's metrics and an inference timing."""
    from cvtool.engine import checkpoint
    from cvtool.engine.run import train
    from cvtool.tasks import registry

    spec = registry.get(command)
    result = train(command, spec.build, cfg, out=str(out), argv=[command], stream=io.StringIO())
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    with open(out / "summary.json") as f:
        final = json.load(f)["final"]
    speeds = [float(r["images_per_second"]) for r in rows if r.get("images_per_second")]
    task = spec.build(cfg)
    task.model.load_state_dict(checkpoint.load(out / "checkpoints" / "best.pt")["model"])
    return {"command": command, "status": result.summary["status"], "val_map50": final["val_map50"],
            "val_map": final["val_map"], "train_images_per_second": sum(speeds) / len(speeds) if speeds else None,
            "inference_ms_per_image": inference_ms(command, task, timed),
            "parameters": sum(p.numel() for p in task.model.parameters())}


@torch.no_grad()
def inference_ms(command: str, task: Any, count: int) -> float:
    """The command's own detector (the one predict uses) on one validation image at a time."""
    from cvtool.tasks import rcnn, ssd

    size = task.config.data.image_size
    detector = ssd.make_detector(task.config.detect, size) if command == "train-ssd" else rcnn.make_detector(size)
    model = task.model.eval()
    images = [task.val_data[i]["image"] for i in range(min(count, len(task.val_data)))]
    device = torch.device("cpu")
    detector(model, images[:1], device)  # warm-up
    start = time.perf_counter()
    for image in images:
        detector(model, [image], device)
    return (time.perf_counter() - start) * 1000 / len(images)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    record: dict[str, Any] = {"machine": machine(), "data": args.data, "quick": args.quick, "epochs": args.epochs,
                              "n_train": args.n_train, "n_val": args.n_val, "size": args.size,
                              "weights": "random init for both", "rows": []}
    with tempfile.TemporaryDirectory(prefix="cvtool-detectors-") as tmp:
        root, classes = write_data(args.data, Path(tmp), args)
        for command in DEMOS:
            torch.manual_seed(0)
            row = measure(command, config(command, root, classes, args), Path(tmp) / command, args.timed)
            record["rows"].append(row)
    record["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print_table(record)
    if args.json is not None:
        from cvtool.files import json_text

        args.json.write_text(json_text(record, indent=2) + "\n")
    return 0


def print_table(record: dict[str, Any]) -> None:
    m = record["machine"]
    print(f"{record['data']} at {record['size']} px, {record['n_train']} train / {record['n_val']} val images, "
          f"{record['epochs']} epoch(s), {record['weights']}; {m['cpu']}, {m['cores']} cores, "
          f"{m['torch_threads']} torch threads, load {m['load_average']}, {m['date']}")
    print(f"{'detector':<12} {'mAP@0.5':>8} {'mAP':>7} {'train img/s':>12} {'infer ms/img':>13} {'params':>10}")
    for r in record["rows"]:
        speed = r["train_images_per_second"]
        print(f"{r['command']:<12} {r['val_map50']:>8.3f} {r['val_map']:>7.3f} "
              f"{speed if speed is not None else float('nan'):>12.1f} {r['inference_ms_per_image']:>13.1f} "
              f"{r['parameters']:>10,}")


if __name__ == "__main__":
    sys.exit(main())
