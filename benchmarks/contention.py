"""Does a demo run hold up beside a busy process? Each command's demo epoch (stylize: ms per
step) alone and beside one spinning process, under three thread settings.

    PYTHONPATH=. python benchmarks/contention.py                       # ssd, cifar, stylize; 3 rounds
    PYTHONPATH=. python benchmarks/contention.py --only train-ssd --json contention.json
    PYTHONPATH=. python benchmarks/contention.py --quick --allow-busy  # smoke test

Settings: ``auto`` (cvtool's defaults: train.threads auto, idle OpenMP threads spin 3,000
rounds before they sleep), ``OMP_NUM_THREADS=1``, and ``all cores, spinning`` (train.threads
= every usable CPU, fixed, OpenMP's own wait: what cvtool did before the thread policy).
Each run is the real CLI in a fresh process with the demo config unchanged, 3 epochs, the
last timed (the policy re-reads the machine every second, so a neighbour already there has
been seen); the busy neighbour is a Python process spinning on one core, started before the
run and stopped after it. Rounds take turns over every (setting, alone/busy) pair; the
medians, the busy/alone ratio, each setting's alone time against ``auto``'s and the share of
its core the neighbour kept over the run are printed, and the JSON keeps every run with its
thread record (the count it started with and each change it made). Goal (issue 20): beside
one busy process a demo epoch takes at most 1.7x its idle time, while idle stays within 10%
of ``all cores`` and clearly faster than ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

SETTINGS = ("auto", "OMP_NUM_THREADS=1", "all cores, spinning")


def setting_env(setting: str, cpus: int) -> tuple[dict[str, str], list[str]]:
    if setting == "OMP_NUM_THREADS=1":
        return benchlib.env(OMP_NUM_THREADS="1"), []
    if setting == "all cores, spinning":
        return benchlib.env(OMP_NUM_THREADS=None, OMP_WAIT_POLICY=""), [f"train.threads={cpus}"]
    return benchlib.env(OMP_NUM_THREADS=None), []


# The neighbour counts its loop turns and prints their rate when told to stop, so a benchmark
# sees how much of its core a run left it, not only how fast the run itself went.
SPINNER = ("import signal, sys, time\n"
           "turns, began = 0, time.perf_counter()\n"
           "signal.signal(signal.SIGTERM, lambda *_: sys.exit(print(turns / (time.perf_counter() - began))))\n"
           "while True:\n"
           "    turns += 1\n")


@contextlib.contextmanager
def neighbour(busy: bool):
    """One process spinning on a core for as long as the block runs; afterwards the yielded
    dict holds its ``rate`` (loop turns per second; None when it was stopped before it began)."""
    work: dict[str, float | None] = {}
    if not busy:
        yield work
        return
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER], stdout=subprocess.PIPE, text=True)
    try:
        yield work
    finally:
        spinner.terminate()
        out = spinner.communicate()[0].strip()
        work["rate"] = float(out) if out else None


def spinner_alone(seconds: float = 2.0) -> float | None:
    """The neighbour's rate with nothing beside it: what "its whole core" means here."""
    with neighbour(True) as work:
        time.sleep(seconds)
    return work["rate"]


def share(work: dict, alone: float | None) -> float | None:
    """The part of its core the neighbour kept (1.0: all of it)."""
    return work["rate"] / alone if work.get("rate") and alone else None


def demo_data(command: str, root: Path, quick: bool) -> list[str]:
    """Synthesize the demo's data as the Makefile does; the --set items that point at it."""
    if command == "train-ssd":
        from cvtool.data import bananas

        sizes = dict(n_train=64, n_val=8) if quick else {}
        return [f"data.root={bananas.synthesize(root / 'bananas', size=96, **sizes)}"]
    from cvtool.data import kaggle_synth

    out = kaggle_synth.synthesize_cifar(root / "cifar10", n_train=64 if quick else 1000, n_test=1)
    return [f"data.root={out}"]


def stylize_ms(root: Path, out: Path, environ: dict[str, str], sets: list[str], quick: bool) -> dict:
    from PIL import Image

    for name in ("content.png", "style.png"):
        if not (root / name).exists():
            Image.effect_noise((96, 64), 64).convert("RGB").save(root / name)
    size = "32,48" if quick else "150,225"
    args = ["-m", "cvtool", "stylize", str(root / "content.png"), str(root / "style.png"), "-o", str(out),
            "--size", size, "--steps", "2" if quick else "20", "--set", "model.weights=none", "--json"]
    for item in sets:
        args += ["--set", item]
    return benchlib.last_json(benchlib.run(args, environ).stdout)


def measure(command: str, setting: str, busy: bool, ctx: dict) -> float:
    environ, sets = setting_env(setting, ctx["cpus"])
    ctx["n"] += 1
    out = ctx["tmp"] / f"run{ctx['n']}"
    with neighbour(busy) as work:
        if command == "stylize":
            result = stylize_ms(ctx["tmp"], out.with_suffix(".png"), environ, sets, ctx["quick"])
            value = result["ms_per_step"]
        else:
            config = "configs/demo/ssd.yaml" if command == "train-ssd" else "configs/demo/cifar.yaml"
            quick = ["train.max_steps=2"] if ctx["quick"] else []
            result = benchlib.cli_epoch(command, config, ctx["data"][command] + sets + quick, out, ctx["epochs"],
                                        environ)
            value = result["epoch_seconds"]
    ctx["runs"].append({"command": command, "setting": setting, "busy": busy, "value": value,
                        "threads": result["threads"], "neighbour_share": share(work, ctx["spinner_alone"])})
    return value


def report(command: str, medians: dict[tuple[str, bool], float], runs: list[dict], unit: str) -> list[dict]:
    rows = []
    base = medians[("auto", False)]
    for setting in SETTINGS:
        alone, busy = medians[(setting, False)], medians[(setting, True)]
        shares = [r["neighbour_share"] for r in runs if r["command"] == command and r["setting"] == setting
                  and r["busy"] and r["neighbour_share"] is not None]
        kept = benchlib.median(shares) if shares else None
        rows.append({"command": command, "setting": setting, "alone": alone, "busy": busy, "ratio": busy / alone,
                     "alone_vs_auto": alone / base, "neighbour_share": kept, "unit": unit})
        print(f"{command:<10} {setting:<22} alone {alone:9.3f} {unit}  beside a busy process {busy:9.3f} {unit}  "
              f"busy/alone {busy / alone:5.2f}x  alone vs auto {alone / base:5.2f}x  "
              f"neighbour kept {'?' if kept is None else f'{kept:.0%}'} of its core", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchlib.add_common(parser)
    parser.add_argument("--only", default="train-ssd,train-cifar,stylize", help="comma-separated commands")
    args = parser.parse_args()
    from cvtool.engine import threads

    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy)
    rounds = 1 if args.quick else args.rounds
    commands = [c for c in args.only.split(",") if c]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx = {"tmp": Path(tmp), "n": 0, "quick": args.quick, "cpus": threads.usable_cpus(),
               "epochs": 1 if args.quick else 3, "data": {}, "runs": [], "spinner_alone": spinner_alone()}
        for command in commands:
            if command != "stylize":
                ctx["data"][command] = demo_data(command, Path(tmp), args.quick)
            pairs = {(s, b): (lambda s=s, b=b: measure(command, s, b, ctx)) for s in SETTINGS for b in (False, True)}
            results = benchlib.interleaved({f"{s} {'busy' if b else 'alone'}": run for (s, b), run in pairs.items()},
                                           rounds)
            medians = {key: benchlib.median(results[f"{key[0]} {'busy' if key[1] else 'alone'}"]) for key in pairs}
            rows += report(command, medians, ctx["runs"], "ms/step" if command == "stylize" else "s/epoch")
    record.update(rows=rows, runs=ctx["runs"], spinner_alone=ctx["spinner_alone"], rounds=rounds, quick=args.quick)
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    sys.exit(main())
