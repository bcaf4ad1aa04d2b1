"""Issue 18, "no dead ends": every refusal says what to do, interrupts always end the same way."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvtool.engine import checkpoint
from cvtool.tasks import classify

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def diverging(original):
    def step(model, batch):
        out = original(model, batch)
        out.loss = out.loss * float("inf")
        return out
    return step


@pytest.mark.slow
def test_a_run_that_failed_before_its_first_checkpoint_starts_again(cli, tiny_hotdog, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(classify, "train_step", diverging(classify.train_step))
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1", "--out", out)[0] == 1
    monkeypatch.undo()
    failed = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".cvtool.lock"}  # stays
    assert json.loads(failed["summary.json"])["status"] == "failed"

    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--resume", "--out", out)
    assert code == 2 and "without --resume" in err and "start it again" in err
    code, stdout, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1", "--out", out)
    assert code == 0, err
    assert f"earlier attempt's files are in {out / 'attempts' / '1'}" in stdout
    assert {p.name: p.read_bytes() for p in (out / "attempts" / "1").iterdir() if p.is_file()} == failed
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"

    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--out", out)  # now it has a checkpoint
    assert code == 2 and f"--resume --out {out}" in err


def test_a_folder_that_is_no_run_is_refused_either_way_with_one_advice(cli, tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("mine")
    for args in ([], ["--resume"]):
        code, _, err = cli("finetune-hotdog", "--out", out, *args)
        assert code == 2 and "choose another --out" in err and "pass --resume" not in err, err
    assert (out / "todo.txt").read_text() == "mine" and sorted(os.listdir(out)) == ["todo.txt"]
    code, _, err = cli("finetune-hotdog", "--resume", "--out", tmp_path / "absent")
    assert code == 2 and "without --resume" in err


def test_a_config_for_another_task_names_that_task(cli, tmp_path):
    code, _, err = cli("train-ssd", "--config", CONFIGS / "demo" / "fcn.yaml", "--out", tmp_path / "run")
    assert code == 2 and "looks like a train-fcn config" in err and "did you mean" not in err, err
    assert not (tmp_path / "run").exists()
    wrong = tmp_path / "typo.yaml"
    wrong.write_text("data:\n  batch_sise: 4\n")
    code, _, err = cli("train-ssd", "--config", wrong)
    assert code == 2 and "did you mean data.batch_size?" in err and "looks like" not in err


def start(args, tmp_path, pause_at):
    """cvtool in a child process that pauses (runtime.pause_point) at the named moments."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "CVTOOL_PAUSE_DIR": str(tmp_path),
           "CVTOOL_PAUSE_AT": pause_at}
    return subprocess.Popen([sys.executable, "-m", "cvtool", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def signal_at(proc, marker: Path, signals, release=True):
    """Wait until the child pauses at ``marker``, send ``signals`` one by one, then let it go on."""
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.3)  # handled before the next one (signals of one kind do not queue)
    if release:
        marker.unlink(missing_ok=True)


INT, TERM = signal.SIGINT, signal.SIGTERM


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["start-up", "step and save"])
def test_any_number_of_interrupts_end_in_one_line_and_130(hotdog_root, tmp_path, moment):
    from conftest import TINY_HOTDOG

    out = tmp_path / "run"
    args = ["finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG, "--epochs", "3", "--out", out]
    proc = start(args + ["--json"] * (moment == "start-up"), tmp_path, "start-up,step,save")
    if moment == "start-up":  # building the task: nothing is written yet
        signal_at(proc, tmp_path / "start-up", [INT, INT, TERM])
    else:  # during the first step, then during the interrupt's own save
        signal_at(proc, tmp_path / "start-up", [])
        signal_at(proc, tmp_path / "step", [INT, TERM, INT])
        signal_at(proc, tmp_path / "save", [INT, TERM, INT])
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and len(err.splitlines()) == 1, err
    assert err.startswith("cvtool: interrupted: SIGINT received")
    if moment == "start-up":
        assert json.loads(stdout)["status"] == "interrupted" and "run the same command again" in err
        assert not out.exists()
        return
    assert f"--resume --out {out}" in err
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert (checkpoint.load(out / "checkpoints" / "last.pt")["step"]) == 1
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
