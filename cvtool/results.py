"""What ``Model.predict`` returns: one plain object per image, with its picture.

Each result keeps the entry ``cvtool predict --json`` prints for the image (``to_dict()``) and
the image itself, so a notebook shows it (``_repr_png_``) and a script reads numbers and arrays:
``Classification`` (top classes), ``Detections`` (boxes in the image's pixels, clipped to it),
``Segmentation`` (the class-index mask), ``Stylized`` (a style network's picture). The input
is read from its file only when a picture is asked for.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

READABLE = 256  # pictures of small images are enlarged to this short side, as predict's files are


class Result:
    """One image's prediction. ``source`` is the image's path, None for an image given in memory."""

    def __init__(self, entry: dict[str, Any], image: Image.Image | None, source: str | None):
        self._entry = entry
        self._image = image
        self.source = source

    @property
    def input(self) -> Image.Image:
        """The input as the model saw it: RGB, its own size."""
        if self._image is None:
            from cvtool.data.images import load_rgb

            self._image = load_rgb(str(self.source))
        return self._image

    def to_dict(self) -> dict[str, Any]:
        """The image's entry in ``cvtool predict --json`` (``image``: None for an in-memory image)."""
        return copy.deepcopy(self._entry)

    def picture(self) -> Image.Image:
        raise NotImplementedError

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.picture().save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def describe(self) -> str:
        return f"image={self.source!r}"


class Classification(Result):
    """The top classes, best first: ``label`` and ``probability`` are the first of ``top``."""

    def __init__(self, entry: dict[str, Any], image: Image.Image | None, source: str | None):
        super().__init__(entry, image, source)
        self.top: list[tuple[str, float]] = [(t["class"], float(t["probability"])) for t in entry["top"]]
        self.label: str = entry["class"]
        self.probability: float = float(entry["probability"])

    def describe(self) -> str:
        return f"label={self.label!r}, probability={self.probability:.4f}, image={self.source!r}"

    def picture(self) -> Image.Image:
        """The image, enlarged when small, over its top classes."""
        lines = [f"{name}  {p:.3f}" for name, p in self.top[:3]]
        return captioned(enlarged(self.input), lines)


class Detections(Result):
    """Boxes (N, 4) as x1, y1, x2, y2 in the input's pixels, clipped to it, best first; their
    ``scores``, ``labels`` (indices into ``classes``) and ``names`` (the labels' class names)."""

    def __init__(self, entry: dict[str, Any], image: Image.Image | None, source: str | None, classes: list[str]):
        super().__init__(entry, image, source)
        found = entry["boxes"]
        self.classes = list(classes)
        self.boxes = np.array([b["box"] for b in found], dtype=np.float32).reshape(-1, 4)
        self.scores = np.array([b["score"] for b in found], dtype=np.float32)
        self.names: list[str] = [b["class"] for b in found]
        self.labels = np.array([label_of(name, self.classes) for name in self.names], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def describe(self) -> str:
        return f"{len(self)} box{'es' if len(self) != 1 else ''}, image={self.source!r}"

    def draw(self) -> Image.Image:
        """The image (enlarged to 256 pixels a side when smaller) with the boxes and their scores."""
        import torch
        from torchvision.transforms.v2.functional import pil_to_tensor

        from cvtool.tasks.detect import Detection, draw

        found = Detection(torch.from_numpy(self.boxes), torch.from_numpy(self.scores), torch.from_numpy(self.labels))
        picture = draw(pil_to_tensor(self.input), found, 0.0, self.classes, min_side=READABLE)
        return Image.fromarray(picture.permute(1, 2, 0).numpy())

    picture = draw


class Segmentation(Result):
    """``mask``: the class index of every pixel (H, W, uint8, the input's size); ``names``: the
    class names the indices point into; ``pixel_shares``: each class present and its share."""

    def __init__(self, entry: dict[str, Any], image: Image.Image | None, source: str | None,
                 mask: np.ndarray, overlay: Image.Image, names: list[str]):
        super().__init__(entry, image, source)
        self.mask = mask
        self.names = list(names)
        self.pixel_shares: dict[str, float] = dict(entry["pixel_shares"])
        self._overlay = overlay

    def describe(self) -> str:
        shares = ", ".join(f"{name} {share:.1%}" for name, share in self.pixel_shares.items())
        return f"mask {self.mask.shape[0]}x{self.mask.shape[1]} ({shares}), image={self.source!r}"

    def overlay(self) -> Image.Image:
        """The classes tinted over the image with a legend: the ``<name>_overlay.png`` predict writes."""
        return self._overlay.copy()

    picture = overlay


class Stylized(Result):
    """A style network's output: ``image``, the input repainted at its own size."""

    def __init__(self, entry: dict[str, Any], image: Image.Image | None, source: str | None, styled: Image.Image):
        super().__init__(entry, image, source)
        self.image = styled

    def describe(self) -> str:
        return f"{self.image.width}x{self.image.height}, image={self.source!r}"

    def picture(self) -> Image.Image:
        return self.image


def label_of(name: str, classes: list[str]) -> int:
    """The index of a printed class name (``class7`` for an index past the names)."""
    if name in classes:
        return classes.index(name)
    if name.startswith("class") and name[5:].isdigit():
        return int(name[5:])
    return -1


def enlarged(image: Image.Image, side: int = READABLE) -> Image.Image:
    scale = side / min(image.size)
    if scale <= 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)


def captioned(image: Image.Image, lines: list[str]) -> Image.Image:
    """``image`` over a white band holding ``lines``."""
    size = max(12, min(20, image.width // 16))
    font = ImageFont.load_default(size=size)
    band = (size + size // 2) * len(lines) + size // 2
    canvas = Image.new("RGB", (image.width, image.height + band), "white")
    canvas.paste(image, (0, 0))
    pen = ImageDraw.Draw(canvas)
    for row, text in enumerate(lines):
        pen.text((size // 2, image.height + size // 2 + row * (size + size // 2)), text,
                 fill=(0, 0, 0) if row else (198, 40, 40), font=font)
    return canvas


def read_mask(path: Path) -> np.ndarray:
    """A mask PNG predict wrote (palette: the pixel values are the class indices)."""
    with Image.open(path) as img:
        return np.array(img, dtype=np.uint8)
