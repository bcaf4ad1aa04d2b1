"""``data convert``: every layout into every other, read back with the same boxes, names and images."""

from __future__ import annotations

import json
from itertools import permutations

import pytest

from test_formats import CLASSES, LAYOUTS, assert_same, layouts  # noqa: F401 - the shared fixture

from cvtool.data import convert, detection
from cvtool.data.records import Source


def comparable(source: Source, target: str) -> Source:
    """What ``target`` can hold of ``source``: bananas keeps neither names nor images without objects."""
    if target == "bananas" or source.format == "bananas":
        source.splits = {s: [r for r in rs if r.boxes] for s, rs in source.splits.items()}
    return source


@pytest.mark.parametrize("origin, target", list(permutations(LAYOUTS, 2)))
def test_round_trip_through_every_pair(layouts, tmp_path, origin, target):  # noqa: F811
    original = detection.read(layouts[origin])
    written, notes = convert.convert(layouts[origin], target, tmp_path / target)
    back = detection.read(tmp_path / target)
    assert back.format == target and written.classes == original.classes
    assert_same(comparable(back, target), comparable(original, target))
    if "bananas" not in (origin, target):
        assert back.classes == CLASSES
        assert sum(not r.boxes for r in back.splits["val"]) == 1  # the negative image survives
    if target == "bananas":
        assert any("images without objects left out" in n for n in notes)
    again = tmp_path / "again"
    convert.convert(tmp_path / target, origin, again)
    assert_same(comparable(detection.read(again), target), comparable(original, target))


def test_images_are_linked_or_copied(layouts, tmp_path, cli):  # noqa: F811
    code, out, err = cli("data", "convert", layouts["coco"], "--to", "yolo", "--out", tmp_path / "linked", "--json")
    assert code == 0, err
    assert json.loads(out)["images"] == {"train": 8, "val": 4}
    code, _, err = cli("data", "convert", layouts["coco"], "--to", "yolo", "--out", tmp_path / "copied", "--copy")
    assert code == 0, err
    linked = sorted((tmp_path / "linked" / "images" / "train").iterdir())
    copied = sorted((tmp_path / "copied" / "images" / "train").iterdir())
    assert all(p.is_symlink() for p in linked) and not any(p.is_symlink() for p in copied)
    assert [p.read_bytes() for p in linked] == [p.read_bytes() for p in copied]


def test_refusals_are_exit_2(layouts, tmp_path, cli):  # noqa: F811
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    code, _, err = cli("data", "convert", layouts["coco"], "--to", "voc", "--out", tmp_path / "full")
    assert code == 2 and "already holds files" in err
    code, _, err = cli("data", "convert", layouts["coco"], "--to", "tfrecord", "--out", tmp_path / "x")
    assert code == 2 and "--to 'tfrecord' is not one of coco, yolo, voc, bananas" in err
    path = tmp_path / "unsorted"
    convert.convert(layouts["coco"], "yolo", path)
    (path / "data.yaml").write_text((path / "data.yaml").read_text().replace("- cherry\n- lemon", "- lemon\n- cherry"))
    code, _, err = cli("data", "convert", path, "--to", "voc", "--out", tmp_path / "voc")
    assert code == 2 and "names read back sorted" in err
