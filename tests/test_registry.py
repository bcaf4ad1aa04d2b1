"""A task is one module: a plugin registers itself and is a working cvtool command, no cli.py edit."""

import json
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from cvtool.engine.task import Task
from cvtool.tasks import registry
from cvtool.tasks.registry import TaskSpec

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture
def toy(monkeypatch):
    """train-toy installed as a plugin: an entry point of the cvtool.tasks group; removed afterwards."""
    registry.discover()
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setattr(registry, "entry_points", lambda: [EntryPoint("train-toy", "toy_task", registry.GROUP)])
    import toy_task

    registry.register(toy_task.SPEC)  # a second test finds the module imported already
    return toy_task


def test_builtin_tasks_are_discovered():
    commands = {s.command for s in registry.specs()}
    assert {"finetune-hotdog", "train-ssd", "train-fcn", "stylize", "train-cifar", "train-dog", "train-rcnn"} <= commands
    assert set(registry.synth_writers()) >= {"hotdog", "bananas", "voc", "cifar", "dogs", "voc-detection"}
    assert registry.with_option("kaggle_test") == ["train-cifar", "train-dog"]
    assert registry.with_option("threshold") == ["train-rcnn", "train-ssd"]


def test_a_spec_is_checked_when_registered(toy):
    with pytest.raises(ValueError, match="unknown predict options"):
        TaskSpec("x", "x", toy.Config, toy.build_model, toy.predict, build=toy.build, predict_options=("top",))

    @dataclass
    class NoTrain:
        data: int = 0

    with pytest.raises(TypeError, match="must be a DataConfig"):
        TaskSpec("x", "x", NoTrain, toy.build_model, toy.predict, build=toy.build)
    with pytest.raises(ValueError, match="two tasks claim"):
        registry.register(TaskSpec("train-toy", "x", Task, None, None, family="stylize"))


def test_a_plugin_task_is_a_command(cli, toy, tmp_path):
    code, out, err = cli("--help")
    assert code == 0 and "train-toy" in out and "four-filter CNN" in out
    code, out, err = cli("train-toy", "--help")
    assert code == 0 and "--epochs" in out and "--resume" in out
    code, out, err = cli("config", "show", "train-toy")
    assert code == 0 and "channels: 4  # convolution filters" in out
    code, out, err = cli("data", "synth", "toy", "--out", tmp_path / "toy", "--n", "4", "--size", "16")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "toy" / "train").iterdir()) == ["hotdog", "not-hotdog"]


@pytest.mark.slow
def test_a_plugin_task_trains_and_predicts(cli, toy, tmp_path, one_thread):
    root = toy.synthesize(tmp_path / "toy", n=4, size=16)
    run = tmp_path / "run"
    code, out, err = cli("train-toy", "--set", f"data.root={root}", "--device", "cpu", "--epochs", "2",
                         "--out", run, "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"
    for name in ("config.yaml", "env.json", "metrics.csv", "summary.json", "curves.png", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    image = next((root / "test" / "hotdog").iterdir())
    code, out, err = cli("predict", "--checkpoint", run / "checkpoints" / "best.pt", image, "--json")
    assert code == 0, err
    [result] = json.loads(out)
    assert result["image"] == str(image) and result["class"] in ("hotdog", "not-hotdog")
    code, out, err = cli("predict", "--checkpoint", run / "checkpoints" / "best.pt", image, "--threshold", "0.5")
    assert code == 2 and "--threshold is for train-rcnn and train-ssd checkpoints" in err
    code, out, err = cli("eval", "--checkpoint", run / "checkpoints" / "best.pt", "--json")
    assert code == 0, err
    assert set(json.loads(out)["metrics"]) == {"val_loss", "val_acc"}
