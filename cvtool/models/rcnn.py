"""torchvision's Faster R-CNN with cvtool's weight handling and our own number of classes.

Weights are a torchvision weight name (COCO detection weights for the whole model, or
ImageNet weights for the backbone only) or none; the file comes from the TORCH_HOME cache
the way every command's does (models/weights.py), so a missing file offline is one exit-3
line naming it. The file is first read with ``weights_only`` (a file that needs pickled
code is refused) before torchvision's builder loads it from that same cache, so the
builder keeps its own choices: frozen batch norm for pretrained backbones, which layers
train. The box predictor is then replaced for num_classes + 1 outputs (index 0 is
background, so dataset label k becomes k + 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torchvision.models as tvm
from torchvision.models import detection
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

from cvtool.errors import InputError
from cvtool.models.defaults import RCNN_ARCH
from cvtool.models.weights import cached_file, is_none, read_state_file


@dataclass(frozen=True)
class Arch:
    build: Callable[..., FasterRCNN]
    weights: type  # the COCO detection weights enum
    backbone: type  # the ImageNet backbone weights enum
    max_trainable: int  # the most backbone layers torchvision lets train


ARCHS: dict[str, Arch] = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": Arch(detection.fasterrcnn_mobilenet_v3_large_320_fpn,
                                                  detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
                                                  tvm.MobileNet_V3_Large_Weights, 6),
    "fasterrcnn_mobilenet_v3_large_fpn": Arch(detection.fasterrcnn_mobilenet_v3_large_fpn,
                                              detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
                                              tvm.MobileNet_V3_Large_Weights, 6),
    "fasterrcnn_resnet50_fpn_v2": Arch(detection.fasterrcnn_resnet50_fpn_v2,
                                       detection.FasterRCNN_ResNet50_FPN_V2_Weights, tvm.ResNet50_Weights, 5),
}


def build_rcnn(arch: str = RCNN_ARCH, num_classes: int = 1, *, weights: str | None = None,
               weights_backbone: str | None = None, trainable_backbone_layers: int | None = None,
               image_size: int | None = None, anchor_scale: float = 1.0, **kwargs: Any) -> FasterRCNN:
    """A Faster R-CNN for ``num_classes`` object classes (background not counted).

    ``weights`` (whole model, COCO) wins over ``weights_backbone``, as in torchvision.
    ``trainable_backbone_layers`` (None: torchvision's 3) only applies to pretrained weights;
    from random init every layer trains. ``image_size`` makes the model's own resize keep
    square inputs of that size as they are (torchvision would scale them to 800 or 320
    pixels). ``anchor_scale`` multiplies the RPN's anchor sizes (torchvision's 32-512 pixels
    suit 320-800 pixel images; small images hold small objects). Other keywords go to
    FasterRCNN (box_score_thresh, box_detections_per_img, ...).
    """
    if arch not in ARCHS:
        raise InputError(f"unknown model.arch {arch!r}; known: {', '.join(ARCHS)}")
    if num_classes < 1:
        raise InputError(f"num_classes must be at least 1, got {num_classes}")
    spec = ARCHS[arch]
    coco = _entry(arch, spec.weights, weights, "model.weights")
    imagenet = None if coco is not None else _entry(arch, spec.backbone, weights_backbone, "model.weights_backbone")
    files = [cached_file(arch, entry.name, entry.url, fix=f"set {key}: none")
             for entry, key in ((coco, "model.weights"), (imagenet, "model.weights_backbone")) if entry is not None]
    for path in files:
        read_state_file(path)
    pretrained = coco is not None or imagenet is not None
    if pretrained and trainable_backbone_layers is not None \
            and not 0 <= trainable_backbone_layers <= spec.max_trainable:
        raise InputError(f"model.trainable_backbone_layers must lie in 0..{spec.max_trainable} for {arch}, "
                         f"got {trainable_backbone_layers}")
    if image_size is not None:
        kwargs = {"min_size": image_size, "max_size": image_size, **kwargs}
    try:
        model = spec.build(weights=coco, weights_backbone=imagenet, progress=False,
                           trainable_backbone_layers=trainable_backbone_layers if pretrained else None, **kwargs)
    except RuntimeError as exc:  # a cached file whose tensors do not fit the architecture
        first = str(exc).splitlines()[0] if str(exc) else "mismatched keys"
        raise InputError(f"weights file {', '.join(map(str, files))} does not fit {arch}: {first}") from None
    if anchor_scale != 1:
        anchors = model.rpn.anchor_generator  # same count per location: the RPN head's shape holds
        model.rpn.anchor_generator = AnchorGenerator(
            tuple(tuple(max(1, round(size * anchor_scale)) for size in sizes) for sizes in anchors.sizes),
            anchors.aspect_ratios)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes + 1)
    return model


def _entry(arch: str, enum: type, name: str | None, key: str) -> Any:
    """The weights enum member called ``name``; None for none."""
    if is_none(name):
        return None
    try:
        return enum[str(name).strip()]
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise InputError(f"unknown {key} {name!r} for {arch}; use one of {names}, or none") from None
