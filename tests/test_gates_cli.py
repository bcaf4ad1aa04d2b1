"""Quality gates on train, eval and compare: exit 4, one line per failed gate, gates in --json."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_HOTDOG, strict_json

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base_run(hotdog_root, tmp_path_factory):
    from cvtool.cli import main

    out = tmp_path_factory.mktemp("gates") / "base"
    assert main(["finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG, "--epochs", "2",
                 "--max-steps", "1", "--out", str(out)]) == 0
    return out


def test_train_gates_on_the_best_epoch_exit_4_as_a_shell_sees_it(hotdog_root, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "cvtool", "finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG,
               "--epochs", "2", "--max-steps", "1", "--out", str(out), "--json",
               "--fail-under", "val_acc=1.01", "--fail-over", "val_loss=1e9", "--fail-under", "train_acc=-1"]
    shell = subprocess.run(["bash", "-c", " ".join(map(repr, command)) + '; echo "exit=$?" >&2'],
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert "exit=4" in shell.stderr, shell.stderr
    failed = [line for line in shell.stderr.splitlines() if line.startswith("cvtool:")]
    assert len(failed) == 1 and failed[0].startswith("cvtool: gate failed: val_acc ")
    assert "is under the bound 1.01 (--fail-under)" in failed[0]
    result = strict_json(shell.stdout)
    summary = json.loads((out / "summary.json").read_text())
    assert result["status"] == summary["status"] == "completed"  # the run and its files are kept
    assert [(g["metric"], g["passed"]) for g in result["gates"]] == [
        ("val_acc", False), ("train_acc", True), ("val_loss", True)]
    assert result["gates"] == summary["gates"]
    assert result["gates"][0]["value"] == summary["best_row"]["val_acc"]
    assert summary["best_row"]["epoch"] == summary["best"]["epoch"]


def test_an_unknown_gate_metric_is_exit_2_before_training(cli, tiny_hotdog, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--out", out, "--fail-under", "val_accc=0.5")
    assert code == 2 and "--fail-under: finetune-hotdog reports no metric val_accc; did you mean val_acc?" in err
    assert not out.exists()
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--out", out, "--fail-over", "val_loss")
    assert code == 2 and "expected METRIC=VALUE" in err


def test_eval_gates(cli, base_run):
    best = base_run / "checkpoints" / "best.pt"
    code, stdout, err = cli("eval", "--checkpoint", best, "--fail-under", "val_acc=0", "--json")
    assert code == 0, err
    assert json.loads(stdout)["gates"][0] | {"value": None} == {
        "metric": "val_acc", "kind": "under", "bound": 0.0, "value": None, "passed": True}
    code, stdout, err = cli("eval", "--checkpoint", best, "--fail-over", "val_loss=0")
    assert code == 4 and "cvtool: gate failed: val_loss " in err and "over the bound 0 (--fail-over)" in err
    assert "val_acc" in stdout  # the scores are still shown
    code, _, err = cli("eval", "--checkpoint", best, "--fail-over", "val_los=0")
    assert code == 2 and "did you mean val_loss" in err


def scaled(run: Path, dest: Path, column: str, change: float) -> Path:
    """A copy of ``run`` whose ``column`` is ``change`` off in every epoch."""
    shutil.copytree(run, dest)
    with open(dest / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row[column] = str(float(row[column]) + change)
    with open(dest / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dest


def test_compare_max_drop_in_each_metrics_direction(cli, base_run, tmp_path):
    worse_acc = scaled(base_run, tmp_path / "worse-acc", "val_acc", -0.3)
    worse_loss = scaled(base_run, tmp_path / "worse-loss", "val_loss", +0.3)
    code, stdout, err = cli("compare", base_run, worse_acc, "--max-drop", "val_acc=0.2", "-o", tmp_path / "c.png")
    assert code == 4 and err.count("cvtool: gate failed:") == 1
    assert "worse by more than --max-drop 0.2" in err and "against the baseline's" in err
    code, stdout, err = cli("compare", worse_acc, base_run, "--max-drop", "val_acc=0.2", "-o", tmp_path / "c.png",
                            "--json")
    assert code == 0 and json.loads(stdout)["gates"][0]["passed"]
    code, stdout, err = cli("compare", base_run, worse_loss, "--max-drop", "val_loss=0.2", "--max-drop",
                            "val_acc=0", "-o", tmp_path / "c.png", "--json")
    gates = json.loads(stdout)["gates"]
    assert code == 4 and [(g["metric"], g["passed"]) for g in gates] == [("val_loss", False), ("val_acc", True)]
    assert gates[0]["baseline_dir"] == str(base_run) and gates[0]["value"] > gates[0]["baseline"]
    code, _, err = cli("compare", base_run, worse_loss, "--max-drop", "val_lss=0.2", "-o", tmp_path / "c.png")
    assert code == 2 and "did you mean val_loss" in err
