"""TensorBoard event files: the tags and steps a run writes, resume without duplicates, a failing writer."""

import json
import logging
import os
import signal

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cvtool.engine import tensorboard
from cvtool.tasks import classify

STEPS_PER_EPOCH = 4  # the tiny hotdog set: 16 training images, batches of 4


def events(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


def test_flatten_gives_dotted_hparam_values():
    flat = tensorboard.flatten({"optim": {"lr": 0.1, "name": "sgd"}, "model": {"weights": None},
                                "data": {"mean": [0.5, 0.4]}, "train": {"amp": False}})
    assert flat == {"optim.lr": 0.1, "optim.name": "sgd", "model.weights": "none", "data.mean": "[0.5, 0.4]",
                    "train.amp": False}


def test_a_failing_writer_warns_once_and_switches_off(tmp_path, monkeypatch, caplog):
    board = tensorboard.Board(tmp_path, every_steps=1)
    assert board.on

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(board.writer, "add_scalar", full_disk)
    with caplog.at_level(logging.WARNING, logger="cvtool.engine.tensorboard"):
        for step in range(1, 5):
            board.train_step(step, torch.tensor(1.0), 0.1)
        board.epoch({"val_acc": 0.5}, 4)
        board.close()
    warnings = [r for r in caplog.records if r.name == "cvtool.engine.tensorboard"]
    assert len(warnings) == 1 and "No space left on device" in warnings[0].getMessage()
    assert not board.on


def test_an_off_board_writes_nothing(tmp_path):
    board = tensorboard.Board(tmp_path, enabled=False)
    board.epoch({"val_acc": 0.5}, 1, pictures=lambda: pytest.fail("pictures drawn for an off board"))
    board.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_run_logs_every_column_per_epoch_and_loss_and_lr_per_step(cli, tiny_hotdog, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "2", "--set", "log.every_steps=2", "--out", out)
    assert code == 0, err
    acc = events(out)
    columns = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds",
               "images_per_second"]
    for column in columns:
        assert steps(acc, f"epoch/{column}") == [4, 8], column
    assert [e.value for e in acc.Scalars("epoch/epoch")] == [1.0, 2.0]
    assert steps(acc, "step/train_loss") == [2, 4, 6, 8]
    assert steps(acc, "step/lr") == [2, 4, 6, 8]
    metrics = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()]
    val_acc = [float(row[metrics[0].index("val_acc")]) for row in metrics[1:]]
    assert [e.value for e in acc.Scalars("epoch/val_acc")] == pytest.approx(val_acc, rel=1e-5)
    assert steps(acc, "hparam/best_val_acc") == [8]
    assert "final/curves" in acc.Tags()["images"]
    assert [e.step for e in acc.Images("misclassified")] == [4, 8]


@pytest.mark.slow
def test_log_tensorboard_false_writes_no_event_file(cli, tiny_hotdog, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1",
                       "--set", "log.tensorboard=false", "--out", out)
    assert code == 0, err
    assert not list(out.glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_resume_does_not_duplicate_steps(cli, tiny_hotdog, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = classify.train_step

    def interrupting_step(model, batch):
        calls["n"] += 1
        if calls["n"] == 6:  # epoch 2, step 2: the checkpoint holds global step 6
            os.kill(os.getpid(), signal.SIGINT)
        return original(model, batch)

    out = tmp_path / "run"
    monkeypatch.setattr(classify, "train_step", interrupting_step)
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "3", "--set", "log.every_steps=1", "--out", out)
    monkeypatch.setattr(classify, "train_step", original)
    assert code == 130, err
    # what a process killed after its checkpoint may have left: events past the saved step
    stray = torch.utils.tensorboard.SummaryWriter(str(out), filename_suffix=".stray")
    for step in (7, 8):
        stray.add_scalar("step/train_loss", 999.0, step)
    stray.close()

    code, _, err = cli("finetune-hotdog", "--resume", "--out", out)
    assert code == 0, err
    acc = events(out)
    assert steps(acc, "step/train_loss") == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    assert 999.0 not in [e.value for e in acc.Scalars("step/train_loss")]
    assert steps(acc, "epoch/val_acc") == [4, 8, 12]


@pytest.mark.slow
def test_a_failing_event_writer_leaves_the_run_complete(cli, tiny_hotdog, tmp_path, monkeypatch, caplog):
    from torch.utils.tensorboard import writer

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.FileWriter, "add_event", full_disk)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="cvtool.engine.tensorboard"):
        code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "2", "--set", "log.every_steps=1",
                           "--out", out)
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    warnings = [r for r in caplog.records if r.name == "cvtool.engine.tensorboard"]
    assert len(warnings) == 1 and "No space left on device" in warnings[0].getMessage()


def test_ssd_draws_its_boxes_per_epoch_for_the_board(tmp_path):
    from cvtool import config as cfglib
    from cvtool.data.bananas import synthesize
    from cvtool.tasks import ssd

    root = synthesize(tmp_path / "bananas", n_train=4, n_val=2, size=64, seed=3)
    sets = [f"data.root={root}", "data.download=false", "data.image_size=64", "model.width=0.25"]
    task = ssd.build(cfglib.load(ssd.Config, None, sets))
    board = tensorboard.Board(tmp_path / "run", every_steps=1)
    board.epoch({"val_map50": 0.0}, 1, pictures=lambda: task.pictures(task.model.eval(), torch.device("cpu")))
    board.close()
    acc = events(tmp_path / "run")
    assert acc.Tags()["images"] == ["predictions"]
    picture = acc.Images("predictions")[0]
    assert picture.step == 1 and picture.width >= 2 * 256


def test_fcn_draws_image_truth_and_prediction_per_epoch_for_the_board(tmp_path, one_thread):
    import numpy as np

    from cvtool import config as cfglib
    from cvtool.data import voc
    from cvtool.tasks import fcn

    root = voc.synthesize(tmp_path / "VOCdevkit", n_train=2, n_val=3, size=48, classes=3)
    cfg = cfglib.load(fcn.Config, None, [f"data.root={root}", "data.download=false", "data.crop_size=[32, 48]",
                                         "model.weights=null", "model.width=8", "model.num_classes=4"])
    task = fcn.build(cfg)
    board = tensorboard.Board(tmp_path / "run", every_steps=1)
    board.epoch({"val_miou": 0.0}, 2, pictures=lambda: task.pictures(task.model.eval(), torch.device("cpu")))
    board.close()
    picture = events(tmp_path / "run").Images("predictions")[0]
    assert picture.step == 2 and picture.height == 3 * 160 + 2 * 4  # one row per validation image
    grid = task.pictures(task.model.eval(), torch.device("cpu"))["predictions"]
    image, truth = fcn.first_samples(task.val_data)(1)[0]
    width = round(image.shape[-1] * 160 / image.shape[-2])
    truth_panel = grid[:, :160, width + 4:2 * width + 4]  # row 1: image | gap | truth | gap | prediction
    colours = {tuple(px) for px in np.unique(truth_panel.reshape(3, -1).T.numpy(), axis=0).tolist()}
    assert colours == {tuple(c) for c in voc.PALETTE[np.unique(truth.numpy())].tolist()}  # nearest: no blends


def test_stylize_logs_its_losses_and_snapshots_with_a_run_dir(tmp_path, one_thread):
    import numpy as np
    from PIL import Image

    from cvtool import config as cfglib
    from cvtool.tasks import stylize as st

    pixels = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "content.png")
    Image.fromarray(pixels[::-1]).save(tmp_path / "style.png")
    cfg = cfglib.load(st.Config, None, ["model.weights=none", "image.size=[24,32]", "run.device=cpu",
                                        "optim.steps=4", "run.save_every=2", "log.every_steps=2"])
    st.stylize(cfg, tmp_path / "content.png", tmp_path / "style.png", tmp_path / "out.png", out_dir=tmp_path / "run")
    acc = events(tmp_path / "run")
    for loss in ("content", "style", "tv", "total"):
        assert steps(acc, f"stylize/{loss}") == [2, 4], loss
    assert [e.step for e in acc.Images("snapshot")] == [2, 4]


class Fixed(torch.nn.Module):
    """Predicts class 0 for every image, the surer the brighter its first pixel."""

    def forward(self, x):
        p = 0.5 + x[:, 0, 0, 0].float() / 512
        return torch.stack([p, 1 - p], 1).clamp_min(1e-6).log()


def caption_colours(grid, tile):
    """The caption colours in tile ``tile`` of a 4-wide grid: {"red", "green"} present."""
    row, col = divmod(tile, 4)
    top = 4 + row * (classify.TILE + classify.CAPTION + 4) + classify.TILE
    left = 4 + col * (classify.TILE + 4)
    band = grid[:, top:top + 15, left:left + classify.TILE].reshape(3, -1).T.int()
    r, g, b = band[:, 0], band[:, 1], band[:, 2]
    found = {"red": ((r > 150) & (g < 110)).any(), "green": ((g > 90) & (r < 90) & (b < 120)).any()}
    return {colour for colour, present in found.items() if present}


def test_classifier_pictures_show_the_misclassified_first_most_confident_first():
    confidences = [200, 90, 250, 120, 180, 230]  # first-pixel values: P(class 0) = 0.5 + v / 512
    labels = [0, 1, 0, 1, 1, 0]  # the model always says 0: images 1, 3, 4 are wrong
    held = [(torch.full((3, 8, 8), v, dtype=torch.uint8), torch.full((3, 8, 8), v, dtype=torch.uint8), y)
            for v, y in zip(confidences, labels)]
    pictures = classify.make_pictures(lambda n: held[:n], ["cat", "dog"], count=4)
    grid = pictures(Fixed(), torch.device("cpu"))["misclassified"]
    assert grid.dtype == torch.uint8 and grid.shape[0] == 3
    assert grid.shape[-1] == 4 * classify.TILE + 5 * 4  # four tiles in a row
    tile_values = [int(grid[0, 10, 4 + k * (classify.TILE + 4) + 10]) for k in range(4)]
    assert tile_values == [180, 120, 90, 250]  # wrong ones by confidence, then the most confident right one
    assert [caption_colours(grid, k) for k in range(4)] == [{"red"}, {"red"}, {"red"}, {"green"}]


def test_classifier_spread_reaches_both_ends_of_a_class_sorted_list():
    assert classify.spread(3, 5) == [0, 1, 2]
    assert classify.spread(100, 5) == [0, 25, 50, 74, 99]
    assert classify.spread(10, 1) == [0]


@pytest.mark.parametrize("name", ["cifar", "dog"])
def test_kaggle_classifiers_draw_misclassified_images_per_epoch(tmp_path, one_thread, name):
    from test_bad_images import CASES

    case = CASES[name]
    cfg = case.config(case.make(tmp_path / name), "error")
    cfg.data.split = "train"  # the cases train on everything; pictures need a validation split
    task = case.build(cfg)
    board = tensorboard.Board(tmp_path / "run", every_steps=1)
    board.epoch({"val_acc": 0.0}, 3, pictures=lambda: task.pictures(task.model.eval(), torch.device("cpu")))
    board.close()
    picture = events(tmp_path / "run").Images("misclassified")[0]
    tiles = min(4, len(task.val_data))
    assert picture.step == 3
    assert picture.width == tiles * classify.TILE + (tiles + 1) * 4


def test_classifier_pictures_without_a_validation_split_draw_nothing():
    pictures = classify.make_pictures(lambda n: [], ["cat", "dog"])
    assert pictures(Fixed(), torch.device("cpu")) == {}
