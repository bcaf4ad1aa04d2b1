"""The API's other result kinds: a classifier's top classes, a segmenter's mask, a stylised
picture, each equal to what the CLI prints or writes for the same file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cvtool
from cvtool.data import voc
from tests.conftest import TINY_HOTDOG


def overrides(args: list[str]) -> dict[str, str]:
    """conftest's CLI ``--set`` list as an API overrides dict (values as YAML text, parsed like --set)."""
    import yaml

    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    return {key: yaml.safe_load(value) for key, value in (s.split("=", 1) for s in sets)}


def test_a_classifier_gives_its_top_classes(hotdog_root, tmp_path, cli):
    torch.set_num_threads(1)
    run = cvtool.train("finetune-hotdog", overrides={**overrides(TINY_HOTDOG), "data.root": str(hotdog_root)},
                       out=tmp_path / "hotdog", epochs=1, max_steps=1, device="cpu", quiet=True)
    photo = sorted((hotdog_root / "test" / "hotdog").iterdir())[0]
    code, out, err = cli("predict", "--checkpoint", run.checkpoints["best"], photo, "--json")
    assert code == 0, err
    expected = json.loads(out)[0]
    found = cvtool.load(run.checkpoints["best"]).predict(Image.open(photo))[0]
    assert isinstance(found, cvtool.Classification)
    assert found.to_dict() == {**expected, "image": None}
    assert found.label == expected["class"] and found.top[0] == (found.label, found.probability)
    assert sorted(name for name, _ in found.top) == ["hotdog", "not-hotdog"]
    assert found.picture().width >= 256 and found._repr_png_().startswith(b"\x89PNG")


def test_a_segmenter_gives_the_class_mask_and_the_overlay_predict_writes(tmp_path, cli):
    root = voc.synthesize(tmp_path / "VOCdevkit", n_train=4, n_val=2, size=48, classes=3)
    sets = {"data.root": str(root), "data.crop_size": [32, 48], "model.weights": None, "model.width": 8,
            "model.num_classes": 4, "data.batch_size": 2, "data.num_workers": 0}
    run = cvtool.train("train-fcn", overrides=sets, out=tmp_path / "fcn", epochs=1, device="cpu", quiet=True)
    photo = sorted((root / "VOC2012" / "JPEGImages").iterdir())[0]
    code, out, err = cli("predict", "--checkpoint", run.checkpoints["best"], photo, "--out", tmp_path / "cli", "--json")
    assert code == 0, err
    expected = json.loads(out)[0]
    model = cvtool.load(run.checkpoints["best"])
    picture = Image.open(photo).convert("RGB")
    found = model.predict(np.asarray(picture))[0]
    assert isinstance(found, cvtool.Segmentation)
    assert found.to_dict() == {**expected, "image": None, "mask": None, "overlay": None}  # nothing written
    truth = np.array(Image.open(expected["mask"]))
    assert found.mask.shape == (picture.height, picture.width) and np.array_equal(found.mask, truth)
    assert np.array_equal(np.asarray(found.overlay()), np.asarray(Image.open(expected["overlay"]).convert("RGB")))
    assert found.names == model.classes and set(found.pixel_shares) <= set(model.classes)
    written = model.predict(photo, out=tmp_path / "api")[0]
    assert written.to_dict() == {**expected, "mask": str(tmp_path / "api" / Path(expected["mask"]).name),
                                 "overlay": str(tmp_path / "api" / Path(expected["overlay"]).name)}
    with pytest.raises(cvtool.errors.InputError, match="already exists.*; pass --overwrite"):
        model.predict(photo, out=tmp_path / "api")


def test_stylize_returns_the_picture_cvtool_stylize_writes(tmp_path, cli):
    rng = np.random.default_rng(0)
    content = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    style = tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(style)
    content.save(tmp_path / "content.png")
    code, _, err = cli("stylize", tmp_path / "content.png", style, "-o", tmp_path / "cli.png", "--size", "32,48",
                       "--steps", "3", "--device", "cpu", "--seed", "1", "--set", "model.weights=none")
    assert code == 0, err
    picture = cvtool.stylize(content, style, overrides={"model.weights": "none"}, size=(32, 48), steps=3,
                             device="cpu", seed=1, output=tmp_path / "api.png", quiet=True)
    assert picture.size == (48, 32)
    expected = np.asarray(Image.open(tmp_path / "cli.png").convert("RGB"))
    assert np.array_equal(np.asarray(picture), expected)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "api.png").convert("RGB")), expected)
    with pytest.raises(cvtool.errors.InputError, match="--size expects H,W"):
        cvtool.stylize(content, style, size="big")


def test_a_style_network_gives_stylized_pictures(tmp_path, cli):
    from cvtool.data import photos

    root = photos.synthesize(tmp_path / "style", n=12, size=40, seed=1)
    sets = {"data.root": str(root / "content"), "style.image": str(root / "style.png"), "data.image_size": 32,
            "data.batch_size": 4, "data.num_workers": 0, "data.val_count": 4, "model.width": 0.125,
            "model.residual_blocks": 1, "model.vgg_weights": "none", "style.size": 48}
    run = cvtool.train("train-style", overrides=sets, out=tmp_path / "run", epochs=1, device="cpu", quiet=True)
    photo = sorted(p for p in (root / "content").rglob("*") if p.is_file())[0]
    code, out, err = cli("predict", "--checkpoint", run.checkpoints["best"], photo, "--out", tmp_path / "cli", "--json")
    assert code == 0, err
    expected = json.loads(out)[0]
    found = cvtool.load(run.checkpoints["best"]).predict(Image.open(photo))[0]
    assert isinstance(found, cvtool.Stylized)
    assert found.to_dict() == {**expected, "image": None, "styled": None}
    assert np.array_equal(np.asarray(found.image), np.asarray(Image.open(expected["styled"]).convert("RGB")))


def test_gates_raise_gate_failed_with_the_result(hotdog_root, tmp_path, cli):
    run = cvtool.train("finetune-hotdog", overrides={**overrides(TINY_HOTDOG), "data.root": str(hotdog_root)},
                       out=tmp_path / "hotdog", epochs=1, max_steps=1, device="cpu", quiet=True)
    model = cvtool.load(run.checkpoints["best"])
    with pytest.raises(cvtool.errors.GateFailed) as caught:
        model.evaluate(fail_under={"val_acc": 1.01})
    code, _, err = cli("eval", "--checkpoint", run.checkpoints["best"], "--fail-under", "val_acc=1.01")
    assert code == caught.value.exit_code == 4 and err.strip() == f"cvtool: {caught.value}"
    assert caught.value.result["gates"][0]["passed"] is False
    with pytest.raises(cvtool.errors.InputError, match="val_acc"):
        model.evaluate(fail_under={"val_acc_typo": 0.5})
