"""The book's TinySSD section (D2L 14.7, PyTorch tab) as a plain script, written from its facts.

Nothing of cvtool is used here: the model, the anchors, the anchor labelling, the loss, the
optimizer and the loop are the book's, so comparing with `cvtool train-ssd` means something.
Facts taken from the book: TinySSD (three down-sampling blocks 3-16-32-64, one to 128, two
more at 128, a global max-pool; 3x3 class and box predictors on each of the five maps),
sizes [[.2, .272], [.37, .447], [.54, .619], [.71, .79], [.88, .961]] and ratios [1, 2, .5]
(four anchors a pixel), anchors labelled by IoU >= 0.5 after a greedy pass that gives every
box its best anchor, offsets (10 dx / w, 10 dy / h, 5 log w'/w, 5 log h'/h), the per-image
loss `mean CE over anchors + mean L1 of the masked offsets`, `l.mean().backward()`,
SGD(lr 0.2, weight decay 5e-4), batch 32, raw 0-255 pixels, fp32, no augmentation; and for
prediction softmax, class-agnostic NMS at IoU 0.5, scores below 0.01 dropped. The book does not
score its validation split; here pycocotools does (bbox, at most 100 detections an image).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchvision.ops import box_iou, nms

SIZES = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]]
RATIOS = [1, 2, 0.5]
NUM_ANCHORS = len(SIZES[0]) + len(RATIOS) - 1


def down_sample_blk(in_channels: int, out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(2):
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()]
        in_channels = out_channels
    return nn.Sequential(*layers, nn.MaxPool2d(2))


def anchors_of(height: int, width: int, sizes: list[float], ratios: list[float]) -> torch.Tensor:
    """(H*W*(n+m-1), 4) corner anchors: (s_1, r_1), (s_i, r_1), (s_1, r_j) at each pixel centre."""
    s, r = torch.tensor(sizes), torch.tensor(ratios, dtype=torch.float32)
    w = torch.cat((s * r[0].sqrt(), s[0] * r[1:].sqrt())) * height / width
    h = torch.cat((s / r[0].sqrt(), s[0] / r[1:].sqrt()))
    cy, cx = torch.meshgrid((torch.arange(height) + 0.5) / height, (torch.arange(width) + 0.5) / width,
                            indexing="ij")
    centre = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)
    half = torch.stack((-w, -h, w, h), dim=-1)[None] / 2
    return (centre + half).reshape(-1, 4)


class TinySSD(nn.Module):
    def __init__(self, num_classes: int = 1):
        super().__init__()
        self.num_classes = num_classes
        base = nn.Sequential(down_sample_blk(3, 16), down_sample_blk(16, 32), down_sample_blk(32, 64))
        self.blks = nn.ModuleList([base, down_sample_blk(64, 128), down_sample_blk(128, 128),
                                   down_sample_blk(128, 128), nn.AdaptiveMaxPool2d((1, 1))])
        channels = [64, 128, 128, 128, 128]
        self.cls = nn.ModuleList(nn.Conv2d(c, NUM_ANCHORS * (num_classes + 1), 3, padding=1) for c in channels)
        self.bbox = nn.ModuleList(nn.Conv2d(c, NUM_ANCHORS * 4, 3, padding=1) for c in channels)

    def forward(self, x: torch.Tensor):
        anchors, cls_preds, bbox_preds = [], [], []
        for i, blk in enumerate(self.blks):
            x = blk(x)
            anchors.append(anchors_of(x.shape[2], x.shape[3], SIZES[i], RATIOS))
            cls_preds.append(self.cls[i](x).permute(0, 2, 3, 1).flatten(1))
            bbox_preds.append(self.bbox[i](x).permute(0, 2, 3, 1).flatten(1))
        cls = torch.cat(cls_preds, dim=1)
        return torch.cat(anchors), cls.reshape(cls.shape[0], -1, self.num_classes + 1), torch.cat(bbox_preds, dim=1)


def centre(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat(((boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), dim=1)


def assign(gt: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Box index per anchor or -1: IoU >= 0.5, then each box greedily takes its best anchor."""
    iou = box_iou(anchors, gt)
    best, idx = iou.max(dim=1)
    assigned = torch.where(best >= 0.5, idx, torch.full_like(idx, -1))
    for _ in range(gt.shape[0]):
        flat = int(iou.argmax())
        a, g = flat // gt.shape[0], flat % gt.shape[0]
        assigned[a] = g
        iou[a, :], iou[:, g] = -1, -1
    return assigned


def targets(anchors: torch.Tensor, labels: torch.Tensor):
    """Per image: offsets (B, A*4), masks (B, A*4), classes (B, A); label rows [class, x1, y1, x2, y2]."""
    offsets, masks, classes = [], [], []
    ca = centre(anchors)
    for rows in labels:
        rows = rows[rows[:, 0] >= 0]
        assigned = assign(rows[:, 1:], anchors)
        pos = assigned >= 0
        cb = centre(rows[assigned.clamp(min=0), 1:])
        off = torch.cat((10 * (cb[:, :2] - ca[:, :2]) / ca[:, 2:], 5 * torch.log(1e-6 + cb[:, 2:] / ca[:, 2:])), 1)
        mask = pos[:, None].float().expand(-1, 4)
        offsets.append((off * mask).flatten())
        masks.append(mask.flatten())
        classes.append(torch.where(pos, rows[assigned.clamp(min=0), 0].long() + 1, 0))
    return torch.stack(offsets), torch.stack(masks), torch.stack(classes)


def calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks) -> torch.Tensor:
    batch, classes = cls_preds.shape[0], cls_preds.shape[2]
    cls = F.cross_entropy(cls_preds.reshape(-1, classes), cls_labels.reshape(-1), reduction="none")
    bbox = F.l1_loss(bbox_preds * bbox_masks, bbox_labels * bbox_masks, reduction="none")
    return cls.reshape(batch, -1).mean(dim=1) + bbox.mean(dim=1)


def load_split(split_dir: Path, size: int = 256) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """A banana-layout split as the book's loader holds it: float 0-255 images, labels / size.

    RGBA files are read as RGB (the book's loader would hand 4 channels to a 3-channel net)."""
    by_image: dict[str, list[list[float]]] = {}
    with (split_dir / "label.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            by_image.setdefault(row["img_name"], []).append(
                [float(row["label"]), *(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))])
    names = sorted(by_image)
    most = max(len(v) for v in by_image.values())
    images, labels, sizes = [], torch.full((len(names), most, 5), -1.0), []
    for i, name in enumerate(names):
        img = Image.open(split_dir / "images" / name).convert("RGB")
        sizes.append(img.size)
        scale = torch.tensor([1, img.width, img.height, img.width, img.height], dtype=torch.float32)
        rows = torch.tensor(by_image[name]) / scale
        labels[i, :len(rows)] = rows
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    return torch.stack(images).float(), labels, sizes


def detect(net: TinySSD, x: torch.Tensor) -> list[torch.Tensor]:
    """Per image (N, 6) rows [class, score, x1, y1, x2, y2] (normalised) kept by NMS, best first."""
    anchors, cls_preds, bbox_preds = net(x)
    probs = F.softmax(cls_preds, dim=2)
    ca = centre(anchors)
    out = []
    for p, b in zip(probs, bbox_preds.reshape(len(x), -1, 4)):
        score, cls = p[:, 1:].max(dim=1)
        wh = torch.exp(b[:, 2:] / 5) * ca[:, 2:]
        xy = b[:, :2] * ca[:, 2:] / 10 + ca[:, :2]
        boxes = torch.cat((xy - wh / 2, xy + wh / 2), dim=1)
        keep = nms(boxes, score, 0.5)
        keep = keep[score[keep] >= 0.009999999]
        out.append(torch.cat((cls[keep, None].float(), score[keep, None], boxes[keep]), dim=1))
    return out


def coco_map(found: list[torch.Tensor], labels: torch.Tensor, sizes: list[tuple[int, int]]) -> dict[str, float]:
    """pycocotools' bbox mAP@0.5 and mAP@[.5:.95], boxes in each image's pixels."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, gts, dets = [], [], []
    for i, ((w, h), rows, det) in enumerate(zip(sizes, labels, found)):
        images.append({"id": i, "width": w, "height": h})
        scale = torch.tensor([w, h, w, h])
        for row in rows[rows[:, 0] >= 0]:
            x1, y1, x2, y2 = (row[1:] * scale).tolist()
            gts.append({"id": len(gts) + 1, "image_id": i, "category_id": int(row[0]) + 1, "iscrowd": 0,
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
        for row in det[:100]:
            x1, y1, x2, y2 = (row[2:] * scale).tolist()
            dets.append({"image_id": i, "category_id": int(row[0]) + 1, "score": float(row[1]),
                         "bbox": [x1, y1, x2 - x1, y2 - y1]})
    truth = COCO()
    truth.dataset = {"images": images, "annotations": gts,
                     "categories": [{"id": k} for k in sorted({g["category_id"] for g in gts})]}
    truth.createIndex()
    if not dets:
        return {"map50": 0.0, "map": 0.0}
    ev = COCOeval(truth, truth.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return {"map50": float(ev.stats[1]), "map": float(ev.stats[0])}


def train(root: Path, epochs: int = 20, seed: int = 0, max_steps: int | None = None,
          log=print) -> dict:
    """The book's loop on root/bananas_{train,val}; per epoch the book's metrics and images/s."""
    torch.manual_seed(seed)
    x_train, y_train, _ = load_split(root / "bananas_train")
    x_val, y_val, val_sizes = load_split(root / "bananas_val")
    net = TinySSD(num_classes=int(y_train[..., 0].max()) + 1)
    trainer = torch.optim.SGD(net.parameters(), lr=0.2, weight_decay=5e-4)
    order = torch.Generator().manual_seed(seed)
    epochs_out = []
    for epoch in range(epochs):
        net.train()
        metric = [0.0, 0, 0.0, 0]
        began, seen = time.perf_counter(), 0
        perm = torch.randperm(len(x_train), generator=order)
        for step, start in enumerate(range(0, len(perm), 32)):
            if max_steps is not None and step == max_steps:
                break
            idx = perm[start:start + 32]
            X, Y = x_train[idx], y_train[idx]
            trainer.zero_grad()
            anchors, cls_preds, bbox_preds = net(X)
            bbox_labels, bbox_masks, cls_labels = targets(anchors, Y)
            l = calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks)
            l.mean().backward()
            trainer.step()
            metric[0] += float((cls_preds.argmax(dim=-1) == cls_labels).sum())
            metric[1] += cls_labels.numel()
            metric[2] += float(((bbox_labels - bbox_preds) * bbox_masks).abs().sum())
            metric[3] += bbox_labels.numel()
            seen += len(idx)
        seconds = time.perf_counter() - began
        row = {"epoch": epoch + 1, "class_err": 1 - metric[0] / metric[1], "bbox_mae": metric[2] / metric[3],
               "images_per_second": seen / seconds, "epoch_seconds": seconds}
        epochs_out.append(row)
        log(json.dumps(row))
    net.eval()
    with torch.no_grad():
        found = [d for i in range(0, len(x_val), 32) for d in detect(net, x_val[i:i + 32])]
    ap = coco_map(found, y_val, val_sizes)
    return {"epochs": epochs_out, "val_map50": ap["map50"], "val_map": ap["map"],
            "wall_seconds": sum(r["epoch_seconds"] for r in epochs_out), "net": net}


def book_images_per_second(rows: list[dict]) -> float:
    """Median over the epochs after the first (warm-up)."""
    values = sorted(r["images_per_second"] for r in (rows[1:] or rows))
    return values[len(values) // 2] if len(values) % 2 else math.fsum(values[len(values) // 2 - 1:][:2]) / 2
