"""How idle OpenMP threads should wait: TinySSD demo training steps under three waits,
alone and beside one busy process, every core's thread kept (no adaptation).

    PYTHONPATH=. python benchmarks/wait.py                       # 3 interleaved rounds, medians
    PYTHONPATH=. python benchmarks/wait.py --quick --allow-busy  # smoke test

Waits: ``GNU default`` (torch's libgomp on its own: spin 300,000 rounds, then sleep),
``PASSIVE`` (sleep at once) and ``spin 3000`` (``GOMP_SPINCOUNT=3000``: cvtool's default,
cvtool/__init__.py). OpenMP reads the wait once, when torch loads it, so each run is a
fresh process with the variable in its environment from the start. The step is
configs/demo/ssd.yaml's (TinySSD half width at 96 px, batch 32, Adam, channels_last,
``train.amp: auto``'s precision) on synthetic bananas, with ``torch.set_num_threads`` at
every usable CPU; a few warm-up steps, then the timed ones. The busy neighbour is a Python
process spinning on one core; the share of its core it kept over the run (its loop rate
against its rate alone) shows what each wait costs the machine's other work, not only this
run. The thread count is held fixed so that the wait alone is compared; cvtool's ``auto``
also lowers the count beside a neighbour (benchmarks/contention.py measures both together).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from contention import neighbour, share, spinner_alone

WAITS = {"GNU default": {"OMP_WAIT_POLICY": ""}, "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
         "spin 3000": {"GOMP_SPINCOUNT": "3000"}}
CONFIG = "configs/demo/ssd.yaml"


def worker(args: argparse.Namespace) -> None:
    import torch  # loads OpenMP with the environment this process was given
    from torch.utils.data import default_collate

    from cvtool import config as cfglib
    from cvtool.engine import runtime, threads
    from cvtool.engine.placement import to_device
    from cvtool.tasks import ssd

    torch.set_num_threads(threads.usable_cpus())
    torch.manual_seed(0)
    cfg = cfglib.load(ssd.Config, benchlib.REPO / CONFIG, [f"data.root={args.data}"])
    task = ssd.build(cfg)
    model = task.model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    cpu = torch.device("cpu")
    dtype = runtime.amp_dtype(cpu, cfg.train.amp)
    collate = task.collate_fn or default_collate
    batches = [to_device(collate([task.train_data[i] for i in range(j, j + cfg.data.batch_size)]),
                         cpu, True)
               for j in range(0, len(task.train_data) - cfg.data.batch_size + 1, cfg.data.batch_size)]

    def step(k: int) -> int:
        with runtime.autocast(cpu, dtype):
            out = task.train_step(model, batches[k % len(batches)])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        return out.count

    for k in range(args.warmup):
        step(k)
    began = time.perf_counter()
    images = sum(step(k) for k in range(args.steps))
    print(json.dumps({"images_per_second": images / (time.perf_counter() - began),
                      "threads": torch.get_num_threads(), "precision": str(dtype or "fp32")}))


def measure(args: argparse.Namespace, root: Path, wait: str, busy: bool, shares: dict[str, list]) -> float:
    environ = benchlib.env(**{"OMP_NUM_THREADS": None, "OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None,
                              **WAITS[wait]})
    command = [str(Path(__file__).resolve()), "--worker", "--data", str(root),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    with neighbour(busy) as work:
        images_per_second = benchlib.last_json(benchlib.run(command, environ).stdout)["images_per_second"]
    if busy:
        shares[wait].append(share(work, shares["alone"]))
    return images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchlib.add_common(parser)
    parser.add_argument("--steps", type=int, default=24, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=6, help="untimed steps first")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 2, 1
    from cvtool.data import bananas

    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy)
    shares: dict[str, list] = {"alone": spinner_alone(), **{wait: [] for wait in WAITS}}
    with tempfile.TemporaryDirectory() as tmp:
        root = bananas.synthesize(Path(tmp) / "bananas", size=96, n_train=96 if args.quick else 320, n_val=8)
        results = benchlib.interleaved({f"{wait} {'busy' if busy else 'alone'}": (
            lambda wait=wait, busy=busy: measure(args, root, wait, busy, shares)) for busy in (False, True) for wait in WAITS},
            args.rounds)
    rows = []
    print(f"TinySSD demo steps (96 px, batch 32), every usable CPU's thread, {args.rounds} interleaved round(s), "
          "medians, training images/s:")
    for wait in WAITS:
        alone, busy = (benchlib.median(results[f"{wait} {k}"]) for k in ("alone", "busy"))
        known = [s for s in shares[wait] if s is not None]
        kept = benchlib.median(known) if known else None
        rows.append({"wait": wait, "alone": alone, "busy": busy, "busy_vs_alone": busy / alone,
                     "neighbour_share": kept})
        print(f"{wait:<12} alone {alone:8.1f}  beside a busy process {busy:8.1f}  busy/alone {busy / alone:5.2f}x  "
              f"neighbour kept {'?' if kept is None else f'{kept:.0%}'} of its core")
    record.update(rows=rows, results=results, shares=shares, rounds=args.rounds, quick=args.quick, steps=args.steps)
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    sys.exit(main())
