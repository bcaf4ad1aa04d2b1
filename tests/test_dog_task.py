"""train-dog: what each fine-tuning mode trains, the feature cache, and the submission."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from cvtool import config as cfglib
from cvtool.data import datasets, kaggle_synth
from cvtool.data.images import load_rgb
from cvtool.engine.optim import build_optimizer
from cvtool.errors import InputError
from cvtool.tasks import dog


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def dogs_src(tmp_path_factory) -> Path:
    return kaggle_synth.synthesize_dogs(tmp_path_factory.mktemp("data") / "dogs", n_train=24, n_test=5, classes=3, seed=5)


@pytest.fixture
def root(dogs_src, tmp_path) -> Path:
    return Path(shutil.copytree(dogs_src, tmp_path / "dogs"))


def config(root: Path, *sets: str) -> dog.Config:
    base = [f"data.root={root}", "data.tiny=false", "model.weights=none", "model.num_classes=3",
            "data.image_size=32", "data.resize=36", "data.batch_size=4", "data.num_workers=0",
            "train.device=cpu", "model.hidden=16"]
    return cfglib.load(dog.Config, None, [*base, *sets])


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def train_steps(task, steps: int = 2, lr: float = 0.05) -> list[float]:
    """What the trainer does per step: train_mode hook, param groups, SGD, backward."""
    cfg = task.config
    cfg.optim.lr = lr
    optimizer = build_optimizer(task.param_groups(task.model), cfg.optim)
    task.train_mode(task.model)
    losses = []
    for step in range(steps):
        idx = [(4 * step + k) % len(task.train_data) for k in range(4)]
        batch = (task.train_data.__getitems__(idx) if isinstance(task.train_data, datasets.TensorBatches)
                 else default_collate([task.train_data[i] for i in idx]))
        out = task.train_step(task.model, batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    return losses


def test_frozen_leaves_every_backbone_parameter_and_bn_statistic_unchanged(root):
    task = dog.build(config(root, "finetune.mode=frozen"))
    backbone, head = snapshot(task.model.backbone), snapshot(task.model.head)
    train_steps(task)
    assert changed(backbone, task.model.backbone) == set()
    assert changed(head, task.model.head) == set(head)
    assert not any(p.requires_grad for p in task.model.backbone.parameters())
    assert not any(m.training for m in task.model.backbone.modules()) and task.model.head.training


def test_partial_trains_the_last_stage_and_its_batch_norm_only(root):
    task = dog.build(config(root, "finetune.mode=partial"))
    backbone = snapshot(task.model.backbone)
    train_steps(task)
    moved = changed(backbone, task.model.backbone)
    assert {k for k in moved if not k.startswith(("layer4.", "fc."))} == set()
    assert "layer4.2.conv2.weight" in moved and "fc.weight" in moved
    assert "layer4.0.bn1.running_mean" in moved and "layer4.0.bn1.num_batches_tracked" in moved
    assert task.model.backbone.layer4.training and not task.model.backbone.layer3.training


def test_full_trains_everything_with_a_slower_backbone(root):
    task = dog.build(config(root, "finetune.mode=full", "finetune.backbone_lr_mult=0.1",
                            "model.head_on=features"))
    assert task.model.head[0].in_features == 512
    backbone = snapshot(task.model.backbone)
    cfg = task.config
    optimizer = build_optimizer(task.param_groups(task.model), cfg.optim)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([cfg.optim.lr, cfg.optim.lr * 0.1])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(task.model.parameters()))
    train_steps(task)
    moved = changed(backbone, task.model.backbone)
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer4.1.bn2.weight"} <= moved


def test_cached_and_uncached_frozen_training_give_the_same_head(root):
    torch.manual_seed(0)
    cached = dog.build(config(root, "finetune.cache_features=true", "data.augment=false"))
    torch.manual_seed(0)
    direct = dog.build(config(root, "data.augment=false"))
    assert isinstance(cached.train_data, datasets.TensorBatches)
    assert cached.train_data.inputs.shape == (len(direct.train_data), 1000)
    assert all(torch.equal(a, b) for a, b in zip(cached.model.head.parameters(), direct.model.head.parameters()))
    losses = train_steps(cached, steps=3)
    assert losses == pytest.approx(train_steps(direct, steps=3), rel=1e-4)
    for a, b in zip(cached.model.head.parameters(), direct.model.head.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_head_learns_on_cached_features(root):
    torch.manual_seed(0)
    task = dog.build(config(root, "finetune.cache_features=true", "data.augment=false"))
    losses = train_steps(task, steps=30, lr=0.1)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    task.model.eval()
    metrics = task.evaluate(task.model, [task.val_data.__getitems__(list(range(len(task.val_data))))],
                            torch.device("cpu"))
    assert set(metrics) == {"val_loss", "val_acc"}  # top-5 of 3 classes is always 1: left out
    assert "val_top5" not in task.columns
    assert task.best_metric == "val_loss" and task.best_mode == "min"


@pytest.mark.parametrize("classes, top5", [(5, None), (6, 0.5)])
def test_top5_only_with_more_than_five_classes(classes, top5):
    class Fixed(torch.nn.Module):
        def forward(self, x, from_features=False):
            return x

    logits = torch.arange(classes, dtype=torch.float).repeat(2, 1)  # ranks: last class first
    labels = torch.tensor([classes - 1, 0])  # first right; second is last-ranked
    metrics = dog.make_evaluate(False)(Fixed(), [(logits, labels)], torch.device("cpu"))
    assert metrics.get("val_top5") == top5 and metrics["val_acc"] == 0.5
    assert ("val_top5" in dog.columns_for(classes)) == (top5 is not None)


def read_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(open(path)))


def test_submission_follows_the_sample_columns_and_sums_to_one(root, tmp_path):
    sample = root / "sample_submission.csv"
    rows = read_rows(sample)
    order = [0, 3, 1, 2]
    with open(sample, "w", newline="") as fh:
        csv.writer(fh).writerows([[r[i] for i in order] for r in rows])
    task = dog.build(config(root))
    task.model.eval()
    out = read_rows(Path(task.finish(task.model, tmp_path, torch.device("cpu"))["submission"]))
    assert out[0] == ["id", "breed_002", "breed_000", "breed_001"]
    assert sorted(r[0] for r in out[1:]) == sorted(p.stem for p in (root / "test").iterdir())
    probs = np.array([[float(v) for v in r[1:]] for r in out[1:]])
    assert np.allclose(probs.sum(1), 1, atol=1e-6)
    first = task.model(dog.eval_transform(task.config)(load_rgb(root / "test" / f"{out[1][0]}.jpg"))[None])
    expected = first.softmax(1)[0, [2, 0, 1]].detach().numpy()
    assert np.allclose(probs[0], expected, atol=1e-5)


def test_predict_writes_a_kaggle_submission_and_ranks_images(root, tmp_path):
    cfg = config(root)
    model = dog.build_model(cfg).eval()
    meta = {"classes": ["breed_000", "breed_001", "breed_002"]}
    [sub] = dog.predict(model, cfg, meta, [], torch.device("cpu"), {"kaggle_test": root / "test", "out": tmp_path})
    assert sub["rows"] == 5 and len(read_rows(tmp_path / "submission.csv")) == 6
    image = next((root / "test").iterdir())
    [result] = dog.predict(model, cfg, meta, [image], torch.device("cpu"), {"top": 2})
    assert len(result["top"]) == 2 and result["class"] in meta["classes"]


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows + [[rows[1][0], "breed_000"]], "line 26: duplicate id"),
    (lambda rows: rows[:3] + [["feedface", "breed_001"]], "line 4: unknown id feedface: no image train/feedface.jpg"),
    (lambda rows: rows[:2] + [[rows[2][0], "poodle"]], "line 3: breed 'poodle' is not a known class"),
])
def test_bad_labels_name_file_and_line(root, edit, message):
    path = root / "labels.csv"
    rows = read_rows(path)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(edit(rows))
    with pytest.raises(InputError, match=message) as err:
        dog.build(config(root))
    assert str(path) in str(err.value)


def test_unreadable_image_and_bad_options(root):
    with pytest.raises(cfglib.ConfigError, match="cache_features needs finetune.mode: frozen"):
        dog.build(config(root, "finetune.cache_features=true"))
    with pytest.raises(cfglib.ConfigError, match="num_classes is 120"):
        dog.build(config(root, "model.num_classes=120"))
    victim = sorted((root / "train").iterdir())[0]
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="is not a readable image") as err:
        dog.build(config(root))
    assert str(victim) in str(err.value)
