"""``data check``: clean data is exit 0; each planted problem is found and named by file and object or line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from test_formats import CLASSES, layouts  # noqa: F401 - the shared fixture

from cvtool.data import convert


def run_check(cli, root: Path, *more) -> tuple[int, dict]:
    code, out, err = cli("data", "check", root, "--json", *more)
    assert code in (0, 1), err
    return code, json.loads(out)


def test_clean_data_is_exit_0_with_its_statistics(layouts, cli, tmp_path):  # noqa: F811
    code, report = run_check(cli, layouts["coco"], "--task", "train-ssd", "--plot", tmp_path / "c.png")
    assert code == 0 and report["problems"] == [] and report["classes"] == CLASSES
    train, val = report["splits"]["train"], report["splits"]["val"]
    assert train["images"] == 8 and sum(train["objects_per_class"].values()) == train["objects"] == 8
    assert val["images_without_labels"] == 1 and train["crowd_objects"] == 1
    assert 0 <= train["unreached_by_anchors"] <= 1 and train["box_width_px"]["min"] > 0
    with Image.open(tmp_path / "c.png") as img:
        assert img.size[0] > 1000


def test_text_report_says_clean(layouts, cli):  # noqa: F811
    code, out, _ = cli("data", "check", layouts["voc"])
    assert code == 0 and "0 problem(s); the data is clean" in out and "objects per class: cherry" in out


def problems(report: dict) -> list[str]:
    return [f"{p['split']} {Path(p['file']).name}: {p['message']}" for p in report["problems"]]


def test_planted_coco_problems_are_each_named(layouts, cli, tmp_path):  # noqa: F811
    root = tmp_path / "coco"
    convert.convert(layouts["coco"], "coco", root, copy=True)
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"] = [1, 1, -4, 5]  # negative width
    data["annotations"][1]["bbox"] = [3, 3, 0, 5]  # zero size
    data["annotations"][2]["bbox"] = [40, 40, 30, 30]  # beyond the 48x48 image
    data["annotations"][3]["category_id"] = 9
    data["images"][4]["file_name"] = "missing.png"  # a label without its image
    path.write_text(json.dumps(data))
    shutil.copy(root / "train" / data["images"][5]["file_name"], root / "val" / "leak.png")
    val = json.loads((root / "annotations" / "instances_val.json").read_text())
    val["images"].append({"id": 99, "file_name": "leak.png", "width": 48, "height": 48})
    (root / "annotations" / "instances_val.json").write_text(json.dumps(val))
    code, report = run_check(cli, root)
    found = problems(report)
    assert code == 1 and len(found) == 6, found
    expect = [r"train instances_train.json: annotation 1 .*negative width",
              r"train instances_train.json: annotation 2 .*zero size",
              r"train instances_train.json: annotation 3 .*outside the 48x48 image",
              r"train instances_train.json: annotation 4: category_id 9 is not among the categories",
              r"train instances_train.json: image 5: image .*missing.png does not exist",
              r"val leak.png: the same image as .* \(in train and val\)"]
    for pattern, line in zip(expect, found):
        assert __import__("re").match(pattern, line), (pattern, line)
    assert report["splits"]["train"]["images"] == 7  # the image without a file is left out, the rest counted


def test_planted_yolo_problems_are_each_named(layouts, cli, tmp_path):  # noqa: F811
    root = tmp_path / "yolo"
    convert.convert(layouts["coco"], "yolo", root, copy=True)
    labels = sorted((root / "labels" / "train").iterdir())
    labels[0].write_text("0 0.5 0.5 0.2\n1 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "train" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    shutil.copy(sorted((root / "images" / "train").iterdir())[1], root / "images" / "train" / "twin.png")
    code, report = run_check(cli, root)
    found = problems(report)
    assert code == 1 and len(found) == 4, found
    assert found[0] == f"train {labels[0].name}: line 1: expected 5 fields (class cx cy w h), got 4"
    assert found[1] == f"train {labels[0].name}: line 3: class 7 is beyond names (0..1)"
    assert found[2] == "train orphan.txt: a label file without an image"
    assert "(in the same split)" in found[3]
    assert report["splits"]["train"]["objects"] == 8  # the good line of the bad file is still read


def test_planted_voc_problem_names_the_list_line(layouts, cli, tmp_path):  # noqa: F811
    root = tmp_path / "voc"
    convert.convert(layouts["coco"], "voc", root, copy=True)
    ids = (root / "ImageSets" / "Main" / "val.txt").read_text().split()
    next((root / "JPEGImages").glob(f"{ids[1]}.*")).unlink()
    code, report = run_check(cli, root)
    assert code == 1 and problems(report) == [
        f"val val.txt: {root / 'ImageSets' / 'Main' / 'val.txt'} line 2: id {ids[1]} has no image "
        f"{root / 'JPEGImages' / (ids[1] + '.jpg')}"]
    assert report["splits"]["val"]["images"] == 3


def test_unreadable_folder_is_exit_2(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = cli("data", "check", tmp_path / "empty")
    assert code == 2 and "holds no detection data set" in err
    code, _, err = cli("data", "check", tmp_path / "empty", "--task", "train-x")
    assert code == 2 and "--task 'train-x' is not one of" in err
