"""One process per run directory, with real concurrent processes and a kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_HOTDOG
from cvtool.engine import checkpoint, lock

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def env(pause_dir: Path | None = None, at: str = "start-up") -> dict[str, str]:
    extra = {"CVTOOL_PAUSE_DIR": str(pause_dir), "CVTOOL_PAUSE_AT": at} if pause_dir else {}
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def cvtool(hotdog_root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cvtool", "finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG,
            "--max-steps", "1", *args]


def held_at(proc: subprocess.Popen, marker: Path) -> None:
    """Wait until the child sits at its pause point (it holds the lock there)."""
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.02)


def test_a_second_run_resume_or_restart_on_a_folder_in_use_exits_2_at_once(hotdog_root, tmp_path, cli):
    out = tmp_path / "run"
    assert subprocess.run(cvtool(hotdog_root, "--epochs", "1", "--out", str(out)), env=env(),
                          capture_output=True).returncode == 0
    pause = tmp_path / "pause"
    pause.mkdir()
    first = subprocess.Popen(cvtool(hotdog_root, "--resume", "--epochs", "2", "--out", str(out)), env=env(pause),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held_at(first, pause / "start-up")
    expected = f"{out} is in use by cvtool (pid {first.pid}, started at "
    for extra in (["--resume"], [], ["--set", "optim.lr=0.01"]):
        second = subprocess.run(cvtool(hotdog_root, "--epochs", "2", "--out", str(out), *extra), env=env(),
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and expected in second.stderr, second.stderr
        assert "wait for it or choose another --out" in second.stderr and "not a cvtool run" not in second.stderr
    code, stdout, _ = cli("runs", tmp_path, "--json")
    assert code == 0 and [r["status"] for r in json.loads(stdout)] == ["running"]
    (pause / "start-up").unlink()
    assert first.wait(timeout=300) == 0, first.communicate()[1]
    assert lock.in_use(out) is False
    assert json.loads((out / "summary.json").read_text())["epochs_completed"] == 2


def test_a_killed_run_leaves_no_stale_lock_and_is_listed_as_stopped(hotdog_root, tmp_path, cli):
    out = tmp_path / "run"
    proc = subprocess.Popen(cvtool(hotdog_root, "--epochs", "400", "--out", str(out)), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = out / "summary.json"
    deadline = time.time() + 300
    while not (summary.exists() and json.loads(summary.read_text())["status"] == "running"):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    assert lock.in_use(out) is True
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    code, stdout, _ = cli("runs", tmp_path, "--json")
    (row,) = json.loads(stdout)
    assert code == 0 and row["status"] == "stopped" and "killed" in row["reason"]
    done = checkpoint.load(out / "checkpoints" / "last.pt")["epoch"]
    code, _, err = cli("finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG, "--max-steps", "1",
                       "--resume", "--out", out, "--epochs", done + 1)
    assert code == 0, err
    assert json.loads(summary.read_text())["status"] == "completed"


def test_an_aborted_start_up_leaves_no_folder_and_the_lock_file_is_never_set_aside(hotdog_root, tmp_path, cli):
    out = tmp_path / "new"
    code, _, err = cli("finetune-hotdog", "--set", f"data.root={tmp_path / 'missing'}", *TINY_HOTDOG, "--out", out)
    assert code in (2, 3) and not out.exists(), err
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / lock.NAME).write_text("{}")
    (failed / "env.json").write_text("{}")
    (failed / "summary.json").write_text('{"status": "failed"}')
    code, _, err = cli("finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG, "--max-steps", "1",
                       "--epochs", "1", "--out", failed)
    assert code == 0, err
    assert (failed / lock.NAME).is_file() and not (failed / "attempts" / "1" / lock.NAME).exists()
    assert (failed / "attempts" / "1" / "env.json").is_file()
