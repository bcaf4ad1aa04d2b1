"""The Faster R-CNN builder: weights through the TORCH_HOME cache, our class count, a model that learns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_320_FPN_Weights as Coco320
from torchvision.ops.misc import FrozenBatchNorm2d

from cvtool.errors import InputError, MissingResource
from cvtool.models.rcnn import ARCHS, build_rcnn

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
# Small sampling budgets keep a CPU step short; the architecture is unchanged.
LIGHT = dict(rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50, rpn_batch_size_per_image=64,
             box_batch_size_per_image=32)


def checkpoints(tmp_path: Path) -> Path:
    folder = tmp_path / "torch-home" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def one_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two 64x64 images, each with bright rectangles where its boxes are."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 64, generator=g) * 0.3 for _ in range(2)]
    images[0][0, 8:30, 8:40] = 1
    images[1][1, 20:50, 15:45] = 1
    images[1][2, 2:14, 48:62] = 1
    targets = [{"boxes": torch.tensor([[8.0, 8, 40, 30]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[15.0, 20, 45, 50], [48, 2, 62, 14]]), "labels": torch.tensor([2, 3])}]
    return images, targets


def test_a_few_steps_overfit_one_batch_and_eval_returns_boxes(one_thread):
    torch.manual_seed(0)
    model = build_rcnn(ARCH, num_classes=3, image_size=64, **LIGHT)
    images, targets = one_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    model.train()
    losses = []
    for _ in range(12):
        parts = model(images, targets)
        assert set(parts) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
        loss = sum(parts.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:2]) / 2, losses
    model.eval()
    with torch.no_grad():
        found = model(images)
    assert len(found) == 2
    for out in found:
        assert out["boxes"].shape[1] == 4 and len(out["boxes"]) == len(out["labels"]) == len(out["scores"]) > 0
        assert ((out["labels"] >= 1) & (out["labels"] <= 3)).all()  # 0 is background, never reported
        assert (out["boxes"] >= 0).all() and (out["boxes"] <= 64).all()
        assert torch.equal(out["scores"], out["scores"].sort(descending=True).values)


def test_the_predictor_has_a_background_column_and_small_images_are_not_upscaled():
    model = build_rcnn(ARCH, num_classes=4, image_size=96)
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 5 and predictor.bbox_pred.out_features == 20
    assert model.transform.min_size == (96,) and model.transform.max_size == 96
    resized, _ = model.transform([torch.rand(3, 96, 96)])
    assert resized.image_sizes == [(96, 96)]
    # Random init: torchvision trains every layer and keeps ordinary batch norm.
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())


def test_anchor_scale_shrinks_the_anchors_and_keeps_coco_weights_loadable():
    plain = build_rcnn(ARCH, num_classes=1, image_size=96)
    small = build_rcnn(ARCH, num_classes=1, image_size=96, anchor_scale=0.5)
    assert plain.rpn.anchor_generator.sizes[0] == (32, 64, 128, 256, 512)
    assert small.rpn.anchor_generator.sizes == ((16, 32, 64, 128, 256),) * 3
    assert small.rpn.anchor_generator.aspect_ratios == plain.rpn.anchor_generator.aspect_ratios
    images, _ = small.transform([torch.rand(3, 96, 96)])
    features = list(small.backbone(images.tensors).values())  # anchors follow only the maps' shapes

    def widest(model):
        boxes = model.rpn.anchor_generator(images, features)[0]
        return (boxes[:, 2] - boxes[:, 0]).max().item()

    assert widest(small) == pytest.approx(widest(plain) / 2, rel=0.01)
    small.load_state_dict(plain.state_dict())  # same RPN head shapes: pretrained files still fit


def test_coco_weights_load_from_the_cache_under_torchvisions_file_name(tmp_path):
    torch.manual_seed(1)
    stand_in = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
    path = checkpoints(tmp_path) / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
    assert path.name == Path(Coco320.COCO_V1.url).name
    torch.save(stand_in.state_dict(), path)
    model = build_rcnn(ARCH, num_classes=2, weights="COCO_V1", trainable_backbone_layers=2)
    got, want = model.state_dict(), stand_in.state_dict()
    shared = [k for k in got if "box_predictor" not in k and k in want]
    assert len(shared) > 100 and all(torch.equal(got[k], want[k]) for k in shared)
    assert model.roi_heads.box_predictor.cls_score.out_features == 3
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.modules())
    frozen = [n for n, p in model.backbone.body.named_parameters() if not p.requires_grad]
    assert frozen and any(p.requires_grad for p in model.backbone.body.parameters())


def test_backbone_weights_load_from_the_cache(tmp_path):
    torch.manual_seed(2)
    stand_in = torchvision.models.mobilenet_v3_large()
    torch.save(stand_in.state_dict(), checkpoints(tmp_path) / "mobilenet_v3_large-8738ca79.pth")
    model = build_rcnn(ARCH, num_classes=1, weights="none", weights_backbone="IMAGENET1K_V1")
    first = model.backbone.body["0"][0].weight
    assert torch.equal(first, stand_in.features[0][0].weight)


@pytest.mark.parametrize("key, value, file", [
    ("weights", "COCO_V1", "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"),
    ("weights_backbone", "IMAGENET1K_V1", "mobilenet_v3_large-8738ca79.pth"),
])
def test_missing_weights_offline_exit_3_naming_the_file_and_none(tmp_path, key, value, file):
    with pytest.raises(MissingResource) as caught:
        build_rcnn(ARCH, num_classes=1, **{key: value})
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert str(checkpoints(tmp_path) / file) in message and f"model.{key}: none" in message


def test_bad_choices_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="unknown model.arch 'fasterrcnn_tiny'; known: fasterrcnn_mobilenet"):
        build_rcnn("fasterrcnn_tiny")
    with pytest.raises(InputError, match="unknown model.weights 'IMAGENET1K_V1' .* use one of COCO_V1, or none"):
        build_rcnn(ARCH, weights="IMAGENET1K_V1")
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), checkpoints(tmp_path) / "mobilenet_v3_large-8738ca79.pth")
    with pytest.raises(InputError, match=r"trainable_backbone_layers must lie in 0..6"):
        build_rcnn(ARCH, weights_backbone="IMAGENET1K_V1", trainable_backbone_layers=7)


def test_a_cached_file_that_is_not_a_state_dict_or_does_not_fit_is_refused(tmp_path):
    path = checkpoints(tmp_path) / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read safely"):
        build_rcnn(ARCH, weights="COCO_V1")
    torch.save({"backbone.body.0.0.weight": torch.zeros(1)}, path)
    with pytest.raises(InputError, match=f"weights file {path} does not fit {ARCH}"):
        build_rcnn(ARCH, weights="COCO_V1")


def test_every_arch_names_its_weight_enums():
    for arch, spec in ARCHS.items():
        assert arch.startswith("fasterrcnn_") and "COCO_V1" in spec.weights.__members__
        assert "IMAGENET1K_V1" in spec.backbone.__members__
