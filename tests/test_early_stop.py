"""Early stopping: train.patience epochs without a gain > train.min_delta end the run; resume keeps the count."""

import json

import pytest

from cvtool.engine import checkpoint, trainer

pytestmark = pytest.mark.slow


@pytest.fixture
def scripted(monkeypatch):
    """Validation reports val_acc from a script, one value per epoch (the weights still train)."""
    def install(values):
        it = iter(values)
        monkeypatch.setattr(trainer, "evaluate", lambda *args, **kwargs: {"val_loss": 1.0, "val_acc": next(it)})
    return install


def run(cli, tiny_hotdog, out, *extra):
    return cli("finetune-hotdog", *tiny_hotdog, "--max-steps", "1", "--out", out, *extra)


def test_patience_and_min_delta(cli, tiny_hotdog, tmp_path, scripted):
    scripted([0.5, 0.6, 0.6, 0.6, 0.9, 0.9])
    code, stdout, err = run(cli, tiny_hotdog, tmp_path / "a", "--epochs", "6", "--set", "train.patience=2")
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert code == 0 and "stopping early: no gain of val_acc > 0 in 2 epochs" in stdout
    assert summary["status"] == "completed" and summary["stopped_early"] and summary["stopped_epoch"] == 4
    assert summary["epochs_completed"] == 4 and summary["best"]["epoch"] == 2
    scripted([0.5, 0.6, 0.6, 0.6])
    code, _, _ = run(cli, tiny_hotdog, tmp_path / "b", "--epochs", "6", "--set", "train.patience=2",
                     "--set", "train.min_delta=0.15")
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert code == 0 and summary["stopped_epoch"] == 3 and summary["best"]["epoch"] == 2  # best.pt still follows gains


def test_off_by_default(cli, tiny_hotdog, tmp_path, scripted):
    scripted([0.5, 0.5, 0.5])
    code, _, _ = run(cli, tiny_hotdog, tmp_path / "a", "--epochs", "3")
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert code == 0 and summary["epochs_completed"] == 3 and not summary["stopped_early"]
    assert summary["stopped_epoch"] is None


def test_resume_keeps_the_count_and_a_stopped_run_needs_more_patience(cli, tiny_hotdog, tmp_path, scripted):
    out = tmp_path / "run"
    scripted([0.5, 0.6, 0.6])
    assert run(cli, tiny_hotdog, out, "--epochs", "3", "--set", "train.patience=2")[0] == 0
    assert checkpoint.load(out / "checkpoints" / "last.pt")["early_stop"]["since"] == 1
    scripted([0.6, 0.6, 0.6])
    code, _, err = run(cli, tiny_hotdog, out, "--resume", "--epochs", "6")
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, err
    assert summary["stopped_epoch"] == 4  # 1 epoch before the interruption + 1 after it
    code, _, err = run(cli, tiny_hotdog, out, "--resume", "--epochs", "6")
    assert code == 2 and "stopped early at epoch 4" in err and "train.patience=N with N > 2" in err
    scripted([0.9, 0.9])
    code, _, err = run(cli, tiny_hotdog, out, "--resume", "--epochs", "6", "--set", "train.patience=4")
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, err
    assert summary["epochs_completed"] == 6 and summary["best"]["epoch"] == 5 and not summary["stopped_early"]
