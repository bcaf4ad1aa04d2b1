"""What every CPU benchmark shares: the machine record, the load check, interleaved medians,
subprocess runs of the real CLI.

Import this before anything from cvtool: it keeps the environment the user started with
(``ORIGINAL_ENV``), because importing cvtool sets GOMP_SPINCOUNT, and the book's runs must
see the environment a plain script would.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

ORIGINAL_ENV = dict(os.environ)
REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Who measured what, where and how busy the machine was."""
    import torch

    from cvtool.engine import runtime, threads

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "usable_cpus": threads.usable_cpus(), "load_before": list(os.getloadavg()),
        "native_bf16": runtime.cpu_has_native_bf16(), "torch": torch.__version__,
        "python": platform.python_version(), "argv": sys.argv,
    }


def check_load(record: dict[str, Any], allow_busy: bool) -> None:
    """Refuse to measure on a machine whose load average is above its core count, unless told."""
    load, cores = record["load_before"][0], record["cores"] or 1
    if load <= cores:
        return
    message = (f"load average {load:.2f} is above the {cores} cores: other processes would skew the "
               f"figures")
    if not allow_busy:
        sys.exit(f"{message}; wait for an idle machine, or pass --allow-busy to measure anyway (direction only)")
    print(f"WARNING: {message}; figures are for direction only", file=sys.stderr)
    record["warning"] = message


def finish(record: dict[str, Any], json_path: Path | None) -> None:
    record["load_after"] = list(os.getloadavg())
    print(f"machine: {record['cpu']}, {record['cores']} cores ({record['usable_cpus']} usable), native bf16 "
          f"{record['native_bf16']}, torch {record['torch']}; {record['date']}; load average before "
          f"{record['load_before'][0]:.2f}, after {record['load_after'][0]:.2f}")
    if json_path is not None:
        from cvtool.files import json_text  # after the measurements: importing cvtool changes the environment

        json_path.write_text(json_text(record, indent=2) + "\n")


def add_common(parser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats; medians are reported")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke test (seconds)")
    parser.add_argument("--allow-busy", action="store_true", help="measure even when the load average is "
                        "above the core count (figures for direction only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the record here")


def interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each round runs every variant once, in turn, so a change in load hits all of them alike."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, run in variants.items():
            results[name].append(run())
            print(f"  round {r + 1}/{rounds} {name}: {results[name][-1]:.4g}", file=sys.stderr, flush=True)
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def env(**changes: str | None) -> dict[str, str]:
    """The user's original environment with ``changes`` (None removes a variable)."""
    out = {**ORIGINAL_ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), ORIGINAL_ENV.get("PYTHONPATH")]))}
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def run(args: list[str], environ: dict[str, str], timeout: float = 3600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], env=environ, capture_output=True, text=True,
                            timeout=timeout, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:3])} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def last_json(text: str) -> Any:
    return json.loads(text.strip().splitlines()[-1])


def cli_epoch(command: str, config: str, sets: list[str], out: Path, epochs: int, environ: dict[str, str]) -> dict:
    """Train with the real CLI (``cvtool COMMAND --config CONFIG``) and return the last
    epoch's row of metrics.csv: the first epoch is a warm-up (kernel selection, caches)."""
    args = ["-m", "cvtool", command, "--config", config, "--epochs", str(epochs), "--out", str(out), "--json"]
    for item in sets:
        args += ["--set", item]
    run(args, environ)
    import csv

    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    env_json = json.loads((out / "env.json").read_text())
    return {**{k: float(v) for k, v in rows[-1].items() if v not in ("", None)}, "threads": env_json.get("threads")}
