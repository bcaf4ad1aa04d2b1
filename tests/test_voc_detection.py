"""Pascal VOC2012 detection: XML parsing, bad files, box-aware augmentation, the synthetic set, format detection."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtool.data.bananas import Augment, BananaDataset, read_labels
from cvtool.data.bananas import synthesize as synthesize_bananas
from cvtool.data.detection import detect_format, resolve_format
from cvtool.data.voc_detection import CLASSES, VOCDetection, parse_annotation, read_split
from cvtool.data.voc_detection_synth import annotation_xml, scene, synthesize_voc_detection
from cvtool.errors import InputError, MissingResource

# A VOC2012-style file: children sorted, bndbox with xmax first, a float, occluded, a missing flag.
XML_2012 = """<annotation>
	<filename>2008_000008.jpg</filename>
	<folder>VOC2012</folder>
	<object>
		<name>horse</name>
		<bndbox>
			<xmax>471</xmax>
			<xmin>53</xmin>
			<ymax>420</ymax>
			<ymin>87.5</ymin>
		</bndbox>
		<difficult>0</difficult>
		<occluded>1</occluded>
		<pose>Left</pose>
		<truncated>1</truncated>
	</object>
	<object>
		<name>person</name>
		<bndbox>
			<xmax>289</xmax>
			<xmin>158</xmin>
			<ymax>167</ymax>
			<ymin>44</ymin>
		</bndbox>
		<difficult>1</difficult>
		<pose>Unspecified</pose>
	</object>
	<segmented>0</segmented>
	<size>
		<depth>3</depth>
		<height>442</height>
		<width>500</width>
	</size>
</annotation>
"""


def voc_folder(root: Path, entries: dict[str, tuple[tuple[int, int], list[tuple]]], split: str = "train") -> Path:
    """A VOCdevkit with grey images holding a white rectangle per object; objects are (name, box, difficult)."""
    base = root / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for name, ((width, height), objects) in entries.items():
        pixels = np.full((height, width, 3), 90, np.uint8)
        xml = [f"<annotation><folder>VOC2012</folder><filename>{name}.jpg</filename>",
               f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
        for cls, (x1, y1, x2, y2), difficult in objects:
            pixels[y1 - 1: y2, x1 - 1: x2] = 255
            xml.append(f"<object><name>{cls}</name><pose>Unspecified</pose><truncated>0</truncated>"
                       f"<difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                       f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
        Image.fromarray(pixels).save(base / "JPEGImages" / f"{name}.jpg", quality=95)
        (base / "Annotations" / f"{name}.xml").write_text("".join(xml) + "</annotation>\n")
    (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in entries))
    return root


@pytest.fixture
def simple(tmp_path) -> Path:
    return voc_folder(tmp_path / "VOCdevkit", {
        "2007_000001": ((80, 60), [("dog", (5, 10, 30, 40), 0), ("cat", (50, 5, 70, 20), 1)]),
        "2007_000002": ((60, 60), [("car", (20, 20, 40, 50), 0)]),
    })


def test_parse_reads_2012_order_floats_flags_and_several_objects(tmp_path):
    path = tmp_path / "2008_000008.xml"
    path.write_text(XML_2012)
    ann = parse_annotation(path)
    assert ann.filename == "2008_000008.jpg" and ann.size == (500, 442)
    horse, person = ann.objects
    assert (horse.name, horse.label) == ("horse", CLASSES.index("horse"))
    assert horse.box == (52.0, 86.5, 471.0, 420.0)  # 1-based inclusive pixels -> 0-based corners
    assert horse.truncated and not horse.difficult
    assert person.difficult and not person.truncated  # no <truncated>: 0
    assert person.box == (157.0, 43.0, 289.0, 167.0)


def test_dataset_items_match_bananas_and_carry_difficult(simple):
    data = VOCDetection(simple, "train", 32)
    assert len(data) == 2 and data.max_objects == 2 and data.skipped == 0
    item = data[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32)
    dog, cat = CLASSES.index("dog"), CLASSES.index("cat")
    want = torch.tensor([[dog, 4 / 80, 9 / 60, 30 / 80, 40 / 60], [cat, 49 / 80, 4 / 60, 70 / 80, 20 / 60]])
    assert torch.allclose(item["labels"], want)
    assert item["difficult"].tolist() == [False, True]
    padded = data[1]
    assert padded["labels"][1].tolist() == [-1, 0, 0, 0, 0] and padded["difficult"].tolist() == [False, False]


def test_a_class_list_of_ones_own(simple):
    data = VOCDetection(simple, "train", 32, classes=["car", "cat", "dog"])
    assert data.labels[0, :, 0].tolist() == [2, 1] and data.labels[1, 0, 0] == 0
    with pytest.raises(InputError, match=r"2007_000001.xml object 2 \(cat\): class 'cat' is not in the class list"):
        VOCDetection(simple, "train", 32, classes=["car", "dog"])


def _edit(root: Path, name: str, old: str, new: str) -> Path:
    path = root / "VOC2012" / "Annotations" / f"{name}.xml"
    path.write_text(path.read_text().replace(old, new))
    return path


@pytest.mark.parametrize("old, new, message", [
    ("</annotation>", "", r"2007_000001.xml: not valid XML"),
    ("<xmax>30</xmax>", "<xmax>81</xmax>", r"2007_000001.xml object 1 \(dog\): bndbox ends at \(81, 40\), outside the 80x60 image"),
    ("<ymax>20</ymax>", "<ymax>70</ymax>", r"2007_000001.xml object 2 \(cat\): bndbox ends at \(70, 70\), outside"),
    ("<xmax>70</xmax>", "<xmax>50</xmax>", r"2007_000001.xml object 2 \(cat\): bndbox \(50, 5, 50, 20\) needs xmin < xmax"),
    ("<xmin>5</xmin>", "<xmin>-3</xmin>", r"2007_000001.xml object 1 \(dog\): bndbox \(-3, 10, 30, 40\) starts outside"),
    ("<name>cat</name>", "<name>unicorn</name>", r"2007_000001.xml object 2 \(unicorn\): class 'unicorn' is not in"),
    ("<ymin>10</ymin>", "<ymin>ten</ymin>", r"2007_000001.xml object 1 \(dog\) ymin: 'ten' is not a number"),
    ("<difficult>1</difficult>", "<difficult>2</difficult>", r"object 2 \(cat\) difficult: '2' is neither 0 nor 1"),
    ("<width>80</width>", "<width>90</width>", r"2007_000001.xml: <size> says 90x60 but the image is 80x60"),
])
def test_each_bad_annotation_is_an_exit_2_line_naming_file_and_object(simple, old, new, message):
    _edit(simple, "2007_000001", old, new)
    with pytest.raises(InputError, match=message) as caught:
        VOCDetection(simple, "train", 32)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


@pytest.mark.parametrize("folder, suffix, kind", [("JPEGImages", "jpg", "image"), ("Annotations", "xml", "annotation")])
def test_an_id_without_its_files_is_named_with_its_line(simple, folder, suffix, kind):
    (simple / "VOC2012" / folder / f"2007_000002.{suffix}").unlink()
    with pytest.raises(InputError, match=rf"train.txt line 2: id 2007_000002 has no {kind} .*2007_000002.{suffix}"):
        VOCDetection(simple, "train", 32)


def test_missing_list_and_wrong_folder(simple, tmp_path):
    with pytest.raises(InputError, match=r"ImageSets/Main/val.txt is missing"):
        VOCDetection(simple, "val", 32)
    with pytest.raises(InputError, match=r"is not a VOC detection folder"):
        VOCDetection(tmp_path / "elsewhere", "train", 32)


def test_on_bad_image_skip_leaves_an_unreadable_image_out(simple):
    (simple / "VOC2012" / "JPEGImages" / "2007_000002.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(InputError, match=r"cannot read image .*2007_000002.jpg"):
        VOCDetection(simple, "train", 32)
    data = VOCDetection(simple, "train", 32, skip_bad=True)
    assert data.ids == ["2007_000001"] and data.skipped == 1


def _white_box(image: torch.Tensor, labels_row: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The drawn rectangle's extent in the (augmented) image, and the label's box, in pixels."""
    box = labels_row[1:] * size
    x1, y1, x2, y2 = (int(v) for v in box.round())
    region = image[:, max(y1 - 2, 0): y2 + 2, max(x1 - 2, 0): x2 + 2].float().mean(0) > 170
    ys, xs = torch.nonzero(region, as_tuple=True)
    found = torch.tensor([xs.min() + max(x1 - 2, 0), ys.min() + max(y1 - 2, 0),
                          xs.max() + 1 + max(x1 - 2, 0), ys.max() + 1 + max(y1 - 2, 0)], dtype=torch.float32)
    return found, box


def test_boxes_and_difficult_flags_stay_aligned_under_flip_and_scale_jitter(tmp_path):
    # Distinct widths tell the two objects apart whatever the flip did.
    root = voc_folder(tmp_path / "VOCdevkit", {
        "2007_000001": ((64, 64), [("dog", (6, 10, 30, 26), 0), ("cat", (40, 36, 50, 56), 1)]),
    })
    torch.manual_seed(0)
    data = VOCDetection(root, "train", 64, augment=Augment(flip=True, scale_jitter=0.2))
    flipped = 0
    for _ in range(12):
        item = data[0]
        rows = item["labels"][item["labels"][:, 0] >= 0]
        assert len(rows) == 2
        for row, difficult in zip(rows, item["difficult"]):
            found, box = _white_box(item["image"], row, 64)
            assert torch.allclose(found, box, atol=2.5), (found, box)
            is_cat = int(row[0]) == CLASSES.index("cat")
            assert bool(difficult) == is_cat
            wide = (box[2] - box[0]) > (box[3] - box[1])
            assert wide != is_cat  # the dog is wider than tall, the cat taller than wide
        flipped += int(rows[0, 1] > 0.5)
    assert 0 < flipped < 12


def test_synthetic_set_round_trips_in_the_real_layout(tmp_path):
    root = synthesize_voc_detection(tmp_path / "VOCdevkit", n_train=10, n_val=4, size=96, classes=4, seed=2)
    main = root / "VOC2012" / "ImageSets" / "Main"
    train_ids = main.joinpath("train.txt").read_text().split()
    assert len(train_ids) == 10 and main.joinpath("trainval.txt").read_text().split() == \
        train_ids + main.joinpath("val.txt").read_text().split()
    split = read_split(root, "train")
    objects = [o for ann in split.annotations for o in ann.objects]
    assert {o.label for o in objects} <= set(range(4)) and len({o.label for o in objects}) > 1
    assert len(objects) >= 2 * 10 * 0.7  # several objects an image
    assert any(len(ann.objects) > 1 for ann in split.annotations)
    all_objects = objects + [o for ann in read_split(root, "val").annotations for o in ann.objects]
    assert any(o.difficult for o in all_objects) and any(o.truncated for o in all_objects)
    texts = [p.read_text() for p in (root / "VOC2012" / "Annotations").glob("*.xml")]
    assert any("<occluded>" in t for t in texts) and any("<occluded>" not in t for t in texts)
    for name, ann in zip(split.ids, split.annotations):
        assert ann.filename == f"{name}.jpg"
        with Image.open(root / "VOC2012" / "JPEGImages" / ann.filename) as img:
            assert img.size == ann.size and img.format == "JPEG"
        for obj in ann.objects:  # an object marked truncated is cut by the border: its box reaches it
            x1, y1, x2, y2 = obj.box
            assert not obj.truncated or x1 == 0 or y1 == 0 or x2 == ann.size[0] or y2 == ann.size[1]
        per_class = {k: dict(line.split() for line in main.joinpath(f"{CLASSES[k]}_train.txt").read_text().splitlines())
                     for k in range(4)}
        for k in range(4):
            mine = [o for o in ann.objects if o.label == k]
            want = -1 if not mine else (0 if all(o.difficult for o in mine) else 1)
            assert int(per_class[k][name]) == want
    data = VOCDetection(root, "val", 64, classes=CLASSES[:4])
    assert len(data) == 4 and data[0]["image"].shape == (3, 64, 64)


@pytest.mark.parametrize("old_style", [True, False])
def test_written_xml_reads_back_as_the_objects_drawn(tmp_path, old_style):
    image, drawn = scene(np.random.default_rng(4), 96, 80, 4)
    assert image.size == (96, 80) and len(drawn) >= 1
    path = tmp_path / "2008_000001.xml"
    path.write_text(ET.tostring(annotation_xml("2008_000001", 96, 80, drawn, old_style), encoding="unicode"))
    ann = parse_annotation(path)
    assert ann.size == (96, 80)
    assert [(o.label, o.box, o.difficult, o.truncated) for o in ann.objects] == \
        [(d.label, (d.box[0] - 1, d.box[1] - 1, d.box[2], d.box[3]), d.difficult, d.truncated) for d in drawn]


def test_synthetic_set_is_deterministic_and_checks_its_options(tmp_path):
    a = synthesize_voc_detection(tmp_path / "a", n_train=3, n_val=1, size=64, classes=3, seed=5)
    b = synthesize_voc_detection(tmp_path / "b", n_train=3, n_val=1, size=64, classes=3, seed=5)
    for path in sorted((a / "VOC2012").rglob("*.*")):
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes()
    with pytest.raises(InputError, match="classes must be 1..20"):
        synthesize_voc_detection(tmp_path / "c", classes=21)
    with pytest.raises(InputError, match="size must be at least 48"):
        synthesize_voc_detection(tmp_path / "c", size=40)


def test_bananas_multi_class_synth_and_reader(tmp_path):
    root = synthesize_bananas(tmp_path / "bananas", n_train=12, n_val=3, size=48, classes=3, seed=0)
    rows = list(csv.reader((root / "bananas_train" / "label.csv").open()))[1:]
    assert {int(r[1]) for r in rows} == {0, 1, 2}
    data = BananaDataset(root, "train", 48, num_classes=3)
    assert sorted(set(data.labels[:, 0, 0].tolist())) == [0, 1, 2]
    with pytest.raises(InputError, match=r"label 2 is not a valid class index \(model.num_classes is 2\)"):
        read_labels(root / "bananas_train", num_classes=2)


def test_bananas_synth_classes_through_the_cli(cli, tmp_path):
    code, _, err = cli("data", "synth", "bananas", "--out", tmp_path / "b", "--n-train", "6", "--n-val", "2",
                       "--size", "40", "--classes", "2")
    assert code == 0, err
    labels = {int(r[1]) for r in list(csv.reader((tmp_path / "b" / "bananas_train" / "label.csv").open()))[1:]}
    assert labels <= {0, 1} and len(labels) == 2


def test_detect_format_finds_each_layout_and_explains_neither(simple, tmp_path):
    bananas = synthesize_bananas(tmp_path / "bananas", n_train=2, n_val=1, size=32)
    assert detect_format(bananas) == "bananas"
    assert detect_format(simple) == detect_format(simple / "VOC2012") == detect_format(simple.parent) == "voc"
    assert resolve_format(bananas, "auto") == "bananas" and resolve_format(bananas, "voc") == "voc"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty holds no detection data set: looked for bananas: .*label.csv.*voc: .*Annotations.*coco: .*yolo: data.yaml"):
        detect_format(tmp_path / "empty")
    with pytest.raises(MissingResource, match=r"detection data folder .*nowhere does not exist") as caught:
        detect_format(tmp_path / "nowhere")
    assert caught.value.exit_code == 3
    with pytest.raises(InputError, match="data.format 'tfrecord' is not one of auto, bananas, voc, coco, yolo"):
        resolve_format(bananas, "tfrecord")
