"""INT8 against fp32 ONNX Runtime on this CPU: the issue's three networks, trained, at batch 1 and 8.

    PYTHONPATH=. python benchmarks/int8.py [--ckpts /tmp/int8-ckpts] [--repeats 10] [--json FILE]

Trains the three small checkpoints into --ckpts when they are not there yet (synthetic data,
CPU, about six minutes on an idle machine; the commands are printed), then runs
`cvtool benchmark --formats onnx,onnx-int8 --batch 1,8` on each and prints INT8 over fp32
images/s beside the issue's goal, the validation metric of both and the machine record.
Each run's export/ folder is removed first, so both formats are written by the code under test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import benchlib

# (run folder, command, goal ratio, its training arguments); data folders are made by DATA
RUNS = [
    ("hotdog", "finetune-hotdog", 3.5,
     ["--epochs", "3", "--set", "data.root={d}/hotdog", "--set", "model.weights=none", "--set", "data.batch_size=32",
      "--set", "optim.name=adam", "--set", "optim.lr=0.001", "--set", "optim.reference_batch=32",
      "--set", "finetune.head_lr_mult=1"]),
    ("ssd", "train-ssd", 2.5,
     ["--epochs", "6", "--set", "data.root={d}/bananas", "--set", "data.download=false",
      "--set", "loss.normalize=positives", "--set", "loss.iou_threshold=0.3", "--set", "optim.name=adam",
      "--set", "optim.lr=0.004", "--set", "optim.weight_decay=0", "--set", "sched.name=cosine"]),
    ("fcn", "train-fcn", 2.5,
     ["--epochs", "1", "--set", "data.root={d}/voc", "--set", "data.download=false", "--set", "model.weights=none",
      "--set", "model.num_classes=21", "--set", "data.batch_size=8", "--set", "optim.name=adam",
      "--set", "optim.lr=0.002", "--set", "optim.reference_batch=8"]),
]
DATA = {"hotdog": ["hotdog", "--n", "150", "--seed", "1"],
        "bananas": ["bananas", "--n-train", "400", "--n-val", "100", "--seed", "1"],
        "voc": ["voc", "--n-train", "48", "--n-val", "24", "--size", "480", "--seed", "1"]}
COMMON = ["--device", "cpu", "--set", "data.num_workers=0", "--set", "train.seed=0"]


def cvtool(args: list[str], environ: dict[str, str]) -> str:
    print("  cvtool " + " ".join(args), file=sys.stderr, flush=True)
    return benchlib.run(["-m", "cvtool", *args], environ).stdout


def ensure_checkpoints(folder: Path, environ: dict[str, str]) -> None:
    for name, args in DATA.items():
        if not (folder / "data" / name).exists():
            cvtool(["data", "synth", *args[:1], "--out", str(folder / "data" / name), *args[1:]], environ)
    for run, command, _, args in RUNS:
        if not (folder / run / "checkpoints" / "best.pt").exists():
            cvtool([command, *COMMON, "--out", str(folder / run), *[a.format(d=folder / "data") for a in args]],
                   environ)


def measure(folder: Path, repeats: int, environ: dict[str, str]) -> list[dict]:
    rows = []
    for run, command, goal, _ in RUNS:
        shutil.rmtree(folder / run / "export", ignore_errors=True)
        result = json.loads(cvtool(["benchmark", "--checkpoint", str(folder / run / "checkpoints" / "best.pt"),
                                    "--formats", "onnx,onnx-int8", "--batch", "1,8", "--repeats", str(repeats),
                                    "--json"], environ))
        fp32, int8 = result["rows"]
        row = {"task": command, "size": result["size"], "goal": goal, "metric": result["best_metric"],
               "fp32_metric": fp32["metric"], "int8_metric": int8["metric"], "machine": result["machine"],
               "within_max_drop": int8["within_max_drop"]}
        for b in ("1", "8"):
            row[f"fp32_images_per_s_b{b}"] = fp32["images_per_s"][b]
            row[f"int8_images_per_s_b{b}"] = int8["images_per_s"][b]
            row[f"ratio_b{b}"] = int8["images_per_s"][b] / fp32["images_per_s"][b]
        rows.append(row)
        print(f"{command:<16} {'x'.join(map(str, row['size'])):>8} " + "  ".join(
            f"b{b}: fp32 {row[f'fp32_images_per_s_b{b}']:6.1f} int8 {row[f'int8_images_per_s_b{b}']:6.1f} img/s "
            f"= {row[f'ratio_b{b}']:.2f}x" for b in ("1", "8"))
            + f"  (goal {goal}x)  {row['metric']} {row['fp32_metric']:.4f} -> {row['int8_metric']:.4f}"
            f"{'' if row['within_max_drop'] else ' OVER THE GATE'}; load {result['machine']['load_average'][0]:.2f}",
            flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpts", type=Path, default=Path("/tmp/int8-ckpts"), help="checkpoints (made when missing)")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved timed calls per format and batch")
    parser.add_argument("--allow-busy", action="store_true", help="measure even when the load average is "
                        "above the core count (figures for direction only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the record here")
    args = parser.parse_args(argv)
    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy)
    environ = benchlib.env()
    ensure_checkpoints(args.ckpts, environ)
    record["rows"] = measure(args.ckpts, args.repeats, environ)
    cpu = record["rows"][0]["machine"]
    print(f"CPU flags: {', '.join(cpu['cpu_flags'])}; {cpu['threads']} threads; onnxruntime {cpu['onnxruntime']}")
    benchlib.finish(record, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
