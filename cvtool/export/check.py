"""Proof that an export is the checkpoint: the same images through both, compared.

Probabilities and scores must agree within a tolerance; top-1 classes, mask pixels and
detections must be the same wherever the checkpoint itself is not on a knife's edge
(a top-2 margin, or a score, within the tolerance), since an ULP there may flip either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from cvtool.data.images import IMAGE_SUFFIXES, load_rgb
from cvtool.errors import InputError
from cvtool.export.graphs import Graph

TOLERANCE = {False: 1e-4, True: 2e-2}  # probabilities / scores, fp32 and fp16 weights
BOX_TOLERANCE = {False: 1e-2, True: 1.0}  # pixels
PREFERRED = ("val", "test")  # folder names that hold validation images


def find_images(root: Path, count: int) -> list[Path]:
    """Up to ``count`` images under ``root``, from validation-like folders first, in name order."""
    if count <= 0 or not root.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rank = 0 if any(p in Path(folder).relative_to(root).as_posix().lower() for p in PREFERRED) else 1
        images = sorted(f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES)
        found += [(rank, Path(folder) / f) for f in images[:count]]
        if sum(r == 0 for r, _ in found) >= count:
            break
    return [p for _, p in sorted(found, key=lambda item: item[0])[:count]]


def as_input(path: Path, size: tuple[int, int]) -> torch.Tensor:
    img = load_rgb(path).resize((size[1], size[0]))
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size[0], size[1], 3).permute(
        2, 0, 1).float() / 255


def sample(root: str | None, size: tuple[int, int], count: int = 6, seed: int = 0) -> tuple[torch.Tensor, str]:
    """(images, where they came from): real ones when the data is there, else smooth noise;
    always with one flat grey picture (nothing in it to detect or classify)."""
    real = []
    for path in find_images(Path(root), count - 1) if root else []:
        try:
            real.append(as_input(path, size))
        except InputError:
            continue
    gen = torch.Generator().manual_seed(seed)
    made = [F.interpolate(torch.rand(1, 3, 4, 4, generator=gen), size=size, mode="bilinear", align_corners=False)[0]
            for _ in range(count - 1 - len(real))]
    flat = torch.full((3, *size), 0.5)
    source = f"{len(real)} images from {root}" if real else "generated images"
    if made and real:
        source += f" + {len(made)} generated"
    return torch.stack([*real, *made, flat]), source + " + 1 flat grey"


def compare(graph: Graph, ref: tuple[torch.Tensor, ...], got: tuple[torch.Tensor, ...], half: bool) -> dict[str, Any]:
    tol = TOLERANCE[half]
    if graph.family == "detect":
        return _compare_detections(ref, got, graph.module.min_score, tol, BOX_TOLERANCE[half])
    if graph.family == "style":
        diff = (ref[0].float() - got[0].float()).abs().max().item()
        return {"max_abs_diff": diff, "tolerance": tol, "ok": diff <= tol}
    if graph.family == "classify":
        probs, out = ref[0].float(), got[0].float()
        top2 = probs.topk(min(2, probs.shape[1]), dim=1).values
        firm = (top2[:, 0] - top2[:, -1]) > 2 * tol
        differ = (probs.argmax(1) != out.argmax(1)) & firm
        diff = (probs - out).abs().max().item()
        return {"max_abs_diff": diff, "tolerance": tol, "top1_identical": not bool(differ.any()),
                "top1_differing": int(differ.sum()), "ok": diff <= tol and not bool(differ.any())}
    indices, margin = ref
    differ = (indices != got[0].to(indices.dtype)) & (margin > 2 * tol)
    return {"pixels": indices.numel(), "pixels_differing": int(differ.sum()),
            "pixels_on_a_tie": int((margin <= 2 * tol).sum()), "masks_identical": not bool(differ.any()),
            "ok": not bool(differ.any())}


def _twins(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], box_tol: float) -> torch.Tensor:
    """For each detection of a: the smallest score difference to a detection of b with the same
    label and a box within ``box_tol`` (inf where there is none)."""
    if len(a[1]) == 0:
        return torch.zeros(0)
    if len(b[1]) == 0:
        return torch.full((len(a[1]),), float("inf"))
    same = ((a[0][:, None] - b[0][None]).abs().amax(-1) <= box_tol) & (a[2][:, None] == b[2][None])
    gap = (a[1][:, None] - b[1][None]).abs().masked_fill(~same, float("inf"))
    return gap.min(1).values


def _compare_detections(ref, got, min_score: float, tol: float, box_tol: float) -> dict[str, Any]:
    """Every detection of either side scoring clearly above the minimum has a twin on the other."""
    gaps, count = [], 0
    for i in range(len(ref[0])):
        r, g = ([t[i] for t in side] for side in (ref, got))
        r = tuple(t[r[2] >= 0] for t in r)
        g = tuple(t[g[2] >= 0].to(rt.dtype) for t, rt in zip(g, r))
        count += len(r[1])
        for a, b in ((r, g), (g, r)):
            firm = a[1] > min_score + tol
            gaps.append(_twins(tuple(t[firm] for t in a), b, box_tol))
    gap = torch.cat(gaps) if gaps else torch.zeros(0)
    unmatched = int((gap > tol).sum())
    finite = gap[gap.isfinite()]  # the detections with a twin box, whatever their score: INT8's gap shows
    return {"detections": count, "unmatched": unmatched,
            "max_abs_score_diff": finite.max().item() if len(finite) else None, "tolerance": tol,
            "box_tolerance_px": box_tol, "boxes_matched": unmatched == 0, "ok": unmatched == 0}


def verify(graph: Graph, run: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], root: str | None,
           batch: int, half: bool) -> dict[str, Any]:
    """Run ``graph``'s reference and the export on the same images in batches of ``batch``."""
    images, source = sample(root, graph.size)
    sizes = [graph.size]
    refs, gots = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = images[start:start + batch]
            refs.append(_reference(graph, x))
            gots.append(run(x))
        if graph.dynamic_size:  # and one odd size, to show the graph is not tied to the export's
            other = (graph.size[0] + 13, graph.size[1] + 7)
            x = F.interpolate(images[:2], size=other, mode="bilinear", align_corners=False)
            refs.append(_reference(graph, x))
            gots.append(run(x))
            sizes.append(other)
    ref = tuple(_cat([r[i] for r in refs]) for i in range(len(refs[0])))
    got = tuple(_cat([g[i] for g in gots]) for i in range(len(gots[0])))
    report = compare(graph, ref, got, half)
    return {"images": len(images), "source": source, "batch_size": batch,
            "sizes": [list(s) for s in sizes], **report}


def _reference(graph: Graph, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out = graph.reference(x)
    if graph.family != "segment":
        return tuple(t.float() if t.is_floating_point() else t for t in out)
    logits = out[0].float()
    top2 = logits.topk(2, dim=1).values
    return logits.argmax(1), top2[:, 0] - top2[:, 1]


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-image results; masks of two sizes are flattened first."""
    if len({p.shape[1:] for p in parts}) == 1:
        return torch.cat(parts)
    return torch.cat([p.flatten() for p in parts])
