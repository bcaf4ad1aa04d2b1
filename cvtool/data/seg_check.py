"""``data check`` for segmentation sets: what training would read, every problem named by file.

The same layouts, mask decoding and class names as training (cvtool.data.segmentation,
masks, seg_dataset), but nothing stops at the first problem: every split on disk is
read whole, each mask decoded once, each image hashed (sha1 of the file) to find
duplicates within and across splits.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cvtool.data import masks, segmentation
from cvtool.data.images import header_size
from cvtool.data.masks import MaskFormat
from cvtool.data.seg_dataset import names_of
from cvtool.data.segmentation import Layout, Split
from cvtool.errors import InputError
from cvtool.files import atomic_write


def looks_like(root: Path) -> bool:
    """Whether ``root`` is a segmentation layout (a VOC year with Segmentation lists, or images/ + masks/)."""
    return Path(root).is_dir() and segmentation.detect_format(Path(root)) is not None


def split_names(root: Path, fmt: str) -> list[str]:
    """Every split on disk; VOC's trainval is left out when train and val are there (it is their union)."""
    if fmt == "voc":
        lists = sorted(p.stem for p in (root / "ImageSets" / "Segmentation").glob("*.txt"))
        return [n for n in lists if not (n == "trainval" and {"train", "val"} <= set(lists))]
    return sorted({p.name for base in ("images", "masks") for p in (root / base).iterdir() if p.is_dir()})


def open_all(root: Path, fmt: str) -> tuple[Layout, list[dict[str, str]]]:
    """The layout with every split on disk, and the problems of splits that cannot be listed."""
    found = segmentation.detect_format(root) if fmt == "auto" else fmt
    if found is None:
        raise InputError(f"{root} is neither a VOC folder ({segmentation.VOC_LAYOUT}) nor a folder pair "
                         f"({segmentation.FOLDERS_LAYOUT})")
    base = segmentation.voc_root(root) if found == "voc" else root
    splits: dict[str, Split] = {}
    problems = []
    for name in split_names(base, found):
        try:
            splits[name] = (segmentation.voc_split(base, name) if found == "voc"
                            else segmentation.folder_split(base, name))
        except InputError as exc:
            problems.append({"split": name, "file": str(base), "message": str(exc)})
    folders = [base / "SegmentationClass", base, root] if found == "voc" else [root / "masks", root]
    return Layout(found, base, splits, folders), problems


def sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_stats(split: Split, fmt: MaskFormat | None, problems: list[dict[str, str]]) -> dict[str, Any]:
    """One split's counts, pixel shares and listing problems; each problem also goes into ``problems``."""
    def problem(file: Path, message: str) -> None:
        problems.append({"split": split.name, "file": str(file), "message": message})

    for file, message in split.problems:
        problem(file, message)
    left = [(f, m) for f, m in split.problems if f.is_file() and f != split.source]  # a file without its partner
    no_mask = [str(f) for f, m in left if "has no mask" in m or "has no label" in m]
    no_image = [str(f) for f, m in left if "has no image" in m]
    pixels: dict[int, int] = defaultdict(int)
    outside = []
    for _, image, mask in split.pairs:
        try:
            values = masks.decode(mask, fmt)
            size = header_size(image, lambda exc: f"{image}: not a readable image ({exc.__class__.__name__})")
        except InputError as exc:
            problem(mask if str(mask) in str(exc) else image, str(exc))
            continue
        if (values.shape[1], values.shape[0]) != size:
            problem(mask, f"{mask}: mask size {values.shape[::-1]} differs from its image's {size} (width, height)")
        for value, count in zip(*np.unique(values, return_counts=True)):
            pixels[int(value)] += int(count)
        bad = masks.outside(values, fmt) if fmt is not None else []
        if bad:
            outside.append({"file": str(mask), "values": bad})
            problem(mask, f"{mask}: mask values {bad[:5]} are neither a class (0..{fmt.count - 1}) nor void "
                          f"({fmt.void})")
    return {"images": len(split.pairs) + len(no_mask), "masks": len(split.pairs) + len(no_image),
            "pixels": dict(sorted(pixels.items())), "images_without_masks": no_mask,
            "masks_without_images": no_image, "values_outside": outside}


def shares(pixels: dict[int, int], names: list[str], void: int) -> tuple[dict[str, float], float]:
    """Each class's share of the labelled (non-void) pixels, and void's share of all of them."""
    total = sum(pixels.values())
    labelled = total - pixels.get(void, 0)
    named = {(names[v] if v < len(names) else str(v)): n for v, n in pixels.items() if v != void}
    share = {name: round(named.get(name, 0) / max(labelled, 1), 6) for name in [*names, *named]}
    return share, round(pixels.get(void, 0) / max(total, 1), 6)


def duplicates(layout: Layout, stats: dict[str, dict[str, Any]], problems: list[dict[str, str]]) -> None:
    """Images with the same bytes: within a split, and across splits (named in the later split)."""
    seen: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for name, split in layout.splits.items():
        for _, image, _ in split.pairs:
            seen[sha1(image)].append((name, image))
    for name in layout.splits:
        stats[name]["duplicates_within"], stats[name]["duplicates_across"] = [], []
    for group in seen.values():
        for k, (name, image) in enumerate(group[1:], 1):
            same = [(n, i) for n, i in group[:k] if n == name]
            first_name, first = same[0] if same else group[0]
            kind = "duplicates_within" if same else "duplicates_across"
            stats[name][kind].append([str(first), str(image)])
            where = "" if same else f" ({first_name})"
            problems.append({"split": name, "file": str(image),
                             "message": f"{image} has the same content as {first}{where}"})


def check(root: Path, *, fmt: str = "auto", classes: list[str] | None = None) -> dict:
    """The report: format, root, classes, per-split stats and every problem ({split, file, message})."""
    root = Path(root)
    layout, problems = open_all(root, fmt)
    try:
        names = names_of(layout, classes if classes is not None else "auto", "auto")
        mask_format: MaskFormat | None = MaskFormat(len(names.names), masks.VOID, names.colours, names.source,
                                                          names.source)
        class_names = names.names
    except InputError as exc:
        problems.append({"split": "", "file": str(layout.root), "message": str(exc)})
        mask_format, class_names = None, []
    stats = {name: split_stats(split, mask_format, problems) for name, split in layout.splits.items()}
    duplicates(layout, stats, problems)
    for s in stats.values():
        s["pixel_share"], s["void_share"] = shares(s.pop("pixels"), class_names, masks.VOID)
    return {"format": layout.format, "root": str(layout.root), "classes": class_names,
            "splits": stats, "problems": problems}


def plot(report: dict, path: Path) -> Path:
    """Each class's share of the labelled pixels, one bar group per class, one bar per split."""
    from matplotlib.figure import Figure  # not pyplot: a notebook keeps its matplotlib backend

    splits = list(report["splits"])
    names = list(dict.fromkeys(n for s in splits for n in report["splits"][s]["pixel_share"]))
    fig = Figure(figsize=(max(6.0, 0.5 * len(names) * max(1, len(splits)) + 2), 4), constrained_layout=True)
    ax = fig.subplots()
    width = 0.8 / max(1, len(splits))
    for k, split in enumerate(splits):
        share = report["splits"][split]["pixel_share"]
        bars = ax.bar(np.arange(len(names)) + (k - (len(splits) - 1) / 2) * width, [share.get(n, 0) for n in names],
                      width, label=f"{split} (void {report['splits'][split]['void_share']:.1%} of pixels)")
        if len(names) <= 12:
            ax.bar_label(bars, fmt="{:.1%}", fontsize="x-small")
    turn = len(names) > 6
    ax.set_xticks(np.arange(len(names)), names, rotation=45 if turn else 0, ha="right" if turn else "center")
    ax.set_ylabel("share of labelled pixels")
    ax.set_title(f"{report['root']}: pixels per class ({report['format']})", fontsize="medium")
    ax.legend(fontsize="small")
    atomic_write(Path(path), lambda fh: fig.savefig(fh, dpi=80, format="png"))
    return Path(path)
