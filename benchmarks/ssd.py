"""The SSD demo's training epoch: the book's plain loop vs `cvtool train-ssd --config
configs/demo/ssd.yaml` exactly as `make demo` runs it.

    PYTHONPATH=. python benchmarks/ssd.py                      # 3 interleaved rounds, medians, ratio
    PYTHONPATH=. python benchmarks/ssd.py --quick --allow-busy # smoke test

Both train TinySSD (the demo's width) on the same synthetic banana set at 96 px
(`cvtool data synth bananas --size 96`, as the Makefile writes it). The book's loop: a
DataLoader over the same task's dataset (anchor targets precomputed), eager fp32, NCHW,
torch's default threads and environment, the book's SGD (lr 0.2, weight decay 5e-4) on the
task's loss. cvtool: the real CLI with the demo config unchanged (only data.root and the
epoch count given). Each run is a fresh process; the second epoch's images/s counts (data
loading in, validation out), rounds alternate the two, medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import benchlib

CONFIG = "configs/demo/ssd.yaml"


def book_worker(args: argparse.Namespace) -> None:
    import torch  # before cvtool, as a plain script would
    from torch.utils.data import DataLoader

    from cvtool import config as cfglib
    from cvtool.tasks import ssd

    sets = [f"data.root={args.data}", 'train.amp="off"', "train.channels_last=false"] + args.sets
    cfg = cfglib.load(ssd.Config, benchlib.REPO / CONFIG, sets)
    task = ssd.build(cfg)
    model = task.model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=5e-4)
    loader = DataLoader(task.train_data, batch_size=cfg.data.batch_size, shuffle=True, collate_fn=task.collate_fn)
    limit = cfg.train.max_steps or len(loader)
    for _ in range(args.epochs):
        seen, began = 0, time.perf_counter()
        for step, batch in enumerate(loader):
            if step == limit:
                break
            out = task.train_step(model, batch)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            seen += out.count
        seconds = time.perf_counter() - began
    print(json.dumps({"images_per_second": seen / seconds, "epoch_seconds": seconds}))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchlib.add_common(parser)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the last is timed")
    parser.add_argument("--worker", choices=["book"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="sets", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick and args.worker is None:
        args.rounds, args.epochs, args.sets = 1, 1, ["train.max_steps=2"]
    return args


def main() -> None:
    args = parse_args()
    if args.worker == "book":
        return book_worker(args)
    from cvtool.data import bananas

    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = dict(n_train=64, n_val=8) if args.quick else {}
        root = bananas.synthesize(Path(tmp) / "bananas", size=96, **sizes)
        sets = [f"data.root={root}", *args.sets]
        extra = [a for s in args.sets for a in ("--set", s)]
        runs = iter(range(10 ** 6))
        book = [str(Path(__file__).resolve()), "--worker", "book", "--data", str(root), "--epochs", str(args.epochs)]
        results = benchlib.interleaved({
            "book": lambda: benchlib.last_json(benchlib.run(book + extra, benchlib.env()).stdout)["images_per_second"],
            "cvtool": lambda: benchlib.cli_epoch("train-ssd", CONFIG, sets, Path(tmp) / f"run{next(runs)}",
                                                 args.epochs, benchlib.env())["images_per_second"],
        }, args.rounds)
    book_ips, ours = benchlib.median(results["book"]), benchlib.median(results["cvtool"])
    record.update(results=results, book_median=book_ips, cvtool_median=ours, ratio=ours / book_ips,
                  rounds=args.rounds, quick=args.quick)
    print(f"SSD demo epoch at 96 px, {args.rounds} interleaved round(s), last epoch of each run, medians:")
    print(f"book   (plain loop, fp32, NCHW, torch's threads): {book_ips:9.1f} images/s")
    print(f"cvtool ({CONFIG} unchanged):             {ours:9.1f} images/s")
    print(f"ratio cvtool / book: {ours / book_ips:.2f}x")
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    sys.exit(main())
