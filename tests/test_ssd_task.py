"""train-ssd: the banana loader (real layout, bad input), synthetic data and the task's parts."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import overfit

from cvtool import config as cfglib
from cvtool.data.bananas import Augment, BananaDataset, read_labels, synthesize
from cvtool.errors import InputError, MissingResource
from cvtool.models.tinyssd import TinySSD
from cvtool.ops.boxes import multibox_target
from cvtool.tasks import ssd

REPO = Path(__file__).resolve().parents[1]


def write_split(root: Path, rows: list[list], images: dict[str, tuple[int, int]], split: str = "train") -> Path:
    folder = root / f"bananas_{split}"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name, size in images.items():
        Image.new("RGB", size, (40, 90, 160)).save(folder / "images" / name)
    with (folder / "label.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["img_name", "label", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows)
    return folder


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return synthesize(tmp_path_factory.mktemp("bananas"), n_train=16, n_val=4, size=64, seed=3)


def tiny_config(root: Path, **sets) -> ssd.Config:
    items = {"data.root": str(root), "data.download": False, "data.image_size": 64, "data.batch_size": 8,
             "model.width": 0.25, **sets}
    return cfglib.load(ssd.Config, None, [f"{k}={v}" for k, v in items.items()])


# --------------------------------------------------------------------------- loader


def test_labels_are_normalised_per_image_and_padded(tmp_path):
    write_split(tmp_path, [["a.png", 0, 10, 5, 30, 15], ["b.png", 0, 0, 0, 100, 50], ["a.png", 0, 0, 0, 4, 4]],
                {"a.png": (40, 20), "b.png": (100, 50)})
    data = BananaDataset(tmp_path, "train", 32)
    assert len(data) == 2 and data.max_objects == 2
    item = data[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.uint8
    assert torch.allclose(item["labels"], torch.tensor([[0, 0.25, 0.25, 0.75, 0.75], [0, 0, 0, 0.1, 0.2]]))
    assert data[1]["labels"].tolist() == [[0, 0, 0, 1, 1], [-1, 0, 0, 0, 0]]


@pytest.mark.parametrize("row, message", [
    (["a.png", 0, "ten", 5, 30, 15], "line 2: xmin 'ten' is not a number"),
    (["a.png", "x", 10, 5, 30, 15], "line 2: label 'x' is not an integer"),
    (["a.png", 0, 30, 5, 30, 15], "line 2: box (30, 5, 30, 15) needs xmin < xmax"),
    (["a.png", 0, 10, 5, 41, 15], "line 2: box (10, 5, 41, 15) lies outside the 40x20 image a.png"),
    (["a.png", 0, -1, 5, 30, 15], "lies outside"),
    (["gone.png", 0, 10, 5, 30, 15], "line 2: image"),
    (["a.png", 0, 10, 5, 30], "line 2: expected 6 fields"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    folder = write_split(tmp_path, [row], {"a.png": (40, 20)})
    with pytest.raises(InputError, match="label.csv") as err:
        read_labels(folder)
    assert message in str(err.value)


def test_missing_label_file_and_bad_header(tmp_path):
    with pytest.raises(InputError, match=r"bananas_train/label.csv is missing; expected layout"):
        BananaDataset(tmp_path, "train", 32)
    folder = write_split(tmp_path, [], {})
    (folder / "label.csv").write_text("name,cls,x0,y0,x1,y1\n")
    with pytest.raises(InputError, match="line 1: expected header"):
        read_labels(folder)


def test_class_index_checked_against_num_classes(tmp_path):
    folder = write_split(tmp_path, [["a.png", 1, 1, 1, 5, 5]], {"a.png": (20, 20)})
    with pytest.raises(InputError, match=r"line 2: label 1 is not a valid class index \(model.num_classes is 1\)"):
        read_labels(folder, num_classes=1)


def test_synthetic_set_round_trips_through_the_loader(synth):
    for split, n in (("train", 16), ("val", 4)):
        rows = list(csv.reader((synth / f"bananas_{split}" / "label.csv").open()))
        assert rows[0] == ["img_name", "label", "xmin", "ymin", "xmax", "ymax"] and len(rows) == n + 1
    data = BananaDataset(synth, "train", 32)
    assert len(data) == 16 and data.labels.shape == (16, 1, 5)
    boxes = data.labels[:, 0, 1:]
    assert (data.labels[:, 0, 0] == 0).all()
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2:] - boxes[:, :2] > 0.05).all()
    # the box holds the banana: its pixels are yellower (R+G-2B) than the rest of the picture
    img = torch.from_numpy(np.array(Image.open(synth / "bananas_train/images/0.png"))).float()
    x1, y1, x2, y2 = (int(v) for v in rows_of(synth, "train")[0][2:])
    yellow = img[..., 0] + img[..., 1] - 2 * img[..., 2]
    inside = yellow[y1:y2, x1:x2]
    assert inside.max() > yellow.max() - 1 and inside.mean() > yellow.mean()
    again = synthesize(synth.parent / "again", n_train=16, n_val=4, size=64, seed=3)
    assert rows_of(again, "train") == rows_of(synth, "train")


def rows_of(root: Path, split: str) -> list[list[str]]:
    return list(csv.reader((root / f"bananas_{split}" / "label.csv").open()))[1:]


def test_flip_and_zoom_move_boxes_with_pixels(tmp_path):
    img = torch.zeros(3, 32, 32, dtype=torch.uint8)
    img[:, 8:16, 4:12] = 255  # a white square, the only object
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / "sq.png")
    folder = write_split(tmp_path, [["sq.png", 0, 4, 8, 12, 16]], {})
    (tmp_path / "sq.png").rename(folder / "images" / "sq.png")
    data = BananaDataset(tmp_path, "train", 32, augment=Augment(flip=True, scale_jitter=0.3))
    torch.manual_seed(0)
    flipped = 0
    for _ in range(12):
        item = data[0]
        x1, y1, x2, y2 = (item["labels"][0, 1:] * 32).round().long().tolist()
        assert item["labels"][0, 0] == 0
        white = item["image"][0] > 200
        rows, cols = white.nonzero(as_tuple=True)
        assert abs(cols.min() - x1) <= 1 and abs(cols.max() + 1 - x2) <= 1
        assert abs(rows.min() - y1) <= 1 and abs(rows.max() + 1 - y2) <= 1
        flipped += x1 > 16
    assert 0 < flipped < 12


# --------------------------------------------------------------------------- task


def test_defaults_are_the_books_settings():
    cfg = cfglib.load(ssd.Config, REPO / "configs" / "ssd.yaml")
    assert cfg == cfglib.load(ssd.Config, None, ["optim.decay_norm_and_bias=true"])  # the book decays all
    assert cfg.optim.name == "sgd" and cfg.optim.momentum == 0
    # the book's SSD loop takes the batch mean (l.mean().backward()): its lr and decay as they are
    assert cfg.optim.lr == pytest.approx(0.2) and cfg.optim.weight_decay == pytest.approx(5e-4)
    assert (cfg.data.batch_size, cfg.train.epochs, cfg.data.image_size) == (32, 20, 256)
    assert cfg.data.root == "data/banana-detection" and not cfg.data.flip and cfg.data.scale_jitter == 0
    demo = cfglib.load(ssd.Config, REPO / "configs" / "demo" / "ssd.yaml")
    assert demo.data.root == "runs/demo-data/banana-detection"


def test_config_checks_class_names(synth):
    with pytest.raises(cfglib.ConfigError, match="data.classes"):
        ssd.build(tiny_config(synth, **{"model.num_classes": 2}))


def test_missing_dataset_without_download_is_missing_resource(tmp_path):
    with pytest.raises(MissingResource, match="bananas_"):
        ssd.build(tiny_config(tmp_path / "nowhere"))


def test_cached_targets_match_targets_from_labels(synth):
    task = ssd.build(tiny_config(synth))
    item = task.train_data[3]
    anchors = task.model.anchors_for(64, 64)
    offsets, masks, classes = multibox_target(anchors, item["labels"][None])
    assert torch.equal(item["bbox_offset"], offsets[0]) and torch.equal(item["cls_labels"].long(), classes[0])
    assert anchors.shape[1] == item["cls_labels"].shape[0] == 4 * (8 * 8 + 4 * 4 + 2 * 2 + 1 + 1)
    batch = torch.utils.data.default_collate([task.train_data[i] for i in range(4)])
    plain = {k: batch[k] for k in ("image", "labels")}
    task.model.eval()
    with torch.no_grad():
        assert torch.allclose(task.train_step(task.model, batch).loss, task.train_step(task.model, plain).loss)


def test_anchors_are_made_once_per_size_and_device_and_stay_out_of_checkpoints():
    model = TinySSD(num_classes=1, width=0.25).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        first, again = model(x)[0], model(x)[0]
        wide = model(torch.rand(1, 3, 64, 128))[0]
    assert again is first and model.anchors_for(64, 64) is first
    assert wide.shape[1] == 4 * (8 * 16 + 4 * 8 + 2 * 4 + 1 * 2 + 1)
    assert torch.equal(model.anchors_for(64, 128), wide)
    state = model.state_dict()
    assert not any("anchor" in k for k in state)
    fresh = TinySSD(num_classes=1, width=0.25)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.anchors_for(64, 64), first)
    model.to("meta")
    assert model(x.to("meta"))[0].device.type == "meta" and model.anchors_for(64, 64).device.type == "cpu"


def test_train_steps_lower_the_loss_then_evaluate_finish_predict(synth, tmp_path):
    torch.manual_seed(0)
    task = ssd.build(tiny_config(synth))
    assert task.columns == ssd.COLUMNS and task.best_metric == "val_map50"
    model = task.model
    batch = torch.utils.data.default_collate([task.train_data[i] for i in range(8)])
    losses, out = overfit(task, batch, steps=8, lr=1e-2)
    assert out.count == 8 and set(out.stats) == {"class_err", "bbox_mae"}
    assert losses[-1] < 0.5 * losses[0]

    model.eval()
    val = [torch.utils.data.default_collate([task.val_data[i] for i in range(len(task.val_data))])]
    with torch.no_grad():
        metrics = task.evaluate(model, val, torch.device("cpu"))
        assert list(metrics) == [c for c in ssd.COLUMNS if c.startswith("val_")] + ["val_ap50/banana"]
        assert all(math.isfinite(v) for v in metrics.values()) and 0 <= metrics["val_map50"] <= 1
        files = task.finish(model, tmp_path, torch.device("cpu"))
    assert Image.open(files["predictions"]).size[0] >= 4 * 256

    photo = tmp_path / "photo.jpg"
    Image.open(synth / "bananas_val" / "images" / "0.png").resize((128, 96)).save(photo)
    results = ssd.predict(model, task.config, task.metadata, [photo], torch.device("cpu"),
                          {"threshold": 0.0, "out": tmp_path / "drawn"})
    boxes = results[0]["boxes"]
    assert results[0]["image"] == str(photo) and boxes
    assert all(b["class"] == "banana" and 0 <= b["score"] <= 1 for b in boxes)
    assert max(b["box"][2] for b in boxes) > 64  # pixels of the 128x96 original, not normalised
    assert [b["score"] for b in boxes] == sorted((b["score"] for b in boxes), reverse=True)
    assert Image.open(results[0]["drawn"]).size == (341, 256)  # enlarged to a readable 256 short side
    with pytest.raises(InputError, match="threshold"):
        ssd.predict(model, task.config, task.metadata, [photo], torch.device("cpu"), {"threshold": 2})


def test_predict_names_pictures_of_inputs_sharing_a_stem_apart(tmp_path):
    cfg = tiny_config(tmp_path)
    model = ssd.build_model(cfg)
    paths = []
    for folder, size in (("a", (80, 60)), ("b", (64, 64)), ("c", (50, 90))):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "photo.jpg")
        Image.new("RGB", size, (200, 180, 40)).save(paths[-1])
    results = ssd.predict(model, cfg, {"classes": ["banana"], "image_size": 64}, paths, torch.device("cpu"),
                          {"threshold": 0.0, "out": tmp_path / "drawn"})
    assert [Path(r["drawn"]).name for r in results] == ["photo_boxes.png", "photo_1_boxes.png", "photo_2_boxes.png"]
    assert [Image.open(r["drawn"]).size for r in results] == [(341, 256), (256, 256), (256, 461)]
    with pytest.raises(InputError, match="photo_boxes.png already exists"):
        ssd.predict(model, cfg, {"classes": ["banana"], "image_size": 64}, paths[:1], torch.device("cpu"),
                    {"out": tmp_path / "drawn"})
    again = ssd.predict(model, cfg, {"classes": ["banana"], "image_size": 64}, paths[:1], torch.device("cpu"),
                        {"out": tmp_path / "drawn", "overwrite": True})
    assert Path(again[0]["drawn"]).name == "photo_boxes.png"


def test_the_best_box_below_the_threshold_is_drawn_faded_on_an_empty_tile():
    from cvtool.tasks.detect import Detection, draw

    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    found = Detection(torch.tensor([[10.0, 10.0, 40.0, 50.0]]), torch.tensor([0.3]), torch.tensor([0]))
    shown = draw(image, found, 0.2, ["banana"])  # above: full red, on a 256-pixel picture
    faded = draw(image, found, 0.5, ["banana"])  # below: the same box half-way to the image
    assert shown.shape == faded.shape == (3, 256, 256)
    edge = (slice(None), slice(120, 180), 160)  # the box's right side, x = 40 * 4
    assert shown[edge][0].max() == 255 and faded[edge][0].max() == 128
    empty = draw(image, Detection(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)), 0.5, [])
    assert empty.max() == 0
