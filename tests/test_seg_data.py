"""Segmentation data: masks by mode, void, class names from the data, layouts, names all the way out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtool import config as c
from cvtool.data import masks, seg_dataset, segmentation, voc
from cvtool.data.masks import MaskFormat
from cvtool.data.seg_synth import synthesize_folders
from cvtool.errors import InputError
from cvtool.tasks import fcn

FURNACE = ["bg", "shell", "burner", "flue", "grate"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Index masks (mode L, values 0-4 and 255), no palette, no names: five classes."""
    return synthesize_folders(tmp_path_factory.mktemp("seg") / "furnace", n_train=6, n_val=3, size=40, classes=4)


@pytest.fixture
def furnace(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "furnace"))


@pytest.fixture(scope="module")
def devkit(tmp_path_factory) -> Path:
    return voc.synthesize(tmp_path_factory.mktemp("voc") / "VOCdevkit", n_train=6, n_val=3, size=40, classes=3)


def config(root: Path, *extra: str) -> fcn.Config:
    return c.load(fcn.Config, overrides=[f"data.root={root}", "data.download=false", "data.crop_size=[32, 32]",
                                         "model.weights=null", "model.width=4", "data.num_workers=0", *extra])


def first_mask(root: Path, split: str = "train") -> Path:
    return sorted((root / "masks" / split).iterdir())[0]


# --------------------------------------------------------------------------- decoding by mode


def test_a_palette_png_is_read_by_index_not_by_colour(tmp_path):
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    img = Image.fromarray(mask, "P")
    img.putpalette([9, 9, 9, 0, 128, 0, 128, 0, 0] + [0, 0, 0] * 252 + [1, 2, 3])  # not VOC's order
    img.save(tmp_path / "p.png")
    assert np.array_equal(masks.read_mask(tmp_path / "p.png", MaskFormat(3)), mask)
    assert not masks.is_voc_coloured(tmp_path / "p.png")
    voc.palette_image(mask).save(tmp_path / "voc.png")
    assert masks.is_voc_coloured(tmp_path / "voc.png")


def test_grey_16_bit_and_rgb_masks_give_the_same_indices(tmp_path):
    mask = np.random.default_rng(0).choice([0, 1, 2, 3, 4, 255], size=(9, 11)).astype(np.uint8)
    Image.fromarray(mask, "L").save(tmp_path / "l.png")
    Image.fromarray(mask.astype(np.uint16)).save(tmp_path / "i16.png")
    colours = np.array([[0, 0, 0], [10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200]], np.uint8)
    rgb = np.where((mask == 255)[..., None], 0, colours[np.minimum(mask, 4)])
    rgb[mask == 255] = colours[0]
    Image.fromarray(rgb.astype(np.uint8)).save(tmp_path / "rgb.png")
    fmt = MaskFormat(5, colours=colours)
    assert np.array_equal(masks.read_mask(tmp_path / "l.png", fmt), mask)
    assert np.array_equal(masks.read_mask(tmp_path / "i16.png", fmt), mask)
    assert np.array_equal(masks.read_mask(tmp_path / "rgb.png", fmt), np.where(mask == 255, 0, mask))
    rgb[0, 0] = (7, 7, 7)
    Image.fromarray(rgb.astype(np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match=r"rgb\.png: colour \(7, 7, 7\) at x=0, y=0 is not a class colour of the given palette"):
        masks.read_mask(tmp_path / "rgb.png", fmt)


def test_a_value_neither_class_nor_void_names_the_file_and_value(tmp_path):
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 2] = 7
    Image.fromarray(mask, "L").save(tmp_path / "seven.png")
    with pytest.raises(InputError, match=r"seven\.png: label values \[7\] outside 0\.\.4 and 255 \(void\)"):
        masks.read_mask(tmp_path / "seven.png", MaskFormat(5))
    big = np.zeros((4, 4), np.uint16)
    big[0, 0] = 300
    Image.fromarray(big).save(tmp_path / "wide.png")
    with pytest.raises(InputError, match=r"wide\.png: label values \[300\]"):
        masks.read_mask(tmp_path / "wide.png", MaskFormat(5))
    assert masks.read_mask(tmp_path / "seven.png", MaskFormat(5, void=7))[1, 2] == 7  # data.void: 7


# --------------------------------------------------------------------------- names


def test_index_masks_without_names_ask_for_data_classes(furnace):
    with pytest.raises(InputError, match=r"class indices 0, 1, 2, 3, 4 \(and void 255\) but no class names.*"
                                         r"data\.classes"):
        fcn.build(config(furnace))


def test_names_given_by_hand_reach_the_model_metrics_and_metadata(furnace, tmp_path):
    cfg = config(furnace, f"data.classes={json.dumps(FURNACE)}")
    task = fcn.build(cfg)
    assert task.config.model.num_classes == 5 and task.model.classifier.out_channels == 5
    assert task.metadata["classes"] == FURNACE and task.metadata["classes_from"] == "data.classes"
    val = [task.collate_fn([task.val_data[k] for k in range(len(task.val_data))])]
    scores = task.evaluate(task.model.eval(), val, torch.device("cpu"))
    assert {k.removeprefix("val_iou/") for k in scores if k.startswith("val_iou/")} <= set(FURNACE)
    assert "val_iou/bg" in scores and not any("aeroplane" in k or "bird" in k for k in scores)
    image = sorted((furnace / "images" / "val").iterdir())[0]
    model = fcn.build_model(task.config)
    model.load_state_dict(task.model.state_dict())
    result = fcn.predict(model, task.config, task.metadata, [image], torch.device("cpu"), {"out": tmp_path / "o"})
    assert set(result[0]["classes_present"]) <= set(FURNACE)
    with pytest.raises(c.ConfigError, match="model.num_classes is 21 but data.classes holds 5"):
        fcn.build(config(furnace, f"data.classes={json.dumps(FURNACE)}", "model.num_classes=21"))


def test_classes_txt_names_the_classes_and_a_different_list_is_refused(furnace):
    (furnace / "classes.txt").write_text("\n".join(FURNACE) + "\n")
    task = fcn.build(config(furnace))
    assert task.metadata["classes"] == FURNACE and task.metadata["classes_from"].endswith("classes.txt")
    other = [*FURNACE[:3], "chimney", FURNACE[4]]
    with pytest.raises(InputError, match=r"data\.classes\[3\] is 'chimney' but .*classes\.txt line 4 names 'flue'"):
        fcn.build(config(furnace, f"data.classes={json.dumps(other)}"))
    (furnace / "classes.txt").write_text("\n".join(FURNACE[:4]) + "\n")
    with pytest.raises(InputError, match=r"label values \[4\] outside 0\.\.3 .*classes\.txt"):
        fcn.build(config(furnace))  # a sample of the masks is read before training starts


def test_labelmap_gives_names_and_the_colours_of_rgb_masks(furnace):
    colours = [(0, 0, 0), (250, 50, 83), (36, 179, 83), (255, 204, 51), (89, 134, 179)]
    lines = ["# label:color_rgb:parts:actions"] + [f"{n}:{r},{g},{b}::" for n, (r, g, b) in zip(FURNACE, colours)]
    (furnace / "labelmap.txt").write_text("\n".join(lines) + "\n")
    table = np.array(colours, np.uint8)
    for path in (furnace / "masks").rglob("*.png"):
        index = np.array(Image.open(path))
        Image.fromarray(table[np.where(index == 255, 0, index)]).save(path)
    task = fcn.build(config(furnace))
    assert task.metadata["classes"] == FURNACE and task.metadata["palette"][1] == list(colours[1])
    _, mask = task.val_data.load(0)
    assert set(mask.unique().tolist()) <= set(range(5)) and len(mask.unique()) > 1


def test_rgb_masks_take_their_colours_from_data_palette(furnace):
    colours = [[0, 0, 0], [250, 50, 83], [36, 179, 83], [255, 204, 51], [89, 134, 179]]
    table = np.array(colours, np.uint8)
    for path in (furnace / "masks").rglob("*.png"):
        index = np.array(Image.open(path))
        Image.fromarray(table[np.where(index == 255, 0, index)]).save(path)
    with pytest.raises(InputError, match=r"\.png is a colour mask in colours that are not VOC's: give data\.palette"):
        fcn.build(config(furnace))
    names = f"data.classes={json.dumps(FURNACE)}"
    task = fcn.build(config(furnace, names, f"data.palette={json.dumps(colours)}"))
    _, mask = task.train_data.load(0)
    truth = np.array(Image.open(task.train_data.pairs[0][1]))
    assert np.array_equal(table[mask.numpy()], truth)
    with pytest.raises(c.ConfigError, match=r"data.palette has 4 colours but there are 5 classes"):
        fcn.build(config(furnace, names, f"data.palette={json.dumps(colours[:4])}"))
    with pytest.raises(c.ConfigError, match=r"data.palette must be a list of \[r, g, b\] in 0..255, got \[1, 2\]"):
        fcn.build(config(furnace, names, "data.palette=[[1, 2]]"))


def test_voc_palette_masks_get_voc_names_and_a_subset_by_num_classes(devkit):
    task = fcn.build(config(devkit))
    assert task.metadata["classes"] == list(voc.CLASSES) and task.config.model.num_classes == 21
    task = fcn.build(config(devkit, "model.num_classes=4"))
    assert task.metadata["classes"] == list(voc.CLASSES[:4])
    task = fcn.build(config(devkit, "data.classes=[sky, a, b, c]"))  # a list by hand replaces VOC's guess
    assert task.metadata["classes"] == ["sky", "a", "b", "c"]


def test_a_name_given_twice_is_refused(furnace):
    with pytest.raises(InputError, match=r"data.classes names 'flue' twice"):
        fcn.build(config(furnace, "data.classes=[bg, flue, burner, flue, grate]"))


def test_voc_layout_with_grey_index_masks_is_not_taken_for_voc(devkit, tmp_path):
    """The issue's case: VOC2012's layout, masks single-channel indices with no palette."""
    root = Path(shutil.copytree(devkit, tmp_path / "VOCdevkit"))
    for path in (root / "VOC2012" / "SegmentationClass").iterdir():
        Image.fromarray(np.array(Image.open(path)), "L").save(path)
    with pytest.raises(InputError, match=r"class indices 0, 1, 2, 3 \(and void 255\) but no class names"):
        fcn.build(config(root))
    task = fcn.build(config(root, "data.classes=[floor, wall, door, pipe]"))
    assert task.metadata["classes"] == ["floor", "wall", "door", "pipe"] and task.model.classifier.out_channels == 4
    assert task.metadata["data_format"] == "voc"


def test_void_must_not_be_a_class(furnace):
    with pytest.raises(c.ConfigError, match=r"data.void 3 is class 3 \('flue'\)"):
        fcn.build(config(furnace, f"data.classes={json.dumps(FURNACE)}", "data.void=3"))


# --------------------------------------------------------------------------- layouts


def test_folder_pairs_are_matched_by_stem_and_strays_are_named(furnace):
    layout = segmentation.open_layout(furnace)
    assert layout.format == "folders" and len(layout.splits["train"].pairs) == 6
    stray_mask = first_mask(furnace)
    stray_image = sorted((furnace / "images" / "val").iterdir())[0]
    shutil.move(stray_mask, furnace / "masks" / "train" / "extra.png")
    first_mask(furnace, "val").unlink()
    layout = segmentation.open_layout(furnace)
    problems = [m for s in layout.splits.values() for _, m in s.problems]
    assert any(f"{stray_image} has no mask" in m for m in problems)
    assert any("extra.png has no image" in m for m in problems)
    with pytest.raises(InputError, match=r"has no (mask|image)"):
        fcn.build(config(furnace, f"data.classes={json.dumps(FURNACE)}"))


def year(devkit: Path, tmp: Path, name: str, lists: dict[str, str] | None = None) -> Path:
    """A copy of the synthetic VOC2012 folder as ``name``, its split lists renamed by ``lists``."""
    target = Path(shutil.copytree(devkit / "VOC2012", tmp / "VOCdevkit" / name))
    for old, new in (lists or {}).items():
        (target / "ImageSets" / "Segmentation" / f"{old}.txt").rename(target / "ImageSets/Segmentation" / f"{new}.txt")
    return target


def test_voc_any_year_and_its_split_lists(devkit, tmp_path, caplog):
    v2007 = year(devkit, tmp_path, "VOC2007", {"train": "trainval", "val": "test"})
    layout = segmentation.open_layout(tmp_path / "VOCdevkit")
    assert layout.root == v2007 and [s.name for s in layout.splits.values()] == ["trainval", "test"]
    assert "training on trainval.txt, validating on test.txt" in layout.note
    assert segmentation.open_layout(tmp_path).root == v2007  # the folder above VOCdevkit
    with caplog.at_level("WARNING", logger="cvtool.tasks.fcn"):
        task = fcn.build(config(v2007))
    assert "trainval.txt" in caplog.text and task.metadata["splits"] == {"train": "trainval", "val": "test"}
    custom = year(devkit, tmp_path / "other", "VOC2012", {"train": "mine"})
    assert len(segmentation.open_layout(custom, "voc", ("mine", "val")).splits["train"].pairs) == 6
    year(devkit, tmp_path, "VOC2012")
    with pytest.raises(InputError, match="holds VOC2007, VOC2012: set data.root to the year"):
        segmentation.open_layout(tmp_path / "VOCdevkit")


def test_format_auto_tells_the_layouts_apart(furnace, devkit, tmp_path):
    assert segmentation.detect_format(furnace) == "folders" and segmentation.detect_format(devkit) == "voc"
    assert segmentation.detect_format(tmp_path) is None
    with pytest.raises(InputError, match="neither a VOC folder"):
        segmentation.open_layout(tmp_path)
    with pytest.raises(InputError, match="not a VOC2012 folder"):
        segmentation.open_layout(furnace, "voc")


def test_void_pads_batches_with_the_configured_value():
    images, labels = seg_dataset.pad_collate([(torch.zeros(3, 5, 5, dtype=torch.uint8),
                                               torch.zeros(5, 5, dtype=torch.uint8))], void=99)
    assert labels.shape == (1, 32, 32) and (labels[0, 5:] == 99).all()


# --------------------------------------------------------------------------- the names all the way out


def test_names_reach_summary_and_predict(cli, pristine, one_thread):
    """(export copies the checkpoint's metadata classes: tests/test_export.py checks that for train-fcn)"""
    args = ["--set", f"data.root={pristine}", "--set", "data.crop_size=[32, 32]", "--set", "model.weights=none",
            "--set", "model.width=4", "--set", "data.batch_size=4", "--set", "data.num_workers=0",
            "--device", "cpu", "--epochs", "1", "--max-steps", "1", "--out", "run"]
    code, _, err = cli("train-fcn", *args)
    assert code == 2 and err.count("\n") == 1 and "0, 1, 2, 3, 4 (and void 255)" in err and "data.classes" in err
    code, _, err = cli("train-fcn", *args, "--set", f"data.classes={json.dumps(FURNACE)}")
    assert code == 0, err
    summary = json.loads(Path("run/summary.json").read_text())
    per_class = {k.removeprefix("val_iou/") for k in summary["extra"] if k.startswith("val_iou/")}
    assert per_class and per_class <= set(FURNACE)
    image = sorted((pristine / "images" / "val").iterdir())[0]
    code, out, err = cli("predict", "--checkpoint", "run/checkpoints/best.pt", image, "--out", "pred", "--json")
    assert code == 0, err
    assert set(json.loads(out)[0]["pixel_shares"]) <= set(FURNACE)
