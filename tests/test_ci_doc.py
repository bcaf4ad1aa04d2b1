"""docs/ci.md's CI job, run by bash as written: every command line of it runs in one of three builds."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import strict_json

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def script() -> str:
    text = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
    (body,) = re.findall(r"```bash\n(#!/usr/bin/env bash\n.*?)```", text, flags=re.S)
    return body


def command_lines(body: str) -> set[int]:
    """The lines bash traces: not blank, comments, continuations or bare keywords."""
    lines, wanted = body.splitlines(), set()
    for number, line in enumerate(lines, 1):
        continued = number > 1 and lines[number - 2].rstrip().endswith("\\")
        if line.strip() and not line.lstrip().startswith("#") and not continued and line.strip() not in ("else", "fi"):
            wanted.add(number)
    return wanted


def build(tmp_path: Path, job: Path, **variables: str) -> tuple[int, set[int], str]:
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        wrapper = bin_dir / "cvtool"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m cvtool "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1", "SMOKE": "--epochs 1 --max-steps 1",
           "SYNTH": "--n-train 60 --n-test 4", **variables}
    traced_run = 'PS4="+\\${LINENO}: "; set -x; . "$0"'  # bash as root takes no PS4 from the environment
    done = subprocess.run(["bash", "-c", traced_run, str(job)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    traced = {int(m) for m in re.findall(r"^\++(\d+): ", done.stderr, flags=re.M)}
    return done.returncode, traced, done.stderr


def test_the_ci_job_in_docs_runs_line_by_line(tmp_path):
    body = script()
    job = tmp_path / "train.sh"
    job.write_text(body)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    artefacts = tmp_path / "artefacts"

    code, first, err = build(tmp_path, job, OUT="runs/ci/1", MIN_ACC="0")
    assert code == 0, err
    assert "this build's runs become it" in err or (tmp_path / "baseline" / "cifar-demo" / "seeds.json").is_file()
    assert strict_json((artefacts / "train.json").read_text())["completed"] == 3

    code, second, err = build(tmp_path, job, OUT="runs/ci/2", MIN_ACC="1.01", MAX_DROP="1")
    assert code == 4, err  # the gate on the mean failed; the comparison still ran and passed
    gates = strict_json((artefacts / "train.json").read_text())["gates"]
    assert [g["passed"] for g in gates] == [False]
    compared = strict_json((artefacts / "compare.json").read_text())
    assert compared["gates"][0]["passed"] and compared["gates"][0]["baseline_dir"] == "baseline/cifar-demo"
    assert (artefacts / "compare.png").is_file() and strict_json((artefacts / "seeds.json").read_text())

    code, third, err = build(tmp_path, job, OUT="runs/ci/3", SMOKE="--set optim.lrr=1", ARTEFACTS="broken")
    assert code == 2 and "training did not finish (exit 2)" in err and "did you mean optim.lr" in err
    (tmp_path / "broken" / "train.json").unlink()  # empty: the shell's redirect of a command that printed nothing

    missed = command_lines(body) - first - second - third
    assert not missed, [body.splitlines()[n - 1] for n in sorted(missed)]
