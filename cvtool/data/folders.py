"""Class-per-folder image datasets (the hotdog layout): ``root/<split>/<class>/<image>``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from cvtool.data.images import IMAGE_SUFFIXES, load_rgb, read_or_skip
from cvtool.errors import InputError


class ClassFolders(Dataset):
    """Classes are the sorted sub-folder names, so indices match torchvision's ImageFolder.

    Images are decoded as they are fetched; ``skip_bad`` decodes each once up front and
    leaves out (and counts in ``skipped``) those that cannot be read.
    """

    def __init__(self, folder: Path, transform: Callable | None = None, classes: list[str] | None = None,
                 *, skip_bad: bool = False, layout: str = ""):
        self.folder = Path(folder)
        expected = f" (expected layout: {layout})" if layout else ""
        if not self.folder.is_dir():
            raise InputError(f"{self.folder} is not a folder{expected}")
        found = sorted(p.name for p in self.folder.iterdir() if p.is_dir())
        if classes is not None and found != classes:
            raise InputError(f"{self.folder} has classes {found}, expected {classes}{expected}")
        if len(found) < 2:
            raise InputError(f"{self.folder} must hold one sub-folder per class (at least 2), found {found}{expected}")
        self.classes = found
        self.samples: list[tuple[Path, int]] = []
        self.skipped = 0
        for index, name in enumerate(found):
            files = sorted(p for p in (self.folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if skip_bad:
                readable = [f for f in files if read_or_skip(f, load_rgb, skip=True) is not None]
                self.skipped += len(files) - len(readable)
                files = readable
            if not files:
                raise InputError(f"class folder {self.folder / name} holds no images{expected}")
            self.samples += [(f, index) for f in files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        img = load_rgb(path)
        return (self.transform(img) if self.transform else img), label
