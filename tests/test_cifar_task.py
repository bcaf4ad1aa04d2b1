"""train-cifar: building from the Kaggle layout, learning, and the submission."""

from __future__ import annotations

import csv
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import overfit

from cvtool import config as cfglib
from cvtool.data import kaggle, kaggle_synth
from cvtool.errors import InputError
from cvtool.tasks import cifar


@pytest.fixture(scope="session")
def cifar_src(tmp_path_factory) -> Path:
    return kaggle_synth.synthesize_cifar(tmp_path_factory.mktemp("data") / "cifar", n_train=60, n_test=11, seed=4)


@pytest.fixture
def root(cifar_src, tmp_path) -> Path:
    return Path(shutil.copytree(cifar_src, tmp_path / "cifar"))


pytestmark = pytest.mark.usefixtures("one_thread")


def config(root: Path, *sets: str) -> cifar.Config:
    base = [f"data.root={root}", "data.tiny=false", "model.width=4", "train.device=cpu", "data.batch_size=8"]
    return cfglib.load(cifar.Config, None, [*base, *sets])


def test_build_splits_in_memory_and_caches(root):
    task = cifar.build(config(root))
    assert (len(task.train_data), len(task.val_data)) == (50, 10)
    assert torch.bincount(task.val_data.labels, minlength=10).tolist() == [1] * 10
    assert task.metadata["classes"] == list(kaggle.CIFAR10_CLASSES)
    assert task.train_data.inputs.dtype == torch.uint8 and task.train_data.inputs.shape[1:] == (3, 32, 32)
    assert len(list((root / ".cvtool-cache").glob("cifar-train-*.pt"))) == 1
    assert sorted(p.name for p in root.iterdir()) == [".cvtool-cache", "sampleSubmission.csv", "test", "train",
                                                      "trainLabels.csv"]
    assert len(list((root / "train").iterdir())) == 60
    assert task.best_metric == "val_acc" and task.best_mode == "max"


def test_val_split_is_stratified_and_train_valid_has_none(root):
    task = cifar.build(config(root, "data.valid_ratio=0.2"))
    labels = kaggle.read_labels(root, kaggle.CIFAR).labels
    assert torch.bincount(task.val_data.labels, minlength=10).tolist() == \
        (torch.bincount(labels, minlength=10) * 0.2).floor().clamp(min=1).long().tolist()
    both = cifar.build(config(root, "data.split=train_valid"))
    assert len(both.train_data) == 60 and len(both.val_data) == 0


@pytest.mark.parametrize("arch, augment, lr", [("resnet18", "book", 3e-3), ("fastnet", "flip_translate", 2e-2)])
def test_a_few_steps_lower_the_loss(root, arch, augment, lr):
    torch.manual_seed(0)
    cfg = config(root, f"model.arch={arch}", f"data.augment={augment}", "model.width=8")
    task = cifar.build(cfg)
    model = task.model
    batch = task.train_data.__getitems__(list(range(32)))
    losses, out = overfit(task, batch, steps=20, lr=lr)
    assert out.count == 32 and "acc" in out.stats
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    model.eval()
    with torch.no_grad():
        metrics = task.evaluate(model, [task.val_data.__getitems__(list(range(6)))], torch.device("cpu"))
    assert set(metrics) == {"val_loss", "val_acc"} and 0 <= metrics["val_acc"] <= 1


def test_train_step_smooths_labels_after_the_batch_augmentation(root):
    cfg = config(root, "loss.label_smoothing=0.2", "data.augment=flip_translate")
    task = cifar.build(cfg)
    model = task.model.eval()
    images, labels = task.train_data.__getitems__(list(range(8)))
    torch.manual_seed(1)
    out = task.train_step(model, (images, labels))
    torch.manual_seed(1)
    logits = model(cifar.augmenter(cfg)(images, train=True))
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2))
    assert out.stats["acc"][0] == (logits.argmax(1) == labels).sum() and out.count == 8


def read_submission(path: Path) -> list[list[str]]:
    return list(csv.reader(open(path)))


def test_finish_writes_one_row_per_test_id(root, tmp_path):
    task = cifar.build(config(root, "data.test_chunk=4", "eval.tta_flip=true"))
    task.model.eval()
    artifacts = task.finish(task.model, tmp_path, torch.device("cpu"))
    rows = read_submission(Path(artifacts["submission"]))
    assert rows[0] == ["id", "label"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, 12)]
    assert {r[1] for r in rows[1:]} <= set(kaggle.CIFAR10_CLASSES)


def test_predict_kaggle_test_and_images(root, tmp_path):
    cfg = config(root)
    model = cifar.build_model(cfg).eval()
    meta = {"classes": list(kaggle.CIFAR10_CLASSES)}
    results = cifar.predict(model, cfg, meta, [], torch.device("cpu"), {"kaggle_test": root, "out": tmp_path})
    assert results[0]["rows"] == 11 and Path(results[0]["submission"]) == tmp_path / "submission.csv"
    assert len(read_submission(tmp_path / "submission.csv")) == 12
    picture = root / "test" / "3.png"
    [result] = cifar.predict(model, cfg, meta, [picture], torch.device("cpu"), {"top": 3})
    assert len(result["top"]) == 3 and result["class"] in kaggle.CIFAR10_CLASSES
    assert abs(sum(t["probability"] for t in cifar.predict(model, cfg, meta, [picture], torch.device("cpu"),
                                                             {"top": 10})[0]["top"]) - 1) < 1e-4


def test_torchvision_layout_is_detected(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 10) for i in range(1, 6)), ("test_batch", 5)]:
        blob = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(blob, protocol=2))
    task = cifar.build(config(tmp_path))
    assert len(task.train_data) + len(task.val_data) == 50 and len(task.val_data) == 10
    task.model.eval()
    rows = read_submission(Path(task.finish(task.model, tmp_path / "run", torch.device("cpu"))["submission"]))
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]


def test_bad_config_and_bad_csv(root):
    with pytest.raises(cfglib.ConfigError, match="num_workers: 0"):
        cifar.build(config(root, "data.on_device=true", "data.num_workers=2"))
    with pytest.raises(cfglib.ConfigError, match="crop_scale"):
        cifar.build(config(root, "data.crop_scale=[0.9, 0.5]"))
    (root / "trainLabels.csv").write_text("id,label\n1,cat\n1,dog\n")
    with pytest.raises(InputError, match=r"trainLabels.csv line 3: duplicate id 1"):
        cifar.build(config(root))


def test_cli_trains_and_writes_the_submission(cli, root, tmp_path):
    code, out, err = cli("train-cifar", "--set", f"data.root={root}", "--set", "data.tiny=false",
                         "--set", "model.width=4", "--set", "data.batch_size=16", "--epochs", "1",
                         "--device", "cpu", "--out", tmp_path / "run")
    assert code == 0, err
    rows = read_submission(tmp_path / "run" / "submission.csv")
    assert len(rows) == 12
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,train_loss,train_acc,val_loss,val_acc")

    (root / "trainLabels.csv").write_text("id,label\n1,cat\n2,unicorn\n")
    code, out, err = cli("train-cifar", "--set", f"data.root={root}", "--set", "data.tiny=false",
                         "--device", "cpu", "--out", tmp_path / "run2")
    assert code == 2 and "line 3" in err and "unicorn" in err and "Traceback" not in err
