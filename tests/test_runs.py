"""`cvtool runs` and `cvtool compare` on real tiny runs (and deliberately damaged copies)."""

import json
import os
import shutil
import signal

import pytest
from PIL import Image

from cvtool.cli import main
from cvtool.tasks import classify

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, hotdog_root):
    """Two one-epoch finetune-hotdog runs that differ in optim.lr only."""
    from conftest import TINY_HOTDOG

    base = tmp_path_factory.mktemp("runs")
    for name, lr in (("a", "0.001"), ("b", "0.003")):
        code = main(["finetune-hotdog", "--set", f"data.root={hotdog_root}", *TINY_HOTDOG, "--set", f"optim.lr={lr}",
                     "--epochs", "2", "--max-steps", "2", "--out", str(base / name)])
        assert code == 0
    return base


@pytest.mark.loose_json  # the damaged summary.json
def test_runs_lists_completed_interrupted_failed_and_damaged(cli, tiny_hotdog, two_runs, tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    shutil.copytree(two_runs / "a", folder / "done")
    shutil.copytree(two_runs / "a", folder / "damaged")
    (folder / "damaged" / "summary.json").write_text('{"status": "compl')
    (folder / "not-a-run").mkdir()
    (folder / "not-a-run" / "notes.txt").write_text("hello")

    original = classify.train_step

    def interrupting(model, batch):
        os.kill(os.getpid(), signal.SIGINT)
        return original(model, batch)

    monkeypatch.setattr(classify, "train_step", interrupting)
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "2", "--out", folder / "stopped")[0] == 130

    def diverging(model, batch):
        out = original(model, batch)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(classify, "train_step", diverging)
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "2", "--out", folder / "broken")[0] == 1
    monkeypatch.setattr(classify, "train_step", original)

    code, out, err = cli("runs", folder, "--json")
    assert code == 0, err
    listed = {os.path.basename(r["run_dir"]): r for r in json.loads(out)}
    assert set(listed) == {"done", "damaged", "stopped", "broken"}
    assert listed["done"]["status"] == "completed" and listed["done"]["task"] == "finetune-hotdog"
    assert (listed["done"]["epochs_done"], listed["done"]["epochs"]) == (2, 2)
    assert listed["done"]["best_metric"] == "val_acc" and listed["done"]["best_epoch"] in (1, 2)
    assert listed["done"]["images_per_second"] > 0 and listed["done"]["wall_seconds"] >= 0
    assert listed["stopped"]["status"] == "interrupted"
    assert listed["broken"]["status"] == "failed" and "nan" in listed["broken"]["reason"]
    assert listed["damaged"]["status"] == "unreadable" and "summary.json is not valid JSON" in listed["damaged"]["reason"]

    code, out, err = cli("runs", folder)
    assert code == 0 and "Traceback" not in err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["task", "status", "epochs", "best"] and len(lines) == 5
    assert any("unreadable: summary.json is not valid JSON" in line for line in lines)
    code, out, _ = cli("runs", folder, "--task", "train-dog")
    assert code == 0 and out.startswith("no runs under")


def test_runs_refuses_a_folder_that_does_not_exist(cli, tmp_path):
    code, out, err = cli("runs", tmp_path / "nowhere")
    assert code == 2 and out == "" and err.count("\n") == 1 and "does not exist" in err


def test_compare_draws_the_curves_and_names_what_differs(cli, two_runs, tmp_path):
    picture = tmp_path / "compare.png"
    code, out, err = cli("compare", two_runs / "a", two_runs / "b", "-o", picture, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "finetune-hotdog" and result["metric"] == "val_acc" and result["mode"] == "max"
    assert result["differing"] == {"optim.lr": [0.001, 0.003]}
    assert [r["label"] for r in result["runs"]] == ["lr=0.001", "lr=0.003"]
    assert all(0 <= r["best"] <= 1 and r["epoch"] in (1, 2) for r in result["runs"])
    width, height = Image.open(picture).size
    assert width >= 800 and height >= 400

    code, out, err = cli("compare", two_runs / "a", two_runs / "b", "--metric", "val_loss", "-o", picture)
    assert code == 0, err
    assert "best val_loss (min)" in out and "optim.lr" in out and "0.001 | 0.003" in out
    assert "train.epochs" not in out  # equal in both runs, so not listed


def test_compare_refuses_bad_input_with_one_line(cli, two_runs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(two_runs / "b", other)
    summary = json.loads((other / "summary.json").read_text())
    (other / "summary.json").write_text(json.dumps({**summary, "task": "train-dog"}))
    (tmp_path / "empty").mkdir()
    cases = [
        ((two_runs / "a", tmp_path / "empty"), "is not a run directory"),
        ((two_runs / "a", other), "different tasks"),
        ((two_runs / "a", two_runs / "b", "--metric", "val_map50"), "no run has the metric val_map50"),
        ((two_runs / "a",), "at least two runs"),
    ]
    for args, message in cases:
        code, out, err = cli("compare", *args, "-o", tmp_path / "x.png")
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, (args, err)
    assert not (tmp_path / "x.png").exists()
