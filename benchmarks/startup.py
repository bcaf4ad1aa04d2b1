"""How long cvtool takes to answer before it does any work: help, config show, runs, --version.

    python benchmarks/startup.py --baseline /work/main --json startup.json

Each command is ``python -m cvtool ARGS`` in a new interpreter with PYTHONPATH at a tree's root,
timed wall clock. With ``--baseline``, that tree's commands are timed too, interleaved with this
tree's, so a change in load hits both alike. Prints the medians, their ratio and whether the
command imported torch (one extra ``python -X importtime`` run each), as a Markdown table for
docs/performance.md, then the machine and its load average.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

COMMANDS = [["--version"], ["--help"], ["train-ssd", "--help"], ["config", "show", "train-ssd"], ["runs", "runs"],
            ["trian-ssd"]]
QUICK_COMMANDS = [["--version"], ["--help"]]


def environment(tree: Path) -> dict[str, str]:
    return {**benchlib.env(), "PYTHONPATH": str(tree)}


def cvtool(tree: Path, args: list[str], cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-m", "cvtool", *args], env=environment(tree), cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def timed(tree: Path, args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    cvtool(tree, args, cwd)
    return time.perf_counter() - start


def imports_torch(tree: Path, args: list[str], cwd: Path) -> bool:
    stderr = cvtool(tree, args, cwd, "-X", "importtime").stderr
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in stderr.splitlines())


def check_tree(tree: Path, cwd: Path) -> None:
    """The interpreter must import cvtool from ``tree``, not from an installed copy."""
    found = subprocess.run([sys.executable, "-c", "import cvtool; print(cvtool.__file__)"], env=environment(tree),
                           cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        sys.exit(f"PYTHONPATH={tree} imports cvtool from {found}: not that tree")


def finished_run(folder: Path) -> None:
    """``folder/runs/a``: a one-step finetune-hotdog run on a tiny synthetic set, for ``cvtool runs``."""
    data = folder / "hotdog"
    benchlib.run(["-m", "cvtool", "data", "synth", "hotdog", "--out", str(data), "--n", "4", "--size", "32"],
                 environment(benchlib.REPO))
    benchlib.run(["-m", "cvtool", "finetune-hotdog", "--set", f"data.root={data}", "--set", "model.weights=none",
                  "--set", "data.image_size=32", "--set", "data.resize=36", "--set", "data.batch_size=4",
                  "--set", "data.num_workers=0", "--device", "cpu", "--epochs", "1", "--max-steps", "1",
                  "--out", str(folder / "runs" / "a")], environment(benchlib.REPO))


def table(commands: list[list[str]], trees: dict[str, Path], times: dict[str, list[float]],
          torch: dict[str, bool]) -> list[str]:
    names = list(trees)
    head = "| command | " + " | ".join(f"{n} median (s) | {n} range (s)" for n in names)
    head += " | ratio |" if len(names) == 2 else " |"
    lines = [head, "|---" * (1 + 2 * len(names) + (len(names) == 2)) + "|"]
    for args in commands:
        label = ("a typo, `trian-ssd`" if args == ["trian-ssd"] else
                 "`cvtool " + " ".join("DIR" if a == "runs" and i else a for i, a in enumerate(args)) + "`")
        cells = []
        for name in names:
            values = times[f"{name} {' '.join(args)}"]
            mark = " (torch)" if torch[f"{name} {' '.join(args)}"] else ""
            cells += [f"{statistics.median(values):.2f}{mark}", f"{min(values):.2f}-{max(values):.2f}"]
        if len(names) == 2:
            before, after = (statistics.median(times[f"{n} {' '.join(args)}"]) for n in names)
            cells.append(f"{before / after:.1f}x")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None, help="another cvtool tree to time alongside")
    benchlib.add_common(parser)
    parser.set_defaults(rounds=7)
    args = parser.parse_args()
    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy)
    trees = {"before": args.baseline, "after": benchlib.REPO} if args.baseline else {"this tree": benchlib.REPO}
    commands, rounds = (QUICK_COMMANDS, 1) if args.quick else (COMMANDS, args.rounds)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for tree in trees.values():
            check_tree(tree, folder)
        if not args.quick:
            finished_run(folder)
        cells = {f"{name} {' '.join(c)}": (tree, c) for c in commands for name, tree in trees.items()}
        torch = {key: imports_torch(tree, c, folder) for key, (tree, c) in cells.items()}
        variants = {key: (lambda tree=tree, c=c: timed(tree, c, folder)) for key, (tree, c) in cells.items()}
        times = benchlib.interleaved(variants, rounds)
    lines = table(commands, trees, times, torch)
    print("\n".join(lines))
    record.update(trees={k: str(v) for k, v in trees.items()}, rounds=rounds, quick=args.quick, seconds=times,
                  imports_torch=torch, table=lines)
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    main()
