"""train-style: the feed-forward style network, its loss, its run, predict, stylize --model and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import overfit

from cvtool import config as c
from cvtool.data import photos
from cvtool.models.transformer_net import TransformerNet
from cvtool.tasks import style_net

TINY = ["--set", "data.image_size=32", "--set", "data.batch_size=4", "--set", "data.num_workers=0",
        "--set", "data.val_count=4", "--set", "model.width=0.125", "--set", "model.residual_blocks=1",
        "--set", "model.vgg_weights=none", "--set", "style.size=48", "--set", "optim.lr=0.01",
        "--device", "cpu", "--seed", "0"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return photos.synthesize(tmp_path_factory.mktemp("data") / "style", n=12, size=40, seed=1)


def tiny_args(root: Path) -> list[str]:
    return ["--set", f"data.root={root / 'content'}", "--set", f"style.image={root / 'style.png'}", *TINY]


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory) -> Path:
    """One seconds-long CLI run; its best checkpoint."""
    from cvtool.cli import main

    out = tmp_path_factory.mktemp("runs") / "style"
    assert main(["train-style", *tiny_args(synth), "--epochs", "2", "--out", str(out)]) == 0
    return out / "checkpoints" / "best.pt"


def test_network_keeps_any_size_and_has_the_papers_parameter_count():
    net = TransformerNet(1.0)
    assert sum(p.numel() for p in net.parameters()) == 1_679_235  # pytorch/examples' TransformerNet
    small = TransformerNet(0.125, 1).eval()
    for hw in [(33, 47), (17, 9), (64, 64)]:
        assert small(torch.rand(2, 3, *hw)).shape == (2, 3, *hw)


def test_synthetic_photos_are_found_recursively_and_split_evenly(synth):
    files = photos.find(synth / "content")
    assert len(files) == 12 and {f.parent.name for f in files} == {"a", "b"}
    train, val = photos.split(files, 4)
    assert len(val) == 4 and len(train) == 8 and not set(train) & set(val)
    assert photos.split(files, 4) == (train, val)


def test_a_few_steps_lower_the_perceptual_loss(synth, one_thread):
    torch.manual_seed(0)
    cfg = c.load(style_net.Config, None, [
        f"data.root={synth / 'content'}", f"style.image={synth / 'style.png'}", "data.image_size=32",
        "data.val_count=4", "model.width=0.125", "model.residual_blocks=1", "model.vgg_weights=none",
        "style.size=48"])
    task = style_net.build(cfg)
    batch = torch.stack([task.train_data[i] for i in range(4)])
    losses, out = overfit(task, batch, steps=25, lr=0.01)
    assert losses[-1] < 0.5 * losses[0], losses
    assert set(out.stats) == {"content_loss", "style_loss", "tv_loss"}


def test_a_run_writes_its_files_and_scores_the_held_out_photos(trained):
    run = trained.parents[1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["best"]["metric"] == "val_loss"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val_loss", "val_content_loss", "val_style_loss", "train_style_loss"} <= set(header)
    grid = Image.open(run / "predictions.png")
    assert grid.width > 4 * 32 and grid.height > 2 * 32
    ckpt = torch.load(trained, weights_only=True)
    assert ckpt["task"] == "train-style" and not any(k.startswith("body.") for k in ckpt["model"])


def test_predict_writes_pictures_the_inputs_size(trained, synth, cli, tmp_path):
    odd = tmp_path / "odd.png"
    Image.new("RGB", (37, 23), (200, 30, 40)).save(odd)
    code, out, err = cli("predict", "--checkpoint", trained, odd, synth / "content" / "a", "--out", tmp_path / "o",
                         "--json")
    assert code == 0, err
    results = json.loads(out)
    assert len(results) == 1 + 6
    first = Image.open(results[0]["styled"])
    assert first.size == (37, 23) and results[0]["size"] == [23, 37]
    for r in results[1:]:
        assert Image.open(r["styled"]).size == Image.open(r["image"]).size


def test_missing_style_or_photos_are_one_line_errors(synth, cli, tmp_path):
    code, _, err = cli("train-style", *TINY, "--set", f"data.root={synth / 'content'}", "--out", tmp_path / "a")
    assert code == 2 and "style.image is not set" in err
    code, _, err = cli("train-style", *tiny_args(synth), "--set", f"data.root={tmp_path / 'none'}",
                       "--out", tmp_path / "b")
    assert code == 3 and "does not exist" in err and "cvtool data synth photos" in err
    assert "Traceback" not in err


def test_stylize_with_a_model_writes_each_content_at_its_size(trained, synth, cli, tmp_path):
    content = sorted((synth / "content" / "b").iterdir())[:2]
    code, out, err = cli("stylize", "--model", trained, *content, "--out", tmp_path / "s", "--preserve-color", "--json")
    assert code == 0, err
    for result, path in zip(json.loads(out), content):
        assert Image.open(result["styled"]).size == Image.open(path).size
    code, _, err = cli("stylize", content[0])
    assert code == 2 and "stylize --model" in err
    code, _, err = cli("stylize", "--model", trained, content[0], "--steps", "5")
    assert code == 2 and "--steps is for the optimising stylize" in err


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_gives_the_networks_pictures(trained, synth, cli, tmp_path, fmt):
    code, out, err = cli("export", "--checkpoint", trained, "--format", fmt, "--out", tmp_path / "e", "--json")
    assert code == 0, err
    result = json.loads(out)
    check = result["check"]
    assert check["ok"] and check["max_abs_diff"] <= 1e-4 and len(check["sizes"]) == 2  # a second, odd size too
    photo = sorted((synth / "content" / "a").iterdir())[0]
    code, out, err = cli("predict", "--checkpoint", result["model"], photo, "--out", tmp_path / "p", "--json")
    assert code == 0, err
    exported = torch.from_numpy(np.array(Image.open(json.loads(out)[0]["styled"]))).permute(2, 0, 1).float()
    net, cfg = fp32_network(trained)  # the export is fp32; predict may run the checkpoint in bf16
    pixels = torch.from_numpy(np.array(Image.open(photo).convert("RGB"))).permute(2, 0, 1)[None]
    direct = style_net.stylise_pixels(style_net.inference_net(net, cfg, torch.device("cpu")), pixels,
                                      torch.device("cpu"))[0].float()
    assert (exported - direct).abs().max() <= 1  # a rounding step at most


def fp32_network(path: Path) -> tuple[TransformerNet, style_net.Config]:
    """The checkpoint's network and its config with train.amp off."""
    ckpt = torch.load(path, weights_only=True)
    cfg = c.from_dict(style_net.Config, ckpt["config"])
    cfg.train.amp = "off"
    net = style_net.build_model(cfg)
    net.load_state_dict(ckpt["model"])
    return net.eval(), cfg


def test_inference_takes_the_channels_last_norm_with_the_same_numbers():
    torch.manual_seed(0)
    net = TransformerNet(0.125, 1).eval()
    x = torch.rand(1, 3, 33, 47)
    with torch.no_grad():
        plain = net(x)
    fast = net.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = fast(x.contiguous(memory_format=torch.channels_last))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got - plain).abs().max() < 1e-5


@pytest.mark.parametrize("amp,native,dtype", [("auto", True, torch.bfloat16), ("auto", False, torch.float32),
                                              ("off", True, torch.float32), ("bf16", False, torch.bfloat16),
                                              ("fp16", True, torch.bfloat16), ("fp16", False, torch.float32)])
def test_predict_runs_the_network_in_the_checkpoints_train_amp(monkeypatch, amp, native, dtype):
    from cvtool.engine import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    cfg = c.load(style_net.Config, None, ["model.width=0.125", "model.residual_blocks=1", f"train.amp={amp}"])
    model = style_net.build_model(cfg)
    run = style_net.inference_net(model, cfg, torch.device("cpu"))
    assert run.dtype == dtype and next(run.net.parameters()).dtype == dtype
    assert next(model.parameters()).dtype == torch.float32  # the caller's network is untouched


def test_bf16_pictures_stay_within_a_few_levels_of_fp32(trained, synth):
    net, cfg = fp32_network(trained)
    cpu = torch.device("cpu")
    photo = sorted((synth / "content" / "a").iterdir())[0]
    pixels = torch.from_numpy(np.array(Image.open(photo).convert("RGB"))).permute(2, 0, 1)[None]
    fp32 = style_net.stylise_pixels(style_net.inference_net(net, cfg, cpu), pixels, cpu).float()
    cfg.train.amp = "bf16"
    bf16 = style_net.stylise_pixels(style_net.inference_net(net, cfg, cpu), pixels, cpu).float()
    assert bf16.shape == fp32.shape == pixels.shape
    diff = (bf16 - fp32).abs()
    assert diff.mean() < 1.5 and diff.max() <= 16, (diff.mean(), diff.max())
