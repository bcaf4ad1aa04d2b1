"""The segmentation half of `data check`: every problem named by file, pixel shares, the plot."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvtool.data import seg_check, voc
from cvtool.data.seg_synth import synthesize_folders

FURNACE = ["bg", "shell", "burner", "flue", "grate"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = synthesize_folders(tmp_path_factory.mktemp("check") / "furnace", n_train=6, n_val=3, size=40, classes=4)
    (root / "classes.txt").write_text("\n".join(FURNACE) + "\n")
    return root


@pytest.fixture
def furnace(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "furnace"))


def files(root: Path, kind: str, split: str) -> list[Path]:
    return sorted((root / kind / split).iterdir())


def test_a_clean_set_reports_counts_shares_and_no_problem(furnace):
    assert seg_check.looks_like(furnace) and not seg_check.looks_like(furnace / "images")
    report = seg_check.check(furnace)
    assert report["format"] == "folders" and report["classes"] == FURNACE and report["problems"] == []
    train = report["splits"]["train"]
    assert (train["images"], train["masks"], report["splits"]["val"]["images"]) == (6, 6, 3)
    assert list(train["pixel_share"]) == FURNACE and sum(train["pixel_share"].values()) == pytest.approx(1, abs=1e-4)
    assert 0 < train["void_share"] < 0.5 and train["pixel_share"]["bg"] > 0.2
    truth = np.concatenate([np.asarray(Image.open(p)).ravel() for p in files(furnace, "masks", "train")])
    assert train["pixel_share"]["shell"] == pytest.approx((truth == 1).sum() / (truth != 255).sum(), abs=1e-5)


def test_every_problem_is_named_by_file(furnace):
    mask = files(furnace, "masks", "train")[0]
    values = np.array(Image.open(mask))
    values[0, :3] = 7
    Image.fromarray(values, "L").save(mask)
    image = files(furnace, "images", "train")[1]
    shutil.copy(image, furnace / "images" / "train" / "copy.jpg")
    shutil.copy(files(furnace, "masks", "train")[1], furnace / "masks" / "train" / "copy.png")
    shutil.copy(image, furnace / "images" / "val" / "leak.jpg")
    shutil.copy(files(furnace, "masks", "train")[1], furnace / "masks" / "val" / "leak.png")
    lonely = files(furnace, "images", "val")[0]
    files(furnace, "masks", "val")[0].unlink()
    (furnace / "masks" / "val" / "orphan.png").write_bytes(mask.read_bytes())
    report = seg_check.check(furnace)
    by_file = {(p["split"], Path(p["file"]).name): p["message"] for p in report["problems"]}
    assert "[7]" in by_file[("train", mask.name)] and "neither a class (0..4) nor void (255)" in by_file[("train", mask.name)]
    assert report["splits"]["train"]["values_outside"] == [{"file": str(mask), "values": [7]}]
    assert f"same content as {image}" in by_file[("train", "copy.jpg")]
    assert report["splits"]["train"]["duplicates_within"] == [[str(image), str(furnace / "images/train/copy.jpg")]]
    assert "(train)" in by_file[("val", "leak.jpg")] and report["splits"]["val"]["duplicates_across"]
    assert "has no mask" in by_file[("val", lonely.name)]
    assert "has no image" in by_file[("val", "orphan.png")]
    val = report["splits"]["val"]
    assert val["images_without_masks"] == [str(lonely)] and val["masks_without_images"][0].endswith("orphan.png")
    assert len(report["problems"]) == 5


def test_index_masks_without_names_are_one_problem_and_still_counted(furnace):
    (furnace / "classes.txt").unlink()
    report = seg_check.check(furnace)
    assert report["classes"] == [] and len(report["problems"]) == 1
    assert "data.classes" in report["problems"][0]["message"] and "0, 1, 2, 3, 4" in report["problems"][0]["message"]
    assert set(report["splits"]["train"]["pixel_share"]) == {"0", "1", "2", "3", "4"}
    given = seg_check.check(furnace, classes=FURNACE[:4])
    assert given["classes"] == FURNACE[:4]
    assert all("[4]" in p["message"] for p in given["problems"]) and given["problems"]


def test_voc_sets_get_voc_names_and_leave_trainval_out(tmp_path):
    root = voc.synthesize(tmp_path / "VOCdevkit", n_train=5, n_val=3, size=40, classes=3)
    lists = root / "VOC2012" / "ImageSets" / "Segmentation"
    (lists / "trainval.txt").write_text((lists / "train.txt").read_text() + (lists / "val.txt").read_text())
    assert seg_check.looks_like(root)
    report = seg_check.check(root)
    assert report["format"] == "voc" and report["classes"] == list(voc.CLASSES) and report["problems"] == []
    assert set(report["splits"]) == {"train", "val"} and report["splits"]["train"]["images"] == 5


def test_the_plot_draws_each_class_share(furnace, tmp_path):
    path = seg_check.plot(seg_check.check(furnace), tmp_path / "check.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 300
