"""Help, config, runs, typos and completion answer without importing torch or torchvision.

Importing torch takes seconds, so only a command that runs a model may load it; numpy (a third
of what help imported once torch was gone) only ``data``, whose synth options come from the
writers, and ``runs``, which reads through cvtool.api. Each command here runs in a fresh
``python -X importtime -m cvtool``, whose stderr lists every module imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cvtool.tasks import registry

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "torchvision"}
WITH_NUMPY = {"data", "runs"}
TASKS = [spec.command for spec in registry.specs()]
GROUPS = ["predict", "eval", "export", "benchmark", "config", "data", "runs", "compare"]
SUBCOMMANDS = [["config", "show"], ["config", "validate"],
               *(["data", s] for s in ("fetch", "synth", "check", "convert"))]
HELP = [["--help"], *([c, "--help"] for c in [*TASKS, *GROUPS]), *([*s, "--help"] for s in SUBCOMMANDS)]
COMPLETION = {  # shell: (what its script sets, a word the answer holds)
    "bash": ({"_CVTOOL_COMPLETE": "complete_bash", "COMP_WORDS": "cvtool train-", "COMP_CWORD": "1"}, "train-ssd"),
    "zsh": ({"_CVTOOL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "cvtool eval --cou"}, "--counts"),
    "fish": ({"_CVTOOL_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": "cvtool train-ss",
              "_TYPER_COMPLETE_FISH_ACTION": "get-args"}, "train-ssd"),
}


def cvtool(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``cvtool ARGS`` in a new interpreter: the finished process and the top-level packages it imported."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "cvtool", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": path, **(env or {})})
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    return done, modules


def light(args: list[str], modules: set[str]) -> None:
    heavy = sorted((HEAVY if args[0] in WITH_NUMPY else HEAVY | {"numpy"}) & modules)
    assert not heavy, f"`cvtool {' '.join(args)}` imported {', '.join(heavy)}"


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, hotdog_root):
    """A folder holding one finished finetune-hotdog run."""
    from conftest import TINY_HOTDOG

    from cvtool.cli import main

    folder = tmp_path_factory.mktemp("runs")
    code = main(["finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG, "--epochs", "1",
                 "--max-steps", "1", "--out", str(folder / "a")])
    assert code == 0
    return folder


@pytest.mark.parametrize("args", HELP, ids=" ".join)
def test_help_imports_no_torch(args):
    done, modules = cvtool(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    light(args, modules)


def test_top_help_lists_every_task():
    done, _ = cvtool("--help")
    missing = [task for task in TASKS if task not in done.stdout]
    assert not missing, f"--help does not list {missing}"


@pytest.mark.parametrize("task", TASKS)
def test_config_show_imports_no_torch(task):
    done, modules = cvtool("config", "show", task)
    assert done.returncode == 0 and done.stdout.startswith(f"# cvtool {task} defaults"), done.stderr[-2000:]
    light(["config", "show", task], modules)


def test_version_and_a_typo_import_no_torch():
    done, modules = cvtool("--version")
    assert done.returncode == 0 and done.stdout.startswith("cvtool ")
    light(["--version"], modules)
    done, modules = cvtool("trian-ssd")
    assert done.returncode == 2 and "train-ssd" in done.stderr
    light(["trian-ssd"], modules)


def test_runs_imports_no_torch(finished_runs):
    done, modules = cvtool("runs", str(finished_runs))
    assert done.returncode == 0 and "finetune-hotdog" in done.stdout and "completed" in done.stdout, done.stderr
    light(["runs", str(finished_runs)], modules)


@pytest.mark.parametrize("shell", COMPLETION)
def test_completion_imports_no_torch(shell):
    env, answer = COMPLETION[shell]
    done, modules = cvtool(env=env)
    assert done.returncode == 0 and answer in done.stdout, done.stderr[-2000:]
    light([f"({shell} completion)"], modules)
