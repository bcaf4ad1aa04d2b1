"""How long the COCO reader takes on an annotation file of COCO train2017's size, and what its labels cost.

    PYTHONPATH=. python benchmarks/coco_reader.py                        # 118,287 images, 860,001 objects
    PYTHONPATH=. python benchmarks/coco_reader.py --quick --allow-busy   # 2,000 images: a smoke test

Writes a synthetic instances JSON (80 categories with COCO's sparse ids 1..90, 0-20 boxes an
image, about COCO's 7.3 a image; 1% crowd), no images needed: the timed steps are the ones
that do not touch image files - ``json.load``, ``coco.parse`` (records in pixels, every box
checked) and building the split's label tensors (``BoxDataset`` with data.cache off, which
decodes nothing at start-up). Reported beside them: the bytes the compact label rows take
and what padding every image to the largest object count (the old layout) would have taken.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import benchlib

FULL = (118_287, 860_001)
QUICK = (2_000, 14_540)


def write(path: Path, images: int, objects: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    ids = [k for k in range(1, 91) if k not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    cats = [{"id": k, "name": f"class{k}", "supercategory": "thing"} for k in ids]
    imgs = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in range(1, images + 1)]
    anns = []
    for a in range(1, objects + 1):
        w, h = rng.uniform(2, 300), rng.uniform(2, 300)
        x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
        anns.append({"id": a, "image_id": rng.randint(1, images), "category_id": rng.choice(ids),
                     "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "area": w * h,
                     "iscrowd": int(rng.random() < 0.01), "segmentation": []})
    from cvtool.files import json_text

    path.write_text(json_text({"images": imgs, "annotations": anns, "categories": cats}))


def measure(path: Path) -> dict[str, float]:
    from cvtool.data import coco
    from cvtool.data.box_dataset import BoxDataset
    from cvtool.data.records import Issues

    start = time.perf_counter()
    data = coco.load_json(path)
    loaded = time.perf_counter()
    _, records = coco.parse(data, path, path.parent / "images", Issues())
    parsed = time.perf_counter()
    split = BoxDataset(records, 256)
    built = time.perf_counter()
    rows = split.rows.numel() * 4 + split.crowd.numel() + split.offsets.numel() * 8
    padded = len(split) * split.max_objects * (5 * 4 + 1)
    return {"json_load_s": loaded - start, "parse_s": parsed - loaded, "labels_s": built - parsed,
            "total_s": built - start, "label_bytes": rows, "padded_bytes": padded,
            "max_objects": split.max_objects, "records": len(records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.add_common(parser)
    args = parser.parse_args()
    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy)
    images, objects = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instances_train.json"
        write(path, images, objects)
        record.update(images=images, objects=objects, json_mb=path.stat().st_size / 2**20)
        runs = [measure(path) for _ in range(1 if args.quick else args.rounds)]
    keys = ("json_load_s", "parse_s", "labels_s", "total_s")
    record["rows"] = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in keys}
    record.update({k: runs[0][k] for k in ("label_bytes", "padded_bytes", "max_objects", "records")})
    rows = record["rows"]
    print(f"COCO reader, {images:,} images / {objects:,} objects ({record['json_mb']:.0f} MB JSON), median of "
          f"{len(runs)}: json.load {rows['json_load_s']:.2f} s, parse {rows['parse_s']:.2f} s, labels "
          f"{rows['labels_s']:.2f} s, total {rows['total_s']:.2f} s; labels in memory "
          f"{record['label_bytes'] / 2**20:.1f} MB (padded to {record['max_objects']} objects an image: "
          f"{record['padded_bytes'] / 2**20:.1f} MB)")
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    sys.exit(main())
