"""Images as users have them, read as RGB as a viewer shows them (data/images.py), one test each."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cvtool.data import detection
from cvtool.data.images import header_size, load_rgb


def pixels(path) -> np.ndarray:
    img = load_rgb(path)
    assert img.mode == "RGB"
    return np.asarray(img)


def test_rgba_shows_its_transparent_pixels_as_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red under every pixel
    rgba[:2, ..., 3] = 255  # top half opaque, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = pixels(tmp_path / "a.png")
    assert out[0, 0].tolist() == [200, 0, 0] and out[3, 3].tolist() == [255, 255, 255]


def test_greyscale_becomes_three_equal_channels(tmp_path):
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16, "L").save(tmp_path / "g.png")
    out = pixels(tmp_path / "g.png")
    assert out.shape == (4, 4, 3) and (out[..., 0] == out[..., 2]).all() and out[3, 3, 1] == 240


def test_palette_with_a_transparent_entry(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "p.png", transparency=0)  # entry 0 transparent
    assert pixels(tmp_path / "p.png").tolist() == [[[255, 255, 255], [40, 50, 60]]]


def test_sixteen_bit_grey_is_scaled_to_eight_bits(tmp_path):
    Image.fromarray(np.array([[0, 32768, 65535]], np.uint16)).save(tmp_path / "i16.png")
    assert pixels(tmp_path / "i16.png")[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    Image.new("RGB", (8, 8), (220, 30, 30)).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    red, green, blue = pixels(tmp_path / "c.jpg")[4, 4].astype(int)
    assert red > 180 and green < 80 and blue < 80


def rotated_photo(path, orientation: int = 6) -> None:
    """A 40x20 stored image, red at its stored top-left, with EXIF saying: turn it 90 degrees clockwise."""
    stored = np.full((20, 40, 3), 90, np.uint8)
    stored[:5, :5] = (255, 0, 0)
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, quality=100)


def test_exif_rotation_is_applied_to_pixels_and_size(tmp_path):
    rotated_photo(tmp_path / "r.jpg")
    out = pixels(tmp_path / "r.jpg")
    assert out.shape == (40, 20, 3)  # shown upright: 20 wide, 40 high
    assert out[2, 17, 0] > 200 and out[2, 2, 0] < 150  # stored top-left is now top-right
    assert header_size(tmp_path / "r.jpg", str) == (20, 40)


def test_boxes_are_taken_in_the_displayed_frame(tmp_path):
    """A COCO box drawn on the upright photo (as CVAT or Roboflow would): x up to 20, y up to 40."""
    for split in ("train", "valid"):
        (tmp_path / split).mkdir()
        rotated_photo(tmp_path / split / "r.jpg")
        (tmp_path / split / "_annotations.coco.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "r.jpg"}],  # no width/height: taken from the header
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [15, 0, 5, 35]}],
            "categories": [{"id": 1, "name": "mark"}]}))
    record = detection.read(tmp_path).splits["train"][0]
    assert record.size == (20, 40) and record.boxes == [(15.0, 0.0, 20.0, 35.0)]


@pytest.mark.parametrize("mode", ["LA", "1", "RGBX"])
def test_other_modes_read_too(tmp_path, mode):
    Image.new(mode, (3, 3)).save(tmp_path / "x.png" if mode != "RGBX" else tmp_path / "x.tif")
    path = tmp_path / ("x.png" if mode != "RGBX" else "x.tif")
    assert pixels(path).shape == (3, 3, 3)
