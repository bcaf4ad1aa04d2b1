"""Users' detection layouts: COCO, YOLO, VOC (any year) and bananas through one reader layer.

One small set (two named classes, a negative image, a crowd object) is written in every
layout; each trains both detectors, one checkpoint scores the same mAP on every layout, and
the names reach metadata and predict. Bad inputs are exit 2 naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from cvtool.data import convert, detection
from cvtool.data.bananas import synthesize
from cvtool.data.records import Record, Source
from cvtool.errors import InputError

CLASSES = ["cherry", "lemon"]
LAYOUTS = ("coco", "yolo", "voc", "bananas")
RUN = ["--max-steps", "2", "--epochs", "1", "--device", "cpu"]
pytestmark = pytest.mark.usefixtures("one_thread")


def named_source(base: Path) -> Source:
    """Synthetic bananas with two classes, renamed; the last val image's objects removed (a negative)
    and the first train object marked crowd."""
    root = synthesize(base / "raw", n_train=8, n_val=4, size=48, classes=2, seed=5)
    source = detection.read(root, "bananas")
    source.classes = list(CLASSES)
    last = source.splits["val"][-1]
    source.splits["val"][-1] = Record(last.image, last.size)
    source.splits["train"][0].crowd[0] = True
    return source


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("formats")
    source = named_source(base)
    convert.write_coco(source, base / "coco", copy=False)
    out = {"coco": base / "coco"}
    for to in ("yolo", "voc", "bananas"):
        convert.convert(base / "coco", to, base / to)
        out[to] = base / to
    return out


def boxes_of(source: Source) -> dict[str, list[tuple]]:
    """Per split, per image (in content order: converters may rename files): its size and sorted (label, box) pairs."""
    return {split: sorted((r.size, sorted(zip(r.labels, r.boxes))) for r in records)
            for split, records in source.splits.items()}


def assert_same(a: Source, b: Source, tolerance: float = 1e-6) -> None:
    for split in ("train", "val"):
        for (size_a, objs_a), (size_b, objs_b) in zip(boxes_of(a)[split], boxes_of(b)[split], strict=True):
            assert (size_a, [k for k, _ in objs_a]) == (size_b, [k for k, _ in objs_b])
            for (_, box_a), (_, box_b) in zip(objs_a, objs_b):
                assert max(abs(x - y) for x, y in zip(box_a, box_b)) <= tolerance * max(size_a)


@pytest.mark.parametrize("fmt", LAYOUTS)
def test_auto_finds_each_layout_and_reads_the_same_records(layouts, fmt):
    source = detection.read(layouts[fmt])
    assert source.format == fmt and source.notes[0].startswith(f"data.format auto: {fmt} (found ")
    reference = detection.read(layouts["coco"])
    assert reference.classes == CLASSES
    if fmt == "bananas":  # no names, no negatives: the objects are the same
        assert source.classes == ["class0", "class1"]
        reference.splits["val"] = [r for r in reference.splits["val"] if r.boxes]
    else:
        assert source.classes == CLASSES
    assert_same(source, reference)
    crowd = [r.crowd[0] for r in source.splits["train"][:1]]
    assert crowd == [fmt in ("coco", "voc")]  # COCO iscrowd, VOC difficult; YOLO and bananas have none


def test_several_layouts_in_one_folder_is_exit_2_naming_them(layouts, tmp_path):
    mixed = tmp_path / "mixed"
    convert.convert(layouts["coco"], "yolo", mixed)
    convert.write_coco(detection.read(layouts["coco"]), tmp_path / "coco-too", copy=False)
    (mixed / "annotations").symlink_to(tmp_path / "coco-too" / "annotations")
    with pytest.raises(InputError, match=r"holds several layouts \(coco: .*yolo: data.yaml\); set data.format"):
        detection.read(mixed)
    assert detection.read(mixed, "yolo").format == "yolo"


def sizes_for(task: str) -> list[str]:
    sets = ["data.image_size=64", "data.batch_size=4", "data.num_workers=0"]
    sets += ["model.width=0.25"] if task == "train-ssd" else [
        "model.weights=none", "model.rpn_proposals=40", "model.rpn_proposals_test=20",
        "model.box_batch_size_per_image=16", "detect.min_score=0.0"]
    return sets


@pytest.mark.parametrize("task", ["train-ssd", "train-rcnn"])
@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_each_layout_builds_both_detectors_and_takes_a_step(layouts, task, fmt):
    from cvtool import config as cfglib
    from cvtool.tasks import registry

    spec = registry.get(task)
    cfg = cfglib.load(spec.config, None, [f"data.root={layouts[fmt]}", *sizes_for(task)])
    built = spec.build(cfg)
    assert built.metadata["classes"] == CLASSES and built.metadata["format"] == fmt
    assert built.config.model.num_classes == 2 and built.config.data.classes == CLASSES
    batch = default_collate([built.train_data[i] for i in range(2)])
    built.model.train()
    out = built.train_step(built.model, batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and any(p.grad is not None and p.grad.abs().sum() > 0
                                           for p in built.model.parameters())


@pytest.mark.parametrize("task", ["train-ssd", "train-rcnn"])
def test_coco_trains_and_the_checkpoint_scores_the_same_map_on_every_layout(cli, layouts, tmp_path, task):
    sets = [x for s in sizes_for(task) for x in ("--set", s)]
    code, out, err = cli(task, "--set", f"data.root={layouts['coco']}", *sets, *RUN, "--out", tmp_path / "run")
    assert code == 0, err
    assert "data.format auto: coco (found annotations/instances_train.json)" in out + err
    assert "data.cache auto: on" in out + err
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    scores = {}
    for fmt in ("coco", "voc"):  # YOLO and bananas have no crowd flag, so their mAP counts the crowd object
        code, out, err = cli("eval", "--checkpoint", ckpt, "--set", f"data.root={layouts[fmt]}", "--json")
        assert code == 0, err
        scores[fmt] = json.loads(out)["metrics"]
    assert scores["coco"].keys() == scores["voc"].keys() and "val_map50" in scores["coco"]
    assert {k for k in scores["coco"] if "/" in k} <= {"val_ap50/cherry", "val_ap50/lemon"}  # per class, by name
    assert any(k.startswith("val_ap50/") for k in scores["coco"])
    for key, value in scores["coco"].items():
        assert scores["voc"][key] == pytest.approx(value, abs=1e-6), key
    code, out, err = cli("predict", "--checkpoint", ckpt, layouts["coco"] / "val" / "0.png", "--threshold", "0",
                         "--json")
    assert code == 0, err
    found = {b["class"] for b in json.loads(out)[0]["boxes"]}
    assert found and found <= set(CLASSES)
    if task == "train-ssd":  # the exported model's metadata names the classes as the data does
        code, out, err = cli("export", "--checkpoint", ckpt, "--out", tmp_path / "model.onnx", "--no-check", "--json")
        assert code == 0, err
        assert json.loads(Path(json.loads(out)["meta"]).read_text())["classes"] == CLASSES


def test_classes_given_by_hand_must_agree_with_the_data(layouts):
    with pytest.raises(InputError, match=r"data.classes disagrees with the COCO categories of .*: class 1 is "
                                         r"'lime' in data.classes but 'lemon' in the data"):
        detection.read(layouts["coco"], classes=["cherry", "lime"])
    with pytest.raises(InputError, match=r"the data has 2 classes, data.classes only 1 \(missing: 'lemon'\)"):
        detection.read(layouts["yolo"], classes=["cherry"])
    assert detection.read(layouts["voc"], classes=["cherry", "lemon", "melon"]).classes == \
        ["cherry", "lemon", "melon"]  # VOC: a list naming every class the XML uses


def test_voc_any_year_with_only_trainval_and_test(layouts, tmp_path):
    year = tmp_path / "VOCdevkit" / "VOC2007"
    year.parent.mkdir()
    year.symlink_to(layouts["voc"], target_is_directory=True)
    main = layouts["voc"] / "ImageSets" / "Main"
    copy = tmp_path / "copy" / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages"):
        (copy / sub).mkdir(parents=True)
        for f in (layouts["voc"] / sub).iterdir():
            (copy / sub / f.name).symlink_to(f.resolve())
    (copy / "ImageSets" / "Main").mkdir(parents=True)
    (copy / "ImageSets" / "Main" / "trainval.txt").write_text((main / "train.txt").read_text())
    (copy / "ImageSets" / "Main" / "test.txt").write_text((main / "val.txt").read_text())
    for root in (tmp_path / "copy", tmp_path / "copy" / "VOCdevkit", copy):
        source = detection.read(root)
        assert source.format == "voc" and len(source.splits["val"]) == 4
        assert "no train.txt, so trainval.txt trains and test.txt validates" in source.notes[1]
    assert len(detection.read(tmp_path, "voc").splits["train"]) == 8  # VOCdevkit/VOC2007 found under root


# --------------------------------------------------------------------------- bad inputs


def coco_json(layouts: Path, tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "coco"
    convert.write_coco(detection.read(layouts), root, copy=False)
    path = root / "annotations" / "instances_val.json"
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["images"][0].update(file_name="gone.png"), r"image 1: image .*gone.png does not exist"),
    (lambda d: d["annotations"][0].update(category_id=99), r"annotation \d+: category_id 99 is not among"),
    (lambda d: d["annotations"][0]["bbox"].__setitem__(2, -3), r"annotation \d+ .*negative width"),
    (lambda d: d["annotations"][0].update(image_id=777), r"annotation \d+: image_id 777 is not among the images"),
])
def test_bad_coco_is_exit_2_naming_the_file(layouts, tmp_path, cli, edit, message):
    path, data = coco_json(layouts["coco"], tmp_path)
    edit(data)
    path.write_text(json.dumps(data))
    code, _, err = cli("data", "convert", path.parents[1], "--to", "yolo", "--out", tmp_path / "out")
    assert code == 2 and "instances_val.json: " in err and len(err.strip().splitlines()) == 1, err
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2", r"line 1: expected 5 fields \(class cx cy w h\), got 4"),
    ("2 0.5 0.5 0.2 0.2", r"line 1: class 2 is beyond names \(0..1\)"),
    ("0 0.5 0.5 0.2 -0.2", r"line 1: box .* has a negative width or height"),
    ("0 1.5 0.5 0.2 0.2", r"line 1: box .* lies outside the 48x48 image"),
])
def test_bad_yolo_line_is_exit_2_naming_the_file(layouts, tmp_path, cli, line, message):
    root = tmp_path / "yolo"
    convert.convert(layouts["coco"], "yolo", root, copy=True)
    label = sorted((root / "labels" / "val").iterdir())[0]
    label.write_text(line + "\n")
    code, _, err = cli("train-ssd", "--set", f"data.root={root}", *RUN, "--out", tmp_path / "run")
    assert code == 2 and f"{label.name}: " in err and len(err.strip().splitlines()) == 1, err
    assert __import__("re").search(message, err), err


def test_yolo_names_as_a_map_and_a_missing_label_file_is_a_negative(layouts, tmp_path):
    root = tmp_path / "yolo"
    convert.convert(layouts["coco"], "yolo", root, copy=True)
    spec = (root / "data.yaml").read_text().replace("names:\n- cherry\n- lemon", "names:\n  0: cherry\n  1: lemon")
    (root / "data.yaml").write_text(spec)
    sorted((root / "labels" / "train").iterdir())[0].unlink()
    source = detection.read(root)
    assert source.classes == CLASSES and sum(not r.boxes for r in source.splits["train"]) == 1


def test_coco_keys_name_other_annotation_files_and_image_folders(layouts, tmp_path):
    root = tmp_path / "coco"
    convert.convert(layouts["coco"], "coco", root)
    (root / "annotations" / "instances_train.json").rename(root / "annotations" / "mine.json")
    (root / "train").rename(root / "pictures")
    with pytest.raises(InputError, match="has no COCO train annotations: expected .*data.train_split"):
        detection.read(root, "coco")
    splits = detection.Splits(train="annotations/mine.json", train_images="pictures")
    assert len(detection.read(root, "coco", splits=splits).splits["train"]) == 8
    (root / "val").rename(root / "later")
    (root / "annotations" / "instances_val.json").rename(root / "annotations" / "instances_later.json")
    splits = detection.Splits(train="annotations/mine.json", train_images="pictures",
                              val="annotations/instances_later.json")  # its images: later/
    assert len(detection.read(root, "coco", splits=splits).splits["val"]) == 4


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_on_bad_image_skip_with_per_item_decoding(layouts, tmp_path, fmt):
    from cvtool import config as cfglib
    from cvtool.tasks import detect, ssd

    root = tmp_path / fmt
    convert.convert(layouts["coco"], fmt, root, copy=True)
    bad = sorted(p for p in root.rglob("*.png") if "val" not in str(p.relative_to(root)))[0]
    bad.write_bytes(b"\x89PNG broken")
    sets = [f"data.root={root}", "data.image_size=64", "data.cache=off"]
    with pytest.raises(InputError, match=bad.name):  # at start-up (a header read) or when decoded (COCO)
        _, train, _, _ = detect.prepare(cfglib.load(ssd.Config, None, sets))
        [item for item in train]
    cfg, train, _, meta = detect.prepare(cfglib.load(ssd.Config, None, [*sets, "data.on_bad_image=skip"]))
    assert len(train) == 7 and meta["skipped_images"] == 1 and train.images is None
    assert all(item["image"].shape == (3, 64, 64) for item in train)
