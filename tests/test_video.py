"""Video in, video out: `cvtool predict` on a clip made here with PyAV, for every family."""

from __future__ import annotations

import contextlib
import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cvtool.cli import main
from cvtool.data import bananas, hotdog, photos, voc
from cvtool.ops import temporal

pytestmark = pytest.mark.usefixtures("one_thread")
COMMON = ["--set", "data.num_workers=0", "--device", "cpu", "--epochs", "1", "--max-steps", "1"]


def make_clip(path: Path, frames: int = 9, size: tuple[int, int] = (48, 64), rate: Fraction = Fraction(12),
              audio: bool = False, noise: float = 0.0, moving: bool = True, faststart: bool = False) -> Path:
    """A clip of a square crossing a textured background (or standing still, with noise)."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        rng = np.random.default_rng(0)
        base = rng.integers(40, 215, (*size, 3)).astype(np.float32)
        for i in range(frames):
            img = base.copy()
            x = (i * 5) % (size[1] - 12) if moving else 10
            img[10:22, x:x + 12] = (250, 250, 40)
            img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8) if noise else img.astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound is not None:
            n = round(16000 * frames / rate)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)[None]
            for k in range(0, n, 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k:k + 1024]), format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, k
                out.mux(sound.encode(chunk))
            out.mux(sound.encode())
    return path


def describe(path: Path) -> dict:
    with av.open(str(path)) as clip:
        video = clip.streams.video[0]
        count = sum(1 for _ in clip.decode(video=0))
        return {"frames": count, "size": (video.height, video.width), "rate": video.average_rate,
                "audio": len(clip.streams.audio)}


def run(*args: object) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


def sets(**items: object) -> list[str]:
    return [arg for key, value in items.items() for arg in ("--set", f"{key.replace('__', '.')}={value}")]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One detector, one segmenter, one classifier, one style network: one step each, enough to run."""
    base = tmp_path_factory.mktemp("video-runs")
    style = photos.synthesize(base / "style", n=6, size=32, seed=2)
    args = {
        "train-ssd": sets(data__root=bananas.synthesize(base / "bananas", n_train=8, n_val=2, size=64, seed=3),
                          data__image_size=64, data__batch_size=4, model__width=0.25),
        "train-fcn": sets(data__root=voc.synthesize(base / "VOCdevkit", n_train=2, n_val=2, size=48, classes=3),
                          data__crop_size="[32, 48]", model__weights="null", model__width=8,
                          model__num_classes=4, data__batch_size=2),
        "finetune-hotdog": sets(data__root=hotdog.synthesize(base / "hotdog", n=2, size=40, seed=3),
                                data__image_size=32, data__resize=36, data__batch_size=4, model__weights="none"),
        "train-style": sets(data__root=style / "content", style__image=style / "style.png", style__size=32,
                            data__image_size=32, data__val_count=2, data__batch_size=2, model__width=0.125,
                            model__residual_blocks=1, model__vgg_weights="none"),
    }
    paths = {}
    for command, extra in args.items():
        code, _ = run(command, *extra, *COMMON, "--out", base / command)
        assert code == 0, command
        paths[command] = base / command / "checkpoints" / "best.pt"
    return paths


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", audio=True)


@pytest.mark.parametrize("command,what", [("train-ssd", "boxes"), ("train-fcn", "overlay"),
                                          ("finetune-hotdog", "classes"), ("train-style", "styled")])
def test_every_family_gives_a_video_like_its_input_and_a_json_line_per_frame(checkpoints, clip, tmp_path, command, what):
    code, out = run("predict", "--checkpoint", checkpoints[command], clip, "--out", tmp_path, "--json")
    assert code == 0
    result = json.loads(out)[0]
    assert Path(result["output"]) == tmp_path / f"clip_{what}.mp4"
    assert describe(Path(result["output"])) == describe(clip) == {
        "frames": 9, "size": (48, 64), "rate": 12, "audio": 1}
    lines = [json.loads(line) for line in Path(result["jsonl"]).read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(9))
    assert lines[3]["time"] == pytest.approx(3 / 12, abs=1e-3)
    key = {"boxes": "boxes", "overlay": "pixel_shares", "classes": "class", "styled": "frame"}[what]
    assert all(key in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"clip_{what}.jsonl", f"clip_{what}.mp4"]


def test_drawn_frames_differ_from_the_input_where_something_is_drawn(checkpoints, clip, tmp_path):
    code, _ = run("predict", "--checkpoint", checkpoints["finetune-hotdog"], clip, "--out", tmp_path)
    assert code == 0
    with av.open(str(clip)) as a, av.open(str(tmp_path / "clip_classes.mp4")) as b:
        first_in = next(a.decode(video=0)).to_ndarray(format="rgb24").astype(int)
        first_out = next(b.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    band = np.abs(first_in[:8, :30] - first_out[:8, :30]).mean()  # the caption's dark band, top left
    rest = np.abs(first_in[30:, 30:] - first_out[30:, 30:]).mean()  # untouched (but re-encoded) pixels
    assert band > 20 and rest < 6


def test_every_nth_frame_keeps_the_frame_count(checkpoints, clip, tmp_path):
    code, out = run("predict", "--checkpoint", checkpoints["train-ssd"], clip, "--out", tmp_path, "--every", 4,
                    "--json")
    assert code == 0
    result = json.loads(out)[0]
    assert result["frames"] == 9 and result["processed"] == 3
    assert describe(Path(result["output"]))["frames"] == 9
    frames = [json.loads(line)["frame"] for line in Path(result["jsonl"]).read_text().splitlines()]
    assert frames == [0, 4, 8]


def test_smoothing_lowers_flicker_on_a_static_noisy_scene(checkpoints, tmp_path):
    still = make_clip(tmp_path / "still.mp4", frames=8, noise=6.0, moving=False)
    code, out = run("predict", "--checkpoint", checkpoints["train-style"], still, "--out", tmp_path / "o",
                    "--smooth", 0.7, "--json")
    assert code == 0
    flicker = json.loads(out)[0]["flicker"]
    assert flicker["raw"] > 0 and flicker["smoothed"] < 0.7 * flicker["raw"]


def test_blend_follows_motion_and_holds_still_pixels():
    before = torch.zeros(3, 16, 16, dtype=torch.uint8)
    now = before.clone()
    now[:, :, 8:] = 200  # the right half moved
    weight = temporal.blend_weight(before, now, 0.5)
    assert weight[0, :, :4].eq(0.5).all() and weight[0, :, 12:].eq(0).all()
    shown = temporal.blend(torch.full((3, 16, 16), 100, dtype=torch.uint8), torch.zeros(3, 16, 16, dtype=torch.uint8),
                           weight)
    assert shown[0, 0, 0] == 50 and shown[0, 0, 15] == 0


def bad(tmp_path: Path) -> dict[str, Path]:
    good = make_clip(tmp_path / "good.mp4", frames=30, faststart=True)
    data = good.read_bytes()
    (tmp_path / "text.mp4").write_text("not a video at all")
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])
    long = tmp_path / "long.mkv"  # Matroska declares no frame count, only a duration (4 s)
    with av.open(str(long), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.height, stream.width = 32, 32
        stream.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    data = long.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.avi"  # an AVI header with a video stream and no frame in it
    with av.open(str(empty), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.height, stream.width = 32, 32
        stream.pix_fmt = "yuv420p"
        out.start_encoding()
        out.mux(stream.encode())
    return {"text": tmp_path / "text.mp4", "cut": tmp_path / "cut.mp4", "cut-mkv": tmp_path / "cut.mkv", "empty": empty}


@pytest.mark.parametrize("case,message", [("text", "cannot read video"), ("cut", "truncated"),
                                          ("cut-mkv", "truncated"), ("empty", "no frames")])
def test_bad_videos_exit_2_with_one_line_and_leave_nothing(checkpoints, tmp_path, capsys, case, message):
    path = bad(tmp_path)[case]
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoints["train-style"]), str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []


def test_an_unwritable_out_exits_2_before_any_work(checkpoints, clip, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["predict", "--checkpoint", str(checkpoints["train-style"]), str(clip), "--out", str(blocker / "o")]) == 2
    assert "cannot write to --out" in capsys.readouterr().err
    code = main(["predict", "--checkpoint", str(checkpoints["train-ssd"]), str(clip), "--smooth", "0.5"])
    assert code == 2 and "--smooth is for train-style" in capsys.readouterr().err
