"""The book's TinySSD loop vs `cvtool train-ssd` on real data, side by side.

    PYTHONPATH=. python benchmarks/book_ssd.py --pikachu ../shared/realdata/pikachu
    PYTHONPATH=. python benchmarks/book_ssd.py --data data/banana-detection --seeds 0,1
    PYTHONPATH=. python benchmarks/book_ssd.py --quick --allow-busy      # smoke test

For each seed, in turn (so load changes hit every recipe alike): the book's loop written as
the book writes it (benchmarks/book_tinyssd.py: its TinySSD, l.mean(), SGD 0.2, fp32, no
cvtool code), `cvtool train-ssd --config configs/ssd.yaml` (the book's recipe in cvtool) and
`cvtool train-ssd --config configs/ssd-fast.yaml` (ours), each a fresh process on the same
data and seed. Reported per run: the book's metrics (training class error and bbox MAE over the
last epoch), val mAP@0.5 and COCO mAP after the last epoch (pycocotools for the book's loop,
cvtool's own metric for cvtool, which is tested against pycocotools), training images/s (median
epoch after the first, data loading in, validation out) and the process's wall time.

--data takes a folder in the banana layout (bananas_{train,val}/label.csv + images/);
--pikachu takes d2l's Pikachu set ({train,val}/annotations.json + images/, boxes normalised)
and lays it out that way in a temporary folder first: boxes x image size to pixels, the RGBA
PNGs linked unchanged (cvtool reads them as RGB).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import benchlib

RECIPES = {"cvtool": "configs/ssd.yaml", "fast": "configs/ssd-fast.yaml"}
RUN_TIMEOUT = 4 * 3600  # the book's 20 epochs take 23 min idle, over an hour beside other work


def lay_out_pikachu(src: Path, dst: Path) -> Path:
    """d2l's Pikachu JSON set as banana-detection layout under ``dst``; returns ``dst``."""
    from PIL import Image

    for split in ("train", "val"):
        notes = json.loads((src / split / "annotations.json").read_text())
        out = dst / f"bananas_{split}"
        (out / "images").mkdir(parents=True, exist_ok=True)
        with (out / "label.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["img_name", "label", "xmin", "ymin", "xmax", "ymax"])
            for note in notes.values():
                name = note["image"]
                image = src / split / "images" / name
                with Image.open(image) as img:
                    w, h = img.size
                x1, y1, x2, y2 = note["loc"]
                writer.writerow([name, int(note["class"]), f"{x1 * w:.3f}", f"{y1 * h:.3f}",
                                 f"{x2 * w:.3f}", f"{y2 * h:.3f}"])
                link = out / "images" / name
                if not link.exists():
                    try:
                        os.symlink(image.resolve(), link)
                    except OSError:
                        shutil.copyfile(image, link)
    return dst


def book_worker(args: argparse.Namespace) -> None:
    import book_tinyssd

    result = book_tinyssd.train(args.data, args.epochs, args.seed, args.max_steps,
                                log=lambda line: print(line, file=sys.stderr, flush=True))
    result.pop("net")
    print(json.dumps(result))


def run_book(args: argparse.Namespace, root: Path, seed: int) -> dict:
    import book_tinyssd

    cmd = [str(Path(__file__).resolve()), "--worker", "book", "--data", str(root), "--epochs", str(args.epochs),
           "--seed", str(seed)] + (["--max-steps", str(args.max_steps)] if args.max_steps else [])
    began = time.perf_counter()
    out = benchlib.last_json(benchlib.run(cmd, benchlib.env(), timeout=RUN_TIMEOUT).stdout)
    last = out["epochs"][-1]
    return {"recipe": "book", "seed": seed, "class_err": last["class_err"], "bbox_mae": last["bbox_mae"],
            "val_map50": out["val_map50"], "val_map": out["val_map"],
            "images_per_second": book_tinyssd.book_images_per_second(out["epochs"]),
            "wall_seconds": time.perf_counter() - began, "epochs": len(out["epochs"]), "per_epoch": out["epochs"]}


def run_cvtool(args: argparse.Namespace, root: Path, seed: int, recipe: str, out: Path) -> dict:
    cmd = ["-m", "cvtool", "train-ssd", "--config", RECIPES[recipe], "--out", str(out), "--json",
           "--set", f"data.root={root}", "--set", f"train.seed={seed}"]
    if recipe != "fast" or args.quick:  # ours trains for its own config's epochs
        cmd += ["--epochs", str(args.epochs)]
    if args.max_steps:
        cmd += ["--set", f"train.max_steps={args.max_steps}"]
    if args.pikachu:  # the banana layout has no class names: without this the pictures say "banana"
        cmd += ["--set", "data.classes=[pikachu]"]
    for item in args.set:
        cmd += ["--set", item]
    began = time.perf_counter()
    benchlib.run(cmd, benchlib.env(), timeout=RUN_TIMEOUT)
    wall = time.perf_counter() - began
    with open(out / "metrics.csv", newline="") as fh:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]
    speeds = sorted(r["images_per_second"] for r in (rows[1:] or rows))
    last = rows[-1]
    return {"recipe": recipe, "seed": seed, "class_err": last["train_class_err"], "bbox_mae": last["train_bbox_mae"],
            "val_map50": last["val_map50"], "val_map": last["val_map"],
            "best_val_map50": max(r["val_map50"] for r in rows), "images_per_second": speeds[len(speeds) // 2],
            "wall_seconds": wall, "epochs": len(rows), "run_dir": str(out)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchlib.add_common(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, help="a banana-layout folder (bananas_{train,val}/)")
    source.add_argument("--pikachu", type=Path, help="d2l's Pikachu set ({train,val}/annotations.json), laid out "
                        "as banana layout in a temporary folder")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the book's recipe, in the book's loop and "
                        "in cvtool (the book: 20); configs/ssd-fast.yaml keeps its own")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 for the seed-to-seed spread")
    parser.add_argument("--recipes", default="book,cvtool,fast", help="which of book, cvtool, fast to run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for cvtool's recipes, e.g. train.amp=off (repeatable)")
    parser.add_argument("--keep", type=Path, default=None, help="keep cvtool's run folders here (predictions.png)")
    parser.add_argument("--worker", choices=["book"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick and args.worker is None:
        args.epochs, args.max_steps = 1, 1
    return args


def report(rows: list[dict]) -> None:
    print(f"{'recipe':8} {'seed':>4} {'epochs':>6} {'class err':>10} {'bbox mae':>10} {'mAP@0.5':>8} {'mAP':>6} "
          f"{'images/s':>9} {'wall s':>8}")
    for r in rows:
        print(f"{r['recipe']:8} {r['seed']:>4} {r['epochs']:>6} {r['class_err']:10.3e} {r['bbox_mae']:10.3e} "
              f"{r['val_map50']:8.3f} {r['val_map']:6.3f} {r['images_per_second']:9.1f} {r['wall_seconds']:8.1f}")


def main() -> None:
    args = parse_args()
    if args.worker == "book":
        return book_worker(args)
    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy)
    seeds = [int(s) for s in args.seeds.split(",")]
    recipes = args.recipes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if args.pikachu:
            root = lay_out_pikachu(args.pikachu, Path(tmp) / "pikachu")
        elif args.data:
            root = args.data.resolve()
        else:
            from cvtool.data import bananas

            sizes = dict(n_train=32, n_val=4, size=64) if args.quick else {}
            root = bananas.synthesize(Path(tmp) / "bananas", **sizes)
        keep = args.keep or Path(tmp) / "runs"
        rows = []
        for seed in seeds:
            for recipe in recipes:
                print(f"  seed {seed}: {recipe} ...", file=sys.stderr, flush=True)
                rows.append(run_book(args, root, seed) if recipe == "book"
                            else run_cvtool(args, root, seed, recipe, keep / f"{recipe}-seed{seed}"))
    record.update(rows=rows, data=str(args.pikachu or args.data or "synthetic bananas"), quick=args.quick,
                  cvtool_sets=args.set)
    report(rows)
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    sys.exit(main())
