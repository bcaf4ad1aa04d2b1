from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from cvtool.data import voc
from cvtool.errors import InputError


@pytest.fixture(scope="module")
def devkit(tmp_path_factory) -> Path:
    return voc.synthesize(tmp_path_factory.mktemp("voc") / "VOCdevkit", n_train=9, n_val=3, size=48, classes=3)


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_palette_is_the_bit_interleaving_colormap():
    assert voc.PALETTE[0].tolist() == [0, 0, 0]
    assert voc.PALETTE[1].tolist() == [128, 0, 0]
    assert voc.PALETTE[2].tolist() == [0, 128, 0]
    assert voc.PALETTE[3].tolist() == [128, 128, 0]
    assert voc.PALETTE[15].tolist() == [192, 128, 128]  # person
    assert voc.PALETTE[20].tolist() == [0, 64, 128]     # tvmonitor
    assert voc.PALETTE[255].tolist() == [224, 224, 192]  # void
    assert len(voc.CLASSES) == 21 and voc.CLASSES[15] == "person"


def test_synthetic_set_has_the_real_layout(devkit):
    root = devkit / "VOC2012"
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    assert len(ids) == 9 and len((root / "ImageSets/Segmentation/val.txt").read_text().split()) == 3
    sizes, values = [], set()
    for name in ids:
        with Image.open(root / "SegmentationClass" / f"{name}.png") as label:
            assert label.mode == "P"
            assert label.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
            values |= set(np.unique(np.asarray(label)).tolist())
        with Image.open(root / "JPEGImages" / f"{name}.jpg") as image:
            assert image.format == "JPEG" and image.size == label.size
            sizes.append(min(image.size))
    assert values <= {0, 1, 2, 3, 255} and {0, 255} <= values and len(values) >= 4
    assert min(sizes) < 48 <= max(sizes)  # one image smaller than a 48-pixel crop


def test_palette_and_rgb_labels_give_the_same_indices(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.choice([*range(21), 255], size=(12, 17)).astype(np.uint8)
    voc.palette_image(mask).save(tmp_path / "palette.png")
    Image.fromarray(voc.colorize(mask)).save(tmp_path / "rgb.png")
    assert Image.open(tmp_path / "rgb.png").mode == "RGB"
    assert np.array_equal(voc.read_label(tmp_path / "palette.png"), mask)
    assert np.array_equal(voc.read_label(tmp_path / "rgb.png"), mask)


def test_rgb_label_with_a_foreign_colour_is_refused(tmp_path):
    rgb = voc.colorize(np.zeros((4, 4), np.uint8))
    rgb[2, 3] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "odd.png")
    with pytest.raises(InputError, match=r"odd\.png.*\(1, 2, 3\) at x=3, y=2"):
        voc.read_label(tmp_path / "odd.png")


def test_label_values_outside_the_classes_are_refused(tmp_path):
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 30
    voc.palette_image(mask).save(tmp_path / "bad.png")
    with pytest.raises(InputError, match=r"bad\.png: label values \[30\] outside 0\.\.20"):
        voc.read_label(tmp_path / "bad.png")
    with pytest.raises(InputError, match=r"outside 0\.\.5"):
        voc.read_label(tmp_path / "bad.png", num_classes=6)


def test_root_may_name_vocdevkit_or_voc2012(devkit):
    assert voc.VOCSegmentation(devkit, "val").ids == voc.VOCSegmentation(devkit / "VOC2012", "val").ids
    with pytest.raises(InputError, match="not a VOC2012 folder"):
        voc.VOCSegmentation(devkit / "VOC2012" / "JPEGImages", "val")


def test_missing_files_and_size_mismatch_name_the_file(devkit, tmp_path):
    root = copy_tree(devkit, tmp_path / "VOCdevkit") / "VOC2012"
    ids = (root / "ImageSets/Segmentation/val.txt").read_text().split()
    (root / "JPEGImages" / f"{ids[1]}.jpg").unlink()
    with pytest.raises(InputError, match=rf"val\.txt line 2: id {ids[1]} has no image .*{ids[1]}\.jpg"):
        voc.VOCSegmentation(root, "val")
    (root / "SegmentationClass" / f"{ids[0]}.png").unlink()
    with pytest.raises(InputError, match=rf"val\.txt line 1: id {ids[0]} has no label"):
        voc.VOCSegmentation(root, "val")
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    voc.palette_image(np.zeros((5, 7), np.uint8)).save(root / "SegmentationClass" / f"{ids[2]}.png")
    with pytest.raises(InputError, match=rf"{ids[2]}\.png: label size \(7, 5\) differs"):
        voc.VOCSegmentation(root, "train")


def test_bad_label_values_surface_when_the_item_is_loaded(devkit, tmp_path):
    root = copy_tree(devkit, tmp_path / "VOCdevkit") / "VOC2012"
    name = (root / "ImageSets/Segmentation/val.txt").read_text().split()[0]
    path = root / "SegmentationClass" / f"{name}.png"
    mask = np.array(Image.open(path))
    mask[0, 0] = 21
    voc.palette_image(mask).save(path)
    data = voc.VOCSegmentation(root, "val")
    with pytest.raises(InputError, match=rf"{name}\.png: label values \[21\]"):
        data[0]


def test_items_are_uint8_pairs_and_the_crop_fits(devkit):
    data = voc.VOCSegmentation(devkit, "train", voc.train_transform((32, 40), flip=True))
    for k in range(len(data)):
        image, label = data[k]
        assert type(image) is torch.Tensor and image.dtype == torch.uint8 and image.shape == (3, 32, 40)
        assert label.dtype == torch.uint8 and label.shape == (32, 40)


def position_pair(h: int, w: int, block: int = 4) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """An image whose red channel is 10 x the label, in square blocks of random classes."""
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 21, size=(h // block, w // block))
    label = torch.from_numpy(np.kron(blocks, np.ones((block, block), int)).astype(np.uint8))
    image = torch.stack([label * 10, torch.full_like(label, 7), torch.full_like(label, 9)])
    return tv_tensors.Image(image), tv_tensors.Mask(label)


def test_random_crops_and_flips_keep_image_and_label_aligned():
    torch.manual_seed(0)
    image, label = position_pair(40, 60)
    transform = voc.train_transform((24, 32), flip=True)
    crops = set()
    for _ in range(20):
        x, y = transform(image, label)
        assert torch.equal(x[0], y * 10)
        crops.add(tuple(x[0, 0, :4].tolist()))
    assert len(crops) > 5  # the crops really move


def test_scale_jitter_keeps_image_and_label_aligned():
    torch.manual_seed(0)
    image, label = position_pair(96, 96, block=16)
    transform = voc.train_transform((64, 64), scale_range=(0.7, 1.4))
    for _ in range(5):
        x, y = transform(image, label)
        known = y != voc.VOID
        agree = (x[0][known].float() / 10 - y[known].float()).abs() < 0.5
        assert agree.float().mean() > 0.85  # only block edges blur in the bilinear image


def test_small_images_are_padded_with_void_whole_or_dropped(devkit):
    image, label = position_pair(20, 28)
    x, y = voc.train_transform((32, 40))(image, label)
    assert x.shape == (3, 32, 40)
    assert (y != voc.VOID).sum() == 20 * 28  # all of the small image is inside the crop
    pad = y == voc.VOID
    assert torch.equal(x[:, pad], torch.tensor(voc.MEAN_RGB, dtype=torch.uint8)[:, None].expand(3, int(pad.sum())))
    kept = voc.VOCSegmentation(devkit, "train", min_size=(48, 48))
    assert kept.dropped >= 1 and len(kept) + kept.dropped == 9


def test_pad_collate_pads_to_a_multiple_of_32_with_void():
    a = (torch.full((3, 30, 40), 5, dtype=torch.uint8), torch.ones(30, 40, dtype=torch.uint8))
    b = (torch.full((3, 33, 20), 6, dtype=torch.uint8), torch.full((33, 20), 2, dtype=torch.uint8))
    images, labels = voc.pad_collate([a, b])
    assert images.shape == (2, 3, 64, 64) and labels.shape == (2, 64, 64)
    assert torch.equal(labels[0, :30, :40], a[1]) and (labels[0, 30:] == voc.VOID).all()
    assert (labels[0, :, 40:] == voc.VOID).all()
    assert torch.equal(images[1, :, :33, :20], b[0])
    assert images[1, :, 40, 40].tolist() == list(voc.MEAN_RGB)
