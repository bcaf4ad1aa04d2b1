from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

from conftest import overfit

from cvtool import config as c
from cvtool.data import voc
from cvtool.errors import InputError, MissingResource
from cvtool.models.fcn import FCN, bilinear_kernel
from cvtool.tasks import fcn

DOC = Path(__file__).resolve().parents[1] / "docs" / "transposed-conv.md"


# --------------------------------------------------------------------------- model


def test_bilinear_kernel_upsamples_each_channel_by_itself():
    w = bilinear_kernel(3, 3, 4)
    assert w.shape == (3, 3, 4, 4)
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    for i in range(3):
        assert torch.allclose(w[i, i], taps[:, None] * taps[None, :])
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    assert (w[off_diagonal] == 0).all()
    assert bilinear_kernel(2, 3, 64).shape == (2, 3, 64, 64)


def test_bilinear_transposed_conv_doubles_an_image_like_interpolation():
    up = nn.ConvTranspose2d(3, 3, 4, 2, 1, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(3, 3, 4))
    x = torch.rand(1, 3, 9, 13, generator=torch.Generator().manual_seed(0))
    y = up(x)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert y.shape == (1, 3, 18, 26)
    assert torch.allclose(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-6)
    assert not torch.allclose(y[..., 0, :], ref[..., 0, :])  # the border differs (zeros outside)


def doc_values() -> dict[str, object]:
    """The X, K and conv_transpose2d(...) == result lines of docs/transposed-conv.md."""
    text = DOC.read_text(encoding="utf-8")
    values: dict[str, object] = {}
    for name in ("X", "K"):
        values[name] = ast.literal_eval(re.search(rf"^{name} = (\[.*\])$", text, re.M).group(1))
    for call, result in re.findall(r"^(conv_transpose2d\(X, K.*?\))\s*== (\[.*\])$", text, re.M):
        values[call] = ast.literal_eval(result)
    return values


def test_the_docs_transposed_convolution_numbers_hold():
    values = doc_values()
    assert values["X"] == [[0, 1], [2, 3]] and values["K"] == [[0, 1], [2, 3]]
    x = torch.tensor(values["X"], dtype=torch.float32)[None, None]
    k = torch.tensor(values["K"], dtype=torch.float32)[None, None]
    stride1 = values["conv_transpose2d(X, K)"]
    stride2 = values["conv_transpose2d(X, K, stride=2)"]
    assert stride1 == [[0, 0, 1], [0, 4, 6], [4, 12, 9]]
    assert F.conv_transpose2d(x, k)[0, 0].tolist() == stride1
    assert F.conv_transpose2d(x, k, stride=2)[0, 0].tolist() == stride2
    assert len(stride2) == 4 and all(len(row) == 4 for row in stride2)


def test_fcn_output_matches_any_input_size_and_starts_bilinear():
    model = FCN(num_classes=5, width=8).eval()
    assert torch.equal(model.upsample.weight, bilinear_kernel(5, 5, 64))
    assert model.upsample.stride == (32, 32) and model.upsample.padding == (16, 16)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 96)).shape == (2, 5, 64, 96)
        assert model(torch.randn(1, 3, 45, 70)).shape == (1, 5, 45, 70)


def test_width_64_trunk_is_torchvision_resnet18_and_takes_its_weights():
    resnet = torchvision.models.resnet18(weights=None).eval()
    model = FCN(num_classes=21).eval()
    model.load_backbone(resnet)
    x = torch.randn(1, 3, 64, 64)
    features = nn.Sequential(*list(resnet.children())[:-2])
    with torch.no_grad():
        assert torch.allclose(model.backbone(x), features(x), atol=1e-5)
    assert model.classifier.in_channels == 512 and model.classifier.kernel_size == (1, 1)


# --------------------------------------------------------------------------- task


@pytest.fixture(scope="module")
def devkit(tmp_path_factory) -> Path:
    return voc.synthesize(tmp_path_factory.mktemp("fcn") / "VOCdevkit", n_train=8, n_val=3, size=48, classes=3)


def tiny_config(root: Path, *extra: str) -> fcn.Config:
    return c.load(fcn.Config, overrides=[f"data.root={root}", "data.download=false", "data.crop_size=[32, 48]",
                                         "model.weights=null", "model.width=8", "model.num_classes=4", *extra])


def test_defaults_are_the_books_settings_rescaled_for_a_mean_loss():
    cfg = c.load(fcn.Config)
    assert cfg.optim.name == "sgd" and cfg.optim.momentum == 0
    assert cfg.optim.lr == pytest.approx(1e-3 * 32) and cfg.optim.weight_decay == pytest.approx(1e-3 / 32)
    assert cfg.data.batch_size == 32 and cfg.train.epochs == 5 and cfg.data.crop_size == [320, 480]
    assert cfg.data.root == "data/VOCdevkit" and cfg.model.weights == "IMAGENET1K_V1"
    assert cfg.model.num_classes == "auto" and cfg.data.classes == "auto"  # 21 on VOC: the data names them
    book = c.load(fcn.Config, Path(__file__).resolve().parents[1] / "configs" / "fcn.yaml")
    assert book == c.load(fcn.Config, None, ["optim.decay_norm_and_bias=true"])  # the book decays all


class Fixed(nn.Module):
    """Returns the same logits whatever the input, so the loss sees only the labels."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_void_pixels_change_neither_loss_nor_gradient():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 8, generator=gen)
    labels = torch.randint(0, 4, (2, 6, 8), generator=gen).to(torch.uint8)
    images = torch.zeros(2, 3, 6, 8, dtype=torch.uint8)
    voided = labels.clone()
    voided[:, :, 5:] = voc.VOID
    model = Fixed(logits)
    out = fcn.train_step(model, (images, voided))
    keep = voided != voc.VOID
    per_pixel = F.cross_entropy(logits, labels.long(), reduction="none")
    assert out.loss.item() == pytest.approx(per_pixel[keep].mean().item(), rel=1e-6)
    out.loss.backward()
    assert (model.logits.grad.permute(0, 2, 3, 1)[~keep] == 0).all()
    assert out.count == 2
    acc, n = out.stats["pixel_acc"]
    expected = (logits.argmax(1) == labels)[keep].float().mean().item()
    assert acc.item() / n == pytest.approx(expected)


def test_void_pixels_change_no_validation_metric():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 4, 8, 8, generator=gen)
    labels = torch.randint(0, 4, (1, 8, 8), generator=gen).to(torch.uint8)
    evaluate = fcn.make_evaluate(fcn.class_names(4))
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    base = evaluate(Fixed(logits), [(images, labels)], torch.device("cpu"))
    big_logits = torch.randn(1, 4, 12, 16, generator=gen)  # anything under the void
    big_logits[..., :8, :8] = logits
    big_labels = torch.full((1, 12, 16), voc.VOID, dtype=torch.uint8)
    big_labels[:, :8, :8] = labels
    padded = evaluate(Fixed(big_logits), [(torch.zeros(1, 3, 12, 16, dtype=torch.uint8), big_labels)],
                      torch.device("cpu"))
    assert padded.keys() == base.keys()
    for key in base:
        assert padded[key] == pytest.approx(base[key]), key
    assert {"val_loss", "val_pixel_acc", "val_mean_class_acc", "val_miou", "val_iou/background"} <= base.keys()


def test_build_checks_its_config(devkit, tmp_path):
    with pytest.raises(c.ConfigError, match="model.width 8 does not fit pretrained"):
        fcn.build(tiny_config(devkit, "model.weights=IMAGENET1K_V1"))
    with pytest.raises(c.ConfigError, match="data.crop_size"):
        fcn.build(tiny_config(devkit, "data.crop_size=[32]"))
    with pytest.raises(MissingResource, match="voc2012"):
        fcn.build(tiny_config(tmp_path / "absent"))


def test_drop_mode_reports_what_it_dropped(devkit, caplog):
    with caplog.at_level(logging.WARNING, logger="cvtool.tasks.fcn"):
        task = fcn.build(tiny_config(devkit, "data.small_images=drop", "data.crop_size=[48, 48]"))
    assert task.metadata["dropped_small_images"]["train"] >= 1
    assert f"train: dropped {task.metadata['dropped_small_images']['train']} of 8 images" in caplog.text
    assert len(task.train_data) + task.metadata["dropped_small_images"]["train"] == 8


def test_a_few_train_steps_on_synthetic_data_lower_the_loss(devkit):
    torch.manual_seed(0)
    task = fcn.build(tiny_config(devkit))
    assert task.columns[0] == "train_loss" and task.best_metric == "val_miou" and task.best_mode == "max"
    batch = task.collate_fn([task.train_data[k] for k in range(4)])
    losses, _ = overfit(task, batch, steps=8, lr=0.01)
    assert losses[-1] < 0.7 * losses[0]
    model = task.model.eval()
    val = [task.collate_fn([task.val_data[k] for k in range(len(task.val_data))])]
    with torch.no_grad():
        scores = task.evaluate(model, val, torch.device("cpu"))
    assert 0 <= scores["val_miou"] <= 1 and 0 <= scores["val_pixel_acc"] <= 1


def test_finish_and_predict_write_pictures_and_masks(devkit, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(devkit)
    task = fcn.build(cfg)
    paths = task.finish(task.model, tmp_path, torch.device("cpu"))
    assert Path(paths["predictions"]).is_file()
    image_path = devkit / "VOC2012" / "JPEGImages" / f"{task.val_data.ids[0]}.jpg"
    gray = tmp_path / "gray.png"
    Image.new("L", (37, 29), 90).save(gray)
    model = fcn.build_model(cfg)
    model.load_state_dict(task.model.state_dict())
    results = fcn.predict(model, cfg, task.metadata, [image_path, gray], torch.device("cpu"), {"out": tmp_path / "out"})
    assert [r["image"] for r in results] == [str(image_path), str(gray)]
    for r, size in zip(results, (Image.open(image_path).size, (37, 29))):
        with Image.open(r["mask"]) as mask:
            assert mask.mode == "P" and mask.size == size
            assert mask.getpalette()[3:6] == [128, 0, 0]
            present = [task.metadata["classes"][k] for k in np.unique(np.asarray(mask)).tolist()]
        assert sorted(r["classes_present"]) == sorted(present) == sorted(r["pixel_shares"])
        assert sum(r["pixel_shares"].values()) == pytest.approx(1, abs=1e-3)
        width, height = Image.open(r["overlay"]).size
        short = min(size)
        assert min(width, height) >= min(256, short) and height > width * size[1] / size[0]  # enlarged; legend below
    with pytest.raises(InputError, match="--out"):
        fcn.predict(model, cfg, task.metadata, [gray], torch.device("cpu"), {})


def test_inputs_sharing_a_stem_get_their_own_output_files(devkit, tmp_path):
    from cvtool.tasks.outputs import UniqueStems

    names = UniqueStems()
    assert [names(p) for p in ("a/x.png", "x-2.png", "b/x.jpg", "x_1.png", "c/x.png")] == \
        ["x", "x-2", "x_1", "x_1_1", "x_2"]
    cfg = tiny_config(devkit)
    model = fcn.build_model(cfg).eval()
    paths = []
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "coffee.png")
        Image.new("RGB", (24, 16), (30, 60, 90)).save(paths[-1])
    results = fcn.predict(model, cfg, {}, paths, torch.device("cpu"), {"out": tmp_path / "out"})
    masks = [Path(r["mask"]).name for r in results]
    assert masks == ["coffee_mask.png", "coffee_1_mask.png", "coffee_2_mask.png"]
    assert all(Path(r["mask"]).is_file() and Path(r["overlay"]).is_file() for r in results)
    before = (tmp_path / "out" / "coffee_1_mask.png").read_bytes()
    with pytest.raises(InputError, match=r"coffee_mask.png already exists \(and 5 more\); pass --overwrite"):
        fcn.predict(model, cfg, {}, paths, torch.device("cpu"), {"out": tmp_path / "out"})
    assert (tmp_path / "out" / "coffee_1_mask.png").read_bytes() == before
    again = fcn.predict(model, cfg, {}, paths[:1], torch.device("cpu"), {"out": tmp_path / "out", "overwrite": True})
    assert Path(again[0]["mask"]).name == "coffee_mask.png"
