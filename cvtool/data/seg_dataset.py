"""The one segmentation dataset every segmenter reads: (image, class-index mask) pairs of a split.

Images travel as uint8 tensors (a quarter of the bytes of floats) and are normalized on
the device by the task; masks as uint8 class indices with void kept all the way to the
loss and the metrics, which ignore it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from cvtool.data import masks, presets
from cvtool.data.images import header_size, load_rgb, read_or_skip
from cvtool.data.masks import MaskFormat
from cvtool.data.segmentation import Layout, Split
from cvtool.errors import InputError

# ImageNet mean colour: image padding that normalizes to about zero.
MEAN_RGB = (124, 116, 104)
SURVEYED = 16  # masks decoded to tell whether a set is in VOC's colours
LISTED = 200  # masks decoded to name the values of a set without names


def fill(void: int = masks.VOID) -> dict:
    return {tv_tensors.Image: MEAN_RGB, tv_tensors.Mask: void}


def read_image(path: Path) -> torch.Tensor:
    """RGB uint8 (3, H, W), through the loader every image goes through."""
    return pil_to_tensor(load_rgb(path))


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    width, height = header_size(path, lambda exc: f"{path}: not a readable image ({exc.__class__.__name__})")
    return height, width


class MaskDataset(Dataset):
    """(image uint8 (3, H, W), mask uint8 (H, W)) pairs of one split.

    The listing must be clean (every image has its mask and back); each pair's sizes are
    checked up front from the headers, mask values as each mask is decoded. ``min_size``
    drops the images smaller than it (``dropped`` counts them); ``skip_bad`` decodes every
    pair up front and leaves out (and counts in ``skipped``) those that cannot be read.
    """

    def __init__(self, split: Split, fmt: MaskFormat, transform: Callable | None = None,
                 *, min_size: tuple[int, int] | None = None, skip_bad: bool = False) -> None:
        split.require_clean()
        self.split, self.fmt, self.transform = split.name, fmt, transform
        self.ids: list[str] = []
        self.pairs: list[tuple[Path, Path]] = []
        self.dropped = self.skipped = 0
        for name, image, mask in split.pairs:
            if skip_bad and (read_or_skip(image, read_image, skip=True) is None
                             or read_or_skip(mask, load_rgb, skip=True) is None):
                self.skipped += 1
                continue
            size, mask_size = image_size(image), image_size(mask)
            if mask_size != size:
                raise InputError(f"{mask}: label size {mask_size[::-1]} differs from "
                                 f"its image's {size[::-1]} (width, height)")
            if min_size is not None and (size[0] < min_size[0] or size[1] < min_size[1]):
                self.dropped += 1
                continue
            self.ids.append(name)
            self.pairs.append((image, mask))
        if not self.ids:
            unreadable = f", {self.skipped} unreadable" if self.skipped else ""
            raise InputError(f"{split.source}: no images left (all {self.dropped} smaller than the crop{unreadable})")

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """The untransformed pair."""
        image, mask = self.pairs[index]
        return tv_tensors.Image(read_image(image)), tv_tensors.Mask(torch.from_numpy(masks.read_mask(mask, self.fmt)))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


# --------------------------------------------------------------------------- names of a layout


def spread(items: list, count: int) -> list:
    """Up to ``count`` items spread over the list."""
    step = max(1, len(items) // count)
    return items[::step][:count]


def mask_files(layout: Layout) -> list[Path]:
    return [mask for split in layout.splits.values() for _, _, mask in split.pairs]


def values_found(files: list[Path], colours: np.ndarray | None, void: int = masks.VOID) -> str:
    """The values in (up to LISTED of) ``files``, for an error that asks for names."""
    seen: set[int] = set()
    shown = spread(files, LISTED)
    for path in shown:
        try:
            with masks.open_mask(path) as img:
                rgb = img.mode in ("RGB", "RGBA")
        except InputError:
            continue  # unreadable: data.on_bad_image decides when the dataset reads it
        if rgb and colours is None:
            raise InputError(f"{path} is a colour mask in colours that are not VOC's: give data.palette "
                             f"(one [r, g, b] per class, in class order) and data.classes")
        seen |= set(np.unique(masks.decode(path, MaskFormat(256, colours=colours))).tolist())
    text = ", ".join(map(str, sorted(seen - {void}))) + (f" (and void {void})" if void in seen else "")
    return text + (f" (in {len(shown)} of {len(files)} masks)" if len(shown) < len(files) else "")


def voc_coloured(path: Path) -> bool | None:
    """Whether a mask is in VOC's colours; None when it cannot be read (data.on_bad_image decides)."""
    try:
        return masks.is_voc_coloured(path)
    except InputError:
        return None


def names_of(layout: Layout, given: list[str] | str, count: int | str,
             palette: np.ndarray | None = None, void: int = masks.VOID) -> masks.Names:
    """The class names of a layout's data (``data.classes``, ``model.num_classes`` and
    ``data.palette`` as given)."""
    files = mask_files(layout)
    name_file = masks.find_name_file(layout.name_folders)
    voc = False
    if name_file is None and given == "auto" and palette is None and files:
        sample = [(p, flag) for p in spread(files, SURVEYED) if (flag := voc_coloured(p)) is not None]
        coloured = [flag for _, flag in sample]
        voc = bool(coloured) and all(coloured)
        if any(coloured) and not voc:
            odd = sample[coloured.index(False)][0]
            raise InputError(f"{odd}: not in VOC's colours as other masks of {layout.root} are (a palette PNG "
                             f"with VOC's palette); give data.classes or a classes.txt to read every mask by index")
    return masks.resolve_names(given, count, name_file, voc, lambda: values_found(files, palette, void), layout.root)


def check_sample(layout: Layout, fmt: MaskFormat) -> None:
    """Decode a spread of masks now, so that names that do not cover the values fail before
    training starts (every mask is still checked as it is read)."""
    for path in spread(mask_files(layout), SURVEYED):
        try:
            values = masks.decode(path, fmt)
        except InputError:
            continue  # an unreadable file: data.on_bad_image decides when the dataset reads it
        if masks.outside(values, fmt):
            masks.read_mask(path, fmt)  # the error naming the file and the values


# --------------------------------------------------------------------------- transforms and batches


def train_transform(crop_size: tuple[int, int], *, void: int = masks.VOID, flip: bool = False,
                    scale_range: tuple[float, float] = (1.0, 1.0)) -> v2.Transform:
    """The segmentation training preset, padding with the mean colour and void."""
    return presets.segmentation_train(crop_size, fill(void), flip=flip, scale_range=scale_range)


def random_crop(crop_size: tuple[int, int], void: int = masks.VOID) -> v2.Transform:
    """The book's validation: a random crop (padded with void when the image is smaller)."""
    return presets.segmentation_eval_crop(crop_size, fill(void))


def pad_collate(batch: list[tuple[torch.Tensor, torch.Tensor]], void: int = masks.VOID
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack pairs of any sizes, padded right and bottom to a common multiple of 32.

    Whole validation images differ in size; padding with void keeps them out of the scores
    and the mean colour keeps the padding neutral for the network.
    """
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    h, w = h + -h % 32, w + -w % 32
    images = torch.tensor(MEAN_RGB, dtype=torch.uint8).view(1, 3, 1, 1).repeat(len(batch), 1, h, w)
    labels = torch.full((len(batch), h, w), void, dtype=torch.uint8)
    for k, (img, mask) in enumerate(batch):
        images[k, :, : img.shape[-2], : img.shape[-1]] = img
        labels[k, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, labels
