"""stylize: the loss terms by hand, sizes, colour, memory refusal and one-line errors.

Random VGG weights (model.weights none) and 32x48 pictures keep every run well under a
second; the maths does not care whether the features mean anything.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtool import config as c
from cvtool.cli import main
from cvtool.engine.progress import Reporter
from cvtool.errors import InputError
from cvtool.models import vgg
from cvtool.ops import style as style_ops
from cvtool.tasks import stylize as st
from cvtool.tasks import stylize_images, stylize_loop, stylize_memory

TINY = ["model.weights=none", "image.size=[32,48]", "run.device=cpu", "optim.steps=6"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pics(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("pics")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:48]
    content = np.stack([xx * 5, yy * 7, 255 - xx * 5], -1) + rng.integers(0, 30, (32, 48, 3))
    style = np.zeros((40, 40, 3), np.uint8)
    style[(np.add.outer(np.arange(40), np.arange(40)) // 5) % 2 == 0] = (250, 220, 20)
    Image.fromarray(np.clip(content, 0, 255).astype(np.uint8)).save(d / "content.png")
    Image.fromarray(style).save(d / "style.jpg")
    return d / "content.png", d / "style.jpg"


def tiny(*sets: str) -> st.Config:
    return c.load(st.Config, None, [*TINY, *sets])


def rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def test_gram_of_a_hand_made_map():
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # c=2, h=1, w=2
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4
    assert torch.allclose(style_ops.gram(x)[0], expected)


def test_total_variation_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    assert style_ops.tv_loss(x).item() == pytest.approx(0.5 * (2.0 + 1.0))


def test_size_parsing_and_scales():
    assert st.parse_size("300,450") == [300, 450]
    assert st.parse_size("300x450") == [300, 450]
    assert st.parse_size("512") == 512
    for bad in ("a", "0", "1,2,3", "300,"):
        with pytest.raises(InputError):
            st.parse_size(bad)
    assert st.output_size(512, (100, 200)) == (256, 512)
    assert st.output_size(60, (300, 200)) == (60, 40)
    assert st.output_size([30, 45], (1, 1)) == (30, 45)
    assert st.scale_sizes((300, 450), 3) == [(75, 112), (150, 225), (300, 450)]
    assert st.style_size((40, 80), (300, 450), 0.5) == (112, 225)


def test_ycbcr_round_trip_and_grey_has_no_chroma():
    rgb = torch.rand(1, 3, 5, 7)
    assert torch.allclose(style_ops.from_ycbcr(style_ops.to_ycbcr(rgb)), rgb, atol=1e-5)
    grey = style_ops.luminance(rgb)
    assert torch.allclose(style_ops.to_ycbcr(grey)[:, 1:], torch.zeros(1, 2, 5, 7), atol=1e-5)


def test_vgg_is_truncated_frozen_and_rectified():
    net = vgg.vgg19_features(None, [5, 0])
    assert len(net.body) == 7  # conv2_1 (index 5) and the ReLU after it, nothing deeper
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    out = net(torch.randn(1, 3, 32, 48))
    assert set(out) == {0, 5}
    assert out[0].shape == (1, 64, 32, 48) and out[5].shape == (1, 128, 16, 24)
    assert out[0].min() >= 0 and out[5].min() >= 0


def test_loss_falls_and_the_output_has_the_asked_size(pics, tmp_path):
    content, style = pics
    cfg = tiny("optim.steps=12", "optim.lr=0.05")
    result = st.stylize(cfg, content, style, tmp_path / "out.png", out_dir=tmp_path / "run")
    log = rows(tmp_path / "run" / "metrics.csv")
    assert [r["step"] for r in log] == list(range(1, 13))
    assert log[-1]["total"] < 0.7 * log[0]["total"]
    assert all(r["total"] == pytest.approx(r["content"] + r["style"] + r["tv"], rel=1e-4) for r in log)
    with Image.open(tmp_path / "out.png") as img:
        img.verify()
    with Image.open(tmp_path / "out.png") as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (48, 32)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["size"] == [32, 48] and summary["steps"] == 12
    assert result["warnings"] and "meaningless" in result["warnings"][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "run"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_line_per_flush_when_plain_and_a_bar_on_a_terminal(pics, tmp_path, monkeypatch):
    content, style = pics
    monkeypatch.setattr(stylize_loop, "FLUSH_EVERY", 2)
    plain = io.StringIO()
    st.stylize(tiny(), content, style, tmp_path / "a.png", reporter=Reporter(plain))
    steps = [line.split()[1] for line in plain.getvalue().splitlines() if line.startswith("step ")]
    assert steps == ["2/6", "4/6", "6/6"] and "\x1b" not in plain.getvalue()
    monkeypatch.delenv("CI")
    terminal = Terminal()
    st.stylize(tiny(), content, style, tmp_path / "b.png", reporter=Reporter(terminal))
    shown = terminal.getvalue()
    assert "stylize 32x48" in shown and "6/6" in shown and "loss " in shown and "step 6/6" not in shown


def test_style_loss_alone_falls_and_runs_repeat_exactly(pics, tmp_path):
    content, style = pics
    cfg = tiny("loss.content_weight=0", "loss.tv_weight=0", "optim.lr=0.05")
    first = st.stylize(cfg, content, style, tmp_path / "a.png", out_dir=tmp_path / "run")
    log = rows(tmp_path / "run" / "metrics.csv")
    assert all(b["style"] < a["style"] for a, b in zip(log, log[1:]))
    assert log[-1]["style"] < 0.9 * log[0]["style"]
    assert st.stylize(cfg, content, style, tmp_path / "b.png")["final"] == first["final"]


def test_preserve_color_keeps_the_content_chroma(pics, tmp_path):
    content, style = pics
    st.stylize(tiny("image.preserve_color=true"), content, style, tmp_path / "out.png")
    out = stylize_images.to_pixels(Image.open(tmp_path / "out.png"))
    src = stylize_images.to_pixels(Image.open(content))
    out_ycc, src_ycc = style_ops.to_ycbcr(out), style_ops.to_ycbcr(src)
    assert (out_ycc[:, 1:] - src_ycc[:, 1:]).abs().mean() < 0.005  # 0.02 without preserve_color
    assert (out_ycc[:, :1] - src_ycc[:, :1]).abs().mean() > 0.01  # the luma did change


def test_memory_refusal_names_the_estimate(pics, tmp_path, monkeypatch, capsys):
    content, style = pics
    monkeypatch.setattr(stylize_memory, "available_memory", lambda device: 1000)
    out = tmp_path / "out.png"
    code = main(["stylize", str(content), str(style), "-o", str(out), "--set", "model.weights=none",
                 "--device", "cpu", "--size", "32,48", "--steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "needs about" in err and "GiB" in err and "--force" in err
    assert not out.exists()
    assert st.stylize(tiny("optim.steps=1"), content, style, out, force=True)["status"] == "completed"


@pytest.mark.parametrize("bad, code", [("missing.png", 2), ("notes.txt", 2), ("empty.png", 2)])
def test_bad_files_fail_with_one_line(pics, tmp_path, capsys, bad, code):
    content, style = pics
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    out = tmp_path / "out.png"
    assert main(["stylize", str(tmp_path / bad), str(style), "-o", str(out), "--set", "model.weights=none"]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("cvtool: error:") and bad in err and "\n" not in err
    assert not out.exists()


def test_unwritable_outputs_are_refused_up_front(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for bad in (tmp_path, tmp_path / "out.foo", tmp_path / "file.txt" / "out.png"):
        with pytest.raises(InputError):
            stylize_images.check_output(bad)
    stylize_images.check_output(tmp_path / "new" / "folder" / "out.webp")


def test_missing_weights_file_exits_3(pics, tmp_path, capsys):
    content, style = pics
    code = main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), "--device", "cpu",
                 "--set", f"model.weights={tmp_path / 'vgg19.pth'}"])
    err = capsys.readouterr().err.strip()
    assert code == 3 and "vgg19.pth" in err and "\n" not in err


def test_a_diverged_run_leaves_no_partial_output(pics, tmp_path, capsys):
    content, style = pics
    out = tmp_path / "out.png"
    code = main(["stylize", str(content), str(style), "-o", str(out), "--device", "cpu", "--size", "32,48",
                 "--steps", "3", "--set", "model.weights=none", "--set", "optim.lr=1e30"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "loss became" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_json_precedence_scales_and_snapshots(pics, tmp_path, capsys):
    content, style = pics
    config = tmp_path / "stylize.yaml"
    config.write_text("optim:\n  steps: 9\nimage:\n  size: 100\n")
    out = tmp_path / "out.jpg"
    code = main(["stylize", str(content), str(style), "-o", str(out), "--config", str(config),
                 "--set", "optim.steps=7", "--set", "model.weights=none", "--steps", "4", "--size", "48",
                 "--device", "cpu", "--scales", "2", "--init", "noise", "--out-dir", str(tmp_path / "run"),
                 "--save-every", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out)
    assert result["steps"] == 4 and result["size"] == [32, 48] and result["scales"] == [[16, 24], [32, 48]]
    assert "stylize:" in captured.err
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == (48, 32)
    assert [Path(p).name for p in result["snapshots"]] == ["step_00002.png", "step_00004.png"]
    assert len(rows(tmp_path / "run" / "metrics.csv")) == 4
    assert (tmp_path / "run" / "config.yaml").exists() and (tmp_path / "run" / "env.json").exists()


def test_sigterm_stops_like_ctrl_c(pics, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    content, style = pics
    out, run = tmp_path / "out.png", tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cvtool", "stylize", str(content), str(style), "-o", str(out),
                             "--set", "model.weights=none", "--size", "48", "--steps", "100000", "--device", "cpu",
                             "--out-dir", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.csv").exists() or len(rows(run / "metrics.csv")) == 0:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "was not written" in err and not out.exists()
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"


def small_net_and_picture() -> tuple[vgg.VGGFeatures, torch.Tensor, st.Config]:
    cfg = tiny()
    torch.manual_seed(0)
    net = vgg.vgg19_features("none", [*cfg.model.style_layers, *cfg.model.content_layers])
    return net, stylize_images.normalize(torch.rand(1, 3, 32, 48)), cfg


def test_target_grams_are_float32_products_under_bf16_autocast():
    """Only VGG runs in bf16: a Gram computed under autocast would be a bf16 matmul (~0.5% off)."""
    net, image, cfg = small_net_and_picture()
    targets = stylize_loop.compute_targets(net, image, image, cfg.model, torch.device("cpu"), torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats = net(image)
    for i, g in targets.grams.items():
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, style_ops.gram(feats[i].float()), rtol=1e-5, atol=1e-8)


def test_a_scaled_step_reports_and_takes_the_unscaled_step():
    """fp16's GradScaler (enabled here on the CPU) scales only the backward: same losses, same update."""
    net, image, cfg = small_net_and_picture()
    cpu = torch.device("cpu")
    targets = stylize_loop.compute_targets(net, image, image, cfg.model, cpu, None)
    results = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=True)):
        pixels = (image + 0.1).requires_grad_(True)
        step = stylize_loop.make_step(net, targets, cfg.loss, cpu, None, scaler)
        results.append((step(pixels, torch.optim.Adam([pixels], lr=0.1)), pixels.detach()))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])


def test_memory_estimate_on_cuda_adds_the_context_and_workspaces(monkeypatch):
    monkeypatch.setattr(stylize_memory, "available_memory", lambda device: None)
    need = {kind: stylize_memory.check_memory(torch.device(kind), (512, 512), (512, 512), 28, torch.bfloat16, False)
            for kind in ("cpu", "cuda")}
    assert need["cuda"] - need["cpu"] == stylize_memory.CUDA_OVERHEAD == 2 ** 30


def test_env_json_and_the_summary_keep_the_thread_changes(pics, tmp_path, monkeypatch):
    from test_threads import neighbour_policy

    from cvtool.engine import threads

    monkeypatch.setattr(threads, "start", lambda setting: neighbour_policy())
    before = torch.get_num_threads()
    try:
        result = st.stylize(tiny("optim.steps=2"), *pics, tmp_path / "out.png", out_dir=tmp_path / "run")
    finally:
        torch.set_num_threads(before)
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert [c[1] for c in env["threads"]["changes"]] == [1] == [c[1] for c in result["threads"]["changes"]]
