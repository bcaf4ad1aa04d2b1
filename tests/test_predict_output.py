"""What `cvtool predict` prints: readable lines per task, the JSON shapes, and the file names it writes."""

from __future__ import annotations

import pytest

from cvtool.commands.predict import as_object, format_prediction
from cvtool.errors import InputError
from cvtool.tasks import outputs

SSD = {"image": "photo.png", "drawn": "out/photo_boxes.png",
       "boxes": [{"class": "banana", "score": 0.9731, "box": [12.0, 30.5, 60.25, 88.0]},
                 {"class": "banana", "score": 0.51, "box": [1.0, 2.0, 3.0, 4.0]}]}
FCN = {"image": "cat.jpg", "mask": "out/cat_mask.png", "overlay": "out/cat_overlay.png",
       "classes_present": ["background", "cat"], "pixel_shares": {"background": 0.712, "cat": 0.288}}
KAGGLE = {"test_dir": "data/cifar-10/test", "submission": "submission.csv", "rows": 300000}


def test_detections_print_as_lines_with_class_score_and_pixel_box():
    assert format_prediction(SSD).splitlines() == [
        "photo.png: 2 boxes (x1 y1 x2 y2 in the image's pixels)",
        "  banana       0.97     12.0    30.5    60.2    88.0",
        "  banana       0.51      1.0     2.0     3.0     4.0",
        "  drawn: out/photo_boxes.png",
    ]
    assert format_prediction({"image": "empty.png", "boxes": []}) == \
        "empty.png: no box scores above the threshold"


def test_masks_print_their_files_and_the_classes_present_with_pixel_shares():
    assert format_prediction(FCN).splitlines() == [
        "cat.jpg: mask out/cat_mask.png, overlay out/cat_overlay.png",
        "  pixels: background 71.2%  cat 28.8%",
    ]


def test_classes_and_submissions_print_one_line():
    assert format_prediction({"image": "a.jpg", "class": "hotdog", "probability": 0.98765, "top": []}) == \
        "a.jpg: hotdog (0.988)"
    assert format_prediction(KAGGLE) == "submission.csv: 300000 rows for the test images in data/cifar-10/test"


def test_kaggle_json_is_an_object_and_images_given_too_go_inside_it():
    assert as_object([KAGGLE]) == KAGGLE
    image = {"image": "a.jpg", "class": "cat", "probability": 0.5}
    assert as_object([KAGGLE, image]) == {**KAGGLE, "images": [image]}


def test_one_naming_rule_and_no_silent_overwrite(tmp_path):
    planned = outputs.plan(tmp_path, ["a/coffee.jpg", "b/coffee.png"], ("mask", "overlay"))
    assert [{k: p.name for k, p in files.items()} for files in planned] == [
        {"mask": "coffee_mask.png", "overlay": "coffee_overlay.png"},
        {"mask": "coffee_1_mask.png", "overlay": "coffee_1_overlay.png"}]
    (tmp_path / "coffee_1_overlay.png").write_bytes(b"mine")
    with pytest.raises(InputError, match="coffee_1_overlay.png already exists; pass --overwrite") as info:
        outputs.plan(tmp_path, ["a/coffee.jpg", "b/coffee.png"], ("mask", "overlay"))
    assert info.value.exit_code == 2
    assert outputs.plan(tmp_path, ["b/coffee.png"], ("boxes",))[0]["boxes"].name == "coffee_boxes.png"
    assert len(outputs.plan(tmp_path, ["a/coffee.jpg", "b/coffee.png"], ("mask", "overlay"), overwrite=True)) == 2
    assert (tmp_path / "coffee_1_overlay.png").read_bytes() == b"mine"  # planning writes nothing
