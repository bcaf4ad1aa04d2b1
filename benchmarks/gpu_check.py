"""`make gpu-check`: everything a first GPU machine should prove, in one run, into one report.

    PYTHONPATH=. python benchmarks/gpu_check.py              # on the GPU: the CUDA tests, then the benchmark
    PYTHONPATH=. python benchmarks/gpu_check.py --dry-run    # on a CPU: every step, at CPU sizes

Steps, each in its own process with its own time limit (so a hang is a failed step, not a
stuck job), all of them run whatever the previous ones did:

1. ``environment``: torch, CUDA, the card (nvidia-smi when present).
2. ``cuda-tests``: ``pytest -m cuda`` (tests/test_cuda.py), one line per test in the report.
   Without CUDA they are collected and skip, which is what a dry run shows.
3. ``benchmark``: benchmarks/gpu.py at the full sizes with fewer steps (``--steps 10``), its
   rows in the report; a dry run uses ``--device cpu --quick``.

The folder is $GPU_CHECK_OUT (default runs/gpu-check): report.json, report.md and each
step's full log. Exit 0 only if every step passed; whatever failed is in the report.
Budget on one H100/H200: under 8 minutes with the install (see the Makefile).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_GPU = "--steps 10 --warmup 2 --stylize-steps 50"
BENCH_DRY = "--device cpu --quick"


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout: int
    status: str = "not run"  # passed | failed | timed out | not run
    returncode: int | None = None
    seconds: float = 0.0
    log: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def run_step(step: Step, out: Path, env: dict[str, str]) -> Step:
    """Run one step's command; its output goes to a log file, its fate into ``step``."""
    log = out / f"{step.name}.log"
    step.log = log.name
    began = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        try:
            done = subprocess.run(step.argv, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=step.timeout)
            step.returncode = done.returncode
            step.status = "passed" if done.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            step.status = "timed out"
        except OSError as exc:
            fh.write(f"could not start: {exc}\n")
            step.status = "failed"
    step.seconds = round(time.perf_counter() - began, 1)
    return step


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def junit_results(path: Path) -> list[dict[str, str]]:
    """One {test, outcome, message} per test case of pytest's JUnit XML."""
    if not path.exists():
        return []
    results = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                text = (node.get("message") or node.text or "").strip()
                message = text.splitlines()[0][:300] if text else ""
                break
        results.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                        "message": message})
    return results


def plan(out: Path, dry_run: bool, bench_args: str | None, pytest_args: str) -> list[Step]:
    py = sys.executable
    bench = shlex.split(bench_args if bench_args is not None else (BENCH_DRY if dry_run else BENCH_GPU))
    env_probe = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
                 "'cuda': torch.version.cuda, 'cuda_available': c, 'device': torch.cuda.get_device_name(0) if c "
                 "else 'cpu', 'devices': torch.cuda.device_count() if c else 0, "
                 "'bf16': bool(c and torch.cuda.is_bf16_supported())}))")
    return [
        Step("environment", [py, "-c", env_probe], 120),
        Step("cuda-tests", [py, "-m", "pytest", "-m", "cuda", "-q", "-rA", "-p", "no:cacheprovider",
                            f"--junitxml={out / 'cuda-tests.xml'}", *shlex.split(pytest_args)], 300),
        Step("benchmark", [py, str(REPO / "benchmarks" / "gpu.py"), *bench, "--json", str(out / "benchmark.json")],
             330),
    ]


def collect(step: Step, out: Path) -> None:
    """What each step's files say, added to its record."""
    if step.name == "environment" and step.status == "passed":
        lines = [line for line in (out / step.log).read_text(encoding="utf-8").splitlines() if line.startswith("{")]
        step.details = json.loads(lines[-1]) if lines else {}
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=60)
            step.details["nvidia_smi"] = smi.stdout.strip()
    elif step.name == "cuda-tests":
        tests = junit_results(out / "cuda-tests.xml")
        counts: dict[str, int] = {}
        for t in tests:
            counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
        step.details = {"counts": counts, "tests": tests}
        if step.returncode == 5:  # pytest: nothing collected
            step.status = "failed"
            step.details["error"] = "no test is marked cuda"
    elif step.name == "benchmark" and (out / "benchmark.json").exists():
        step.details = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    if step.status != "passed":
        step.details["log_tail"] = tail(out / step.log)


def markdown(report: dict[str, Any]) -> str:
    env = next((s["details"] for s in report["steps"] if s["name"] == "environment"), {})
    lines = [f"# gpu-check {'(dry run) ' if report['dry_run'] else ''}— {'PASSED' if report['ok'] else 'FAILED'}", "",
             f"- device: {env.get('device', '?')} ({env.get('nvidia_smi', 'no nvidia-smi')})",
             f"- torch {env.get('torch', '?')}, CUDA {env.get('cuda', '-')}, host {report['host']}",
             f"- total {report['seconds']:.0f} s", "", "| step | status | seconds | log |", "|---|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {s['log']} |" for s in report["steps"]]
    for s in report["steps"]:
        d = s["details"]
        if s["name"] == "cuda-tests" and d.get("tests"):
            lines += ["", f"## CUDA tests: {d['counts']}", ""]
            lines += [f"- {t['outcome']}: `{t['test']}`" + (f" — {t['message']}" if t["message"] else "")
                      for t in d["tests"]]
        if s["name"] == "benchmark" and d.get("rows"):
            lines += ["", "## Benchmark", "", "| command | variant | images/s | ms/step | vs plain | note |",
                      "|---|---|---|---|---|---|"]
            for r in d["rows"]:
                ips = f"{r['images_per_second']:,.0f}" if r["images_per_second"] else "-"
                ms = f"{r['ms_per_step']:.2f}" if r["ms_per_step"] is not None else "-"
                ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
                lines.append(f"| {r['command']} | {r['variant']} | {ips} | {ms} | {ratio} | {r['note']} |")
            lines += [f"- {g}" for g in d.get("goals", [])]
        if d.get("log_tail"):
            lines += ["", f"## {s['name']}: {s['status']} (last lines of {s['log']})", "", "```", d["log_tail"], "```"]
    return "\n".join(lines) + "\n"


def check(out: Path, steps: list[Step], dry_run: bool) -> dict[str, Any]:
    """Run every step (none stops the others), then write report.json and report.md."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    began = time.perf_counter()
    for step in steps:
        print(f"gpu-check: {step.name} ...", file=sys.stderr, flush=True)
        run_step(step, out, env)
        collect(step, out)
        print(f"gpu-check: {step.name} {step.status} in {step.seconds:.0f} s", file=sys.stderr, flush=True)
    report = {"ok": all(s.status == "passed" for s in steps), "dry_run": dry_run, "host": platform.node(),
              "seconds": round(time.perf_counter() - began, 1), "steps": [asdict(s) for s in steps]}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="on a CPU: every step at CPU sizes")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("GPU_CHECK_OUT", "runs/gpu-check")),
                        help="report folder (default $GPU_CHECK_OUT or runs/gpu-check)")
    parser.add_argument("--bench-args", default=None,
                        help=f"benchmarks/gpu.py's arguments (default {BENCH_GPU!r}; dry run {BENCH_DRY!r})")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, e.g. a -k filter")
    args = parser.parse_args(argv)
    report = check(args.out, plan(args.out.resolve(), args.dry_run, args.bench_args, args.pytest_args), args.dry_run)
    print(f"gpu-check {'passed' if report['ok'] else 'FAILED'}: {args.out / 'report.md'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
