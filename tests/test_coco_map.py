"""cvtool's mAP against pycocotools' COCOeval on random cases: the same numbers, to rounding.

The cases aim at the conventions where implementations part: tied scores, boxes on an
integer grid (IoUs landing exactly on thresholds, detections tying between two boxes),
one box per image (recall landing exactly on recall points), images without ground truth
or detections, more than 100 detections in an image, and ignored ground truth (cvtool's
``difficult``), which COCOeval expresses here as an ordinary box whose area lies outside
the "all" area range.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch

from cvtool.ops.detection_metrics import MeanAveragePrecision

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def random_boxes(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """(n, 4) boxes as x, y, w, h.

    "grid": small integer boxes in a strip, mostly one unit high and often of one width,
    crowded enough that IoUs land exactly on thresholds and detections tie between two boxes.
    "decimal": boxes at the origin with sides in tenths, whose IoUs round onto
    0.8999999999999999 and its like (at the origin both implementations compute the same
    IoU). "float": anything.
    """
    if kind == "grid":
        xy = np.stack((rng.integers(0, 7, n), np.where(rng.random(n) < 0.8, 0, 1)), axis=1)
        w = np.full(n, rng.integers(2, 5)) if rng.random() < 0.5 else rng.integers(1, 5, n)
        wh = np.stack((w, np.where(rng.random(n) < 0.8, 1, rng.integers(1, 4, n))), axis=1)
        return np.concatenate((xy, wh), axis=1).astype(float)
    if kind == "decimal":
        return np.concatenate((np.zeros((n, 2)), rng.integers(1, 11, (n, 2)) / 10), axis=1)
    return np.concatenate((rng.uniform(0, 40, (n, 2)), rng.uniform(2, 30, (n, 2))), axis=1)


def jitter(rng: np.random.Generator, boxes: np.ndarray, kind: str) -> np.ndarray:
    """What a detector finds near ``boxes``, good and bad, in the boxes' own kind."""
    if kind == "float":
        moved = boxes + rng.normal(0, 3, boxes.shape)
        moved[:, 2:] = np.maximum(moved[:, 2:], 0.5)
        return moved
    if kind == "grid":
        moved = boxes + rng.integers(-1, 2, boxes.shape)
        moved[:, 2:] = np.maximum(moved[:, 2:], 1)
        return moved
    sides = np.clip(np.round(boxes[:, 2:] * 10) + rng.integers(-1, 2, (len(boxes), 2)), 1, 10) / 10
    return np.concatenate((boxes[:, :2], sides), axis=1)


def image(rng: np.random.Generator, gt: np.ndarray, dets: np.ndarray, classes: int, tied: bool,
          ignore: float) -> dict:
    n_gt = len(gt)
    scores = (rng.integers(1, 4, len(dets)) / 4) if tied else rng.random(len(dets))
    return {"gt": gt, "gt_labels": rng.integers(0, classes, n_gt), "ignore": rng.random(n_gt) < ignore,
            "dets": dets, "scores": scores, "det_labels": rng.integers(0, classes, len(dets))}


def banana_case(rng: np.random.Generator) -> list[dict]:
    """One class, one box per image, 10 or 20 images: recall lands on points like 0.7 and 0.95."""
    images, tied = [], rng.random() < 0.5
    for _ in range(int(rng.choice([10, 20]))):
        gt = random_boxes(rng, 1, "float")
        found = gt + rng.normal(0, 1, (1, 4))
        dets = [found] * int(rng.random() < 0.8) + [random_boxes(rng, 1, "float")] * int(rng.random() < 0.3)
        images.append(image(rng, gt, np.concatenate(dets) if dets else np.zeros((0, 4)), 1, tied, 0.0))
    return images


def random_case(rng: np.random.Generator) -> list[dict]:
    """Images of gt (boxes, labels, ignore) and detections (boxes, scores, labels)."""
    if rng.random() < 0.2:
        return banana_case(rng)
    kind = rng.choice(["grid", "decimal", "float"])
    classes = 1 if kind != "float" and rng.random() < 0.5 else int(rng.integers(1, 4))
    tied, ignore = rng.random() < 0.5, rng.choice([0.0, 0.3])
    images = []
    for _ in range(int(rng.integers(1, 5))):
        n_gt = int(rng.integers(0, 6))
        gt = random_boxes(rng, n_gt, kind)
        near = gt[rng.integers(0, n_gt, int(rng.integers(0, 2 * n_gt + 1)))] if n_gt else gt
        near = jitter(rng, near, kind)
        crowded = rng.random() < 0.05
        extra = random_boxes(rng, int(rng.integers(100, 130)) if crowded else int(rng.integers(0, 5)), kind)
        images.append(image(rng, gt, np.concatenate((near, extra)), classes, tied, ignore))
    if not any(len(im["dets"]) for im in images):  # COCO.loadRes cannot take an empty result list
        images[0] = image(rng, images[0]["gt"], random_boxes(rng, 1, kind), classes, tied, ignore)
    return images


def coco_stats(images: list[dict], classes: int = 3) -> tuple[float, float, float]:
    """COCOeval's AP, AP50, AP75 (bbox, all areas, 100 detections), read as summarize() reads them.

    Only the "all" area range and 100 detections are evaluated, which is all these three
    stats use; -1 where there is nothing to score.
    """
    annotations, results = [], []
    for image_id, im in enumerate(images, 1):
        for box, label, ignore in zip(im["gt"], im["gt_labels"], im["ignore"]):
            area = -1.0 if ignore else float(box[2] * box[3])  # outside the "all" range: ignored
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                "bbox": box.tolist(), "area": area, "iscrowd": 0})
        for box, score, label in zip(im["dets"], im["scores"], im["det_labels"]):
            results.append({"image_id": image_id, "category_id": int(label) + 1, "bbox": box.tolist(),
                            "score": float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": [{"id": i} for i in range(1, len(images) + 1)], "annotations": annotations,
                         "categories": [{"id": c + 1} for c in range(classes)]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        params = evaluation.params
        params.areaRng, params.areaRngLbl, params.maxDets = [[0, 1e5**2]], ["all"], [100]  # only what stats[:3] read
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, :, 0, 0]  # (T, R, K): summarize()'s first three stats
    stats = [precision, precision[params.iouThrs == 0.5], precision[params.iouThrs == 0.75]]
    return tuple(float(np.mean(s[s > -1])) if (s > -1).any() else -1.0 for s in stats)


def cvtool_stats(images: list[dict]) -> tuple[float, float, float]:
    meter = MeanAveragePrecision()

    def corners(xywh: np.ndarray) -> torch.Tensor:
        xywh = torch.as_tensor(xywh, dtype=torch.float64).reshape(-1, 4)
        return torch.cat((xywh[:, :2], xywh[:, :2] + xywh[:, 2:]), dim=1)

    for im in images:
        meter.update(corners(im["dets"]), torch.as_tensor(im["scores"], dtype=torch.float64),
                     torch.as_tensor(im["det_labels"]), corners(im["gt"]), torch.as_tensor(im["gt_labels"]),
                     gt_difficult=torch.as_tensor(im["ignore"]))
    out = meter.compute()
    return out["map"], out["map50"], out["map75"]


def test_map_equals_cocoeval_on_random_cases(one_thread):
    rng = np.random.default_rng(2024)
    worst = 0.0
    for case in range(250):
        images = random_case(rng)
        expected, got = coco_stats(images), cvtool_stats(images)
        for e, g in zip(expected, got):
            if e == -1:
                assert math.isnan(g), (case, expected, got)
            else:
                worst = max(worst, abs(e - g))
                assert g == pytest.approx(e, abs=1e-12), (case, expected, got)
    assert worst < 1e-12


def test_recall_landing_on_a_recall_point_reads_as_cocoeval(one_thread):
    """Bananas: one box per image; 57 of 100 found first, then a miss: recall 0.57 is a recall point."""
    images = []
    for i in range(100):
        box = np.array([[10.0, 10.0, 20.0, 20.0]])
        far = np.array([[60.0, 60.0, 5.0, 5.0]])
        found = i < 57 or i > 57
        images.append({"gt": box, "gt_labels": np.array([0]), "ignore": np.array([False]),
                       "dets": box if found else far, "scores": np.array([1.0 - i / 1000]),
                       "det_labels": np.array([0])})
    expected, got = coco_stats(images, classes=1), cvtool_stats(images)
    assert got == pytest.approx(expected, abs=1e-12)
