"""Pascal VOC2012 semantic segmentation: the on-disk layout, labels, crops and a synthetic twin.

Labels are the palette indices of ``SegmentationClass/<id>.png`` (0..20, 255 = void), read
as indices rather than matched by colour; an RGB label is mapped back through the VOC
colormap. Void stays 255 all the way to the loss and the metrics, which ignore it.
Images travel as uint8 tensors (a quarter of the bytes of floats) and are normalized on
the device by the task.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torchvision
from PIL import Image, ImageDraw, ImageFilter, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.io import ImageReadMode
from torchvision.transforms import v2

from cvtool.data import presets
from cvtool.data.images import header_size, load_rgb, read_or_skip
from cvtool.data.textures import background, smooth_noise
from cvtool.errors import InputError

CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
VOID = 255
# ImageNet mean colour: image padding that normalizes to about zero.
MEAN_RGB = (124, 116, 104)
FILL = {tv_tensors.Image: MEAN_RGB, tv_tensors.Mask: VOID}
LAYOUT = ("VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt (one id a line), "
          "JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNG, 255 = void)")


def colormap(n: int = 256) -> np.ndarray:
    """The VOC palette (n, 3) uint8: bit k of the index sets bit 7 - k // 3 of channel k % 3."""
    index = np.arange(n)
    cmap = np.zeros((n, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            cmap[:, channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return cmap.astype(np.uint8)


PALETTE = colormap()


def palette_image(mask: np.ndarray) -> Image.Image:
    """A class-index array as a VOC palette PNG image."""
    img = Image.fromarray(mask.astype(np.uint8), "P")
    img.putpalette(PALETTE.tobytes())
    return img


def colorize(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """Class indices (H, W) to VOC colours (H, W, 3)."""
    return PALETTE[np.asarray(mask, dtype=np.uint8)]


def rgb_to_index(rgb: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    """Map VOC colours (H, W, 3) to class indices through a sorted lookup of colour codes."""
    classes = np.r_[np.arange(num_classes), VOID]
    codes = (PALETTE[classes].astype(np.int64) << [16, 8, 0]).sum(1)
    order = np.argsort(codes)
    codes, classes = codes[order], classes[order]
    pixels = (rgb.astype(np.int64) << [16, 8, 0]).sum(-1)
    pos = np.searchsorted(codes, pixels).clip(max=len(codes) - 1)
    unknown = codes[pos] != pixels
    if unknown.any():
        y, x = np.argwhere(unknown)[0]
        raise InputError(f"{path}: colour {tuple(int(c) for c in rgb[y, x])} at x={x}, y={y} "
                         f"is not a VOC class colour")
    return classes[pos].astype(np.uint8)


def read_label(path: Path, num_classes: int = len(CLASSES)) -> np.ndarray:
    """Class indices (H, W) uint8 of a palette, grayscale or RGB label PNG."""
    try:
        with Image.open(path) as img:
            if img.mode in ("P", "L"):
                mask = np.array(img)
            elif img.mode in ("RGB", "RGBA"):
                mask = rgb_to_index(np.asarray(img.convert("RGB")), num_classes, path)
            else:
                raise InputError(f"{path}: label mode {img.mode} is neither palette, grayscale nor RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: not a readable label image ({exc.__class__.__name__})") from None
    bad = (mask >= num_classes) & (mask != VOID)
    if bad.any():
        values = np.unique(mask[bad])[:5].tolist()
        raise InputError(f"{path}: label values {values} outside 0..{num_classes - 1} and {VOID} (void)")
    return mask


def read_image(path: Path) -> torch.Tensor:
    """RGB uint8 (3, H, W)."""
    try:
        return torchvision.io.read_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    width, height = header_size(path, lambda exc: f"{path}: not a readable image ({exc.__class__.__name__})")
    return height, width


def voc_root(root: Path) -> Path:
    """The VOC2012 folder, whether ``root`` names it or the VOCdevkit folder above it."""
    for candidate in (root, root / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    raise InputError(f"{root} is not a VOC2012 folder: expected {LAYOUT}")


def read_ids(list_file: Path) -> list[tuple[int, str]]:
    """(line number, id) for each non-empty line."""
    if not list_file.is_file():
        raise InputError(f"{list_file} is missing: expected {LAYOUT}")
    lines = list_file.read_text(encoding="utf-8", errors="replace").splitlines()
    ids = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    if not ids:
        raise InputError(f"{list_file} lists no image ids")
    return ids


class VOCSegmentation(Dataset):
    """(image uint8 (3, H, W), label uint8 (H, W)) pairs of one split.

    Every listed id is checked up front (files present, label size = image size, from the
    headers only); label values are checked as each label is decoded. ``min_size`` drops
    the images smaller than it (the book's treatment of images smaller than the crop);
    ``dropped`` counts them. ``skip_bad`` decodes every pair up front and leaves out (and
    counts in ``skipped``) those whose image or label cannot be read.
    """

    def __init__(self, root: Path, split: Literal["train", "val"], transform: Callable | None = None,
                 *, num_classes: int = len(CLASSES), min_size: tuple[int, int] | None = None,
                 skip_bad: bool = False) -> None:
        self.root = voc_root(Path(root))
        self.split = split
        self.transform = transform
        self.num_classes = num_classes
        list_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        self.ids: list[str] = []
        self.dropped = 0
        self.skipped = 0
        for line, name in read_ids(list_file):
            image, label = self.image_path(name), self.label_path(name)
            for kind, path in (("image", image), ("label", label)):
                if not path.is_file():
                    raise InputError(f"{list_file} line {line}: id {name} has no {kind} {path}")
            if skip_bad and (read_or_skip(image, read_image, skip=True) is None
                             or read_or_skip(label, load_rgb, skip=True) is None):
                self.skipped += 1
                continue
            size, label_size = image_size(image), image_size(label)
            if label_size != size:
                raise InputError(f"{label}: label size {label_size[::-1]} differs from "
                                 f"its image's {size[::-1]} (width, height)")
            if min_size is not None and (size[0] < min_size[0] or size[1] < min_size[1]):
                self.dropped += 1
                continue
            self.ids.append(name)
        if not self.ids:
            unreadable = f", {self.skipped} unreadable" if self.skipped else ""
            raise InputError(f"{list_file}: no images left (all {self.dropped} smaller than the crop{unreadable})")

    def image_path(self, name: str) -> Path:
        return self.root / "JPEGImages" / f"{name}.jpg"

    def label_path(self, name: str) -> Path:
        return self.root / "SegmentationClass" / f"{name}.png"

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """The untransformed pair."""
        name = self.ids[index]
        image = read_image(self.image_path(name))
        mask = read_label(self.label_path(name), self.num_classes)
        return tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(mask))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def train_transform(crop_size: tuple[int, int], *, flip: bool = False,
                    scale_range: tuple[float, float] = (1.0, 1.0)) -> v2.Transform:
    """The segmentation training preset with VOC's padding (mean colour, void label)."""
    return presets.segmentation_train(crop_size, FILL, flip=flip, scale_range=scale_range)


def random_crop(crop_size: tuple[int, int]) -> v2.Transform:
    """The book's validation: a random crop (padded with void when the image is smaller)."""
    return presets.segmentation_eval_crop(crop_size, FILL)


def pad_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack pairs of any sizes, padded right and bottom to a common multiple of 32.

    Whole validation images differ in size; padding with void keeps them out of the scores
    and the mean colour keeps the padding neutral for the network.
    """
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    h, w = h + -h % 32, w + -w % 32
    images = torch.tensor(MEAN_RGB, dtype=torch.uint8).view(1, 3, 1, 1).repeat(len(batch), 1, h, w)
    labels = torch.full((len(batch), h, w), VOID, dtype=torch.uint8)
    for k, (img, mask) in enumerate(batch):
        images[k, :, : img.shape[-2], : img.shape[-1]] = img
        labels[k, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, labels


# --------------------------------------------------------------------------- synthetic data

# Half-width of the void band around each object, in pixels (VOC's is about 5 wide).
BAND = 3
SHAPES = ("triangle", "disc", "square", "ring", "cross", "diamond")


def draw_shape(kind: str, size: int, margin: int = 0) -> Image.Image:
    """A filled shape as an L mask (255 inside) of size x size, inside ``margin`` empty pixels."""
    mask = Image.new("L", (size + 2 * margin, size + 2 * margin), 0)
    d = ImageDraw.Draw(mask)
    lo, hi = margin, margin + size - 1

    def at(u: float, v: float) -> tuple[float, float]:
        return lo + u * (hi - lo), lo + v * (hi - lo)

    if kind == "triangle":
        d.polygon([at(0.5, 0), at(1, 1), at(0, 1)], fill=255)
    elif kind == "disc":
        d.ellipse([*at(0, 0), *at(1, 1)], fill=255)
    elif kind == "square":
        d.rectangle([*at(0.1, 0.1), *at(0.9, 0.9)], fill=255)
    elif kind == "ring":
        d.ellipse([*at(0, 0), *at(1, 1)], fill=255)
        d.ellipse([*at(0.3, 0.3), *at(0.7, 0.7)], fill=0)
    elif kind == "cross":
        d.rectangle([*at(0.35, 0), *at(0.65, 1)], fill=255)
        d.rectangle([*at(0, 0.35), *at(1, 0.65)], fill=255)
    else:
        d.polygon([at(0.5, 0), at(1, 0.5), at(0.5, 1), at(0, 0.5)], fill=255)
    return mask


def class_colour(rng: np.random.Generator, cls: int, classes: int) -> np.ndarray:
    """A jittered colour whose hue belongs to the class."""
    hue = (cls - 1) / classes + rng.uniform(-0.2, 0.2) / classes
    rgb = colorsys.hsv_to_rgb(hue % 1, rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))
    return np.array(rgb, dtype=np.float32)


def synth_sample(rng: np.random.Generator, h: int, w: int, classes: int) -> tuple[Image.Image, np.ndarray]:
    """A textured background with 1-3 shapes; each object ringed by a void band."""
    image = np.asarray(background(rng, h, w), dtype=np.float32) / 255
    label = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, classes + 1))
        size = int(rng.uniform(0.3, 0.55) * min(h, w))
        shape = draw_shape(SHAPES[(cls - 1) % len(SHAPES)], size, margin=BAND)
        side = shape.height
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        inside = np.asarray(shape) > 127
        grown = np.asarray(shape.filter(ImageFilter.MaxFilter(2 * BAND - 1)))
        band = grown != np.asarray(shape.filter(ImageFilter.MinFilter(2 * BAND - 1)))
        shade = 0.75 + 0.5 * smooth_noise(rng, side, side, 3).mean(-1, keepdims=True)
        region = (slice(top, top + side), slice(left, left + side))
        image[region] = np.where(inside[..., None], class_colour(rng, cls, classes) * shade, image[region])
        label[region] = np.where(band, VOID, np.where(inside, cls, label[region]))
    return Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8), "RGB"), label


def synthesize(out: Path, *, n_train: int = 300, n_val: int = 60, size: int = 128, classes: int = 5,
               seed: int = 0) -> Path:
    """Write a small set in the VOC layout with ``out`` as the VOCdevkit folder; return ``out``.

    Images are about size x 4/3 size (a third portrait), every eighth at half that, so
    smaller than a crop of about ``size``. ``classes`` object classes (VOC classes
    1..classes) each have their own shape and hue.
    """
    if not 1 <= classes < len(CLASSES):
        raise InputError(f"synthetic VOC: classes must be 1..{len(CLASSES) - 1}, got {classes}")
    if size < 32:
        raise InputError(f"synthetic VOC: size must be at least 32, got {size}")
    rng = np.random.default_rng(seed)
    voc = Path(out) / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    number = 0
    for split, count in (("train", n_train), ("val", n_val)):
        ids = []
        for _ in range(count):
            h, w = size, round(size * rng.uniform(1.15, 1.5))
            if rng.random() < 0.3:
                h, w = w, h
            if number % 8 == 5:
                h, w = h // 2, w // 2
            image, label = synth_sample(rng, h, w, classes)
            name = f"2012_{number:06d}"
            number += 1
            image.save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
            palette_image(label).save(voc / "SegmentationClass" / f"{name}.png")
            ids.append(name)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return Path(out)
