"""A trained style network against `cvtool stylize`: one forward pass versus 500 optimisation steps,
and a video through `cvtool predict`'s own pipeline (decode, batches, network, encode).

    PYTHONPATH=. python benchmarks/style_speed.py --json style_speed.json   # the docs table, ~5 min idle
    PYTHONPATH=. python benchmarks/style_speed.py --quick --allow-busy      # smoke test

Goals (issue 32): at 512x512 one forward pass >= 100x faster than `cvtool stylize` with its
default 500 steps; a 10-second 480p clip (854x480, 30 frames/s) at >= 5 frames/s. The
image figures are interleaved medians in one process: the network's forward pass as
`predict` runs it (tasks/style_net.py: the checkpoint's train.amp, by default bf16 on CPUs
with native bf16, channels_last), the same in fp32 (train.amp off), and one `cvtool stylize`
step with its defaults (bf16 autocast where the CPU has it, channels_last, the frozen VGG-19
trunk, an Adam step on the pixels) times the default step count: optimising 500 steps at
512x512 takes too long to repeat on a shared machine, and every step costs the same. The
video figure is one end-to-end run (tasks/video.py) of the shipped default on a clip made
here (a smooth synthetic scene panning, which H.264 encodes like a photo, not like noise),
with the stages timed apart: decoding, the network per frame, encoding. Weights are random:
a convolution's speed does not depend on what its weights mean.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib  # noqa: I001  (before cvtool: keeps the original environment)
import numpy as np
import torch

from cvtool import config as c
from cvtool.data import video as vio
from cvtool.engine import placement, runtime, threads
from cvtool.models import vgg
from cvtool.tasks import style_net, stylize as st, stylize_images, video
from cvtool.tasks.registry import get
from stylize import CONTENT, STYLE, cvtool_step


WIDTHS = (1.0, 0.5, 0.25)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.add_common(parser)
    parser.add_argument("--size", type=int, default=512, help="square image side for the image comparison")
    parser.add_argument("--width", type=float, default=1.0, help="the style network's model.width")
    parser.add_argument("--video-size", default="480x854", help="HxW of the generated clip")
    parser.add_argument("--video-seconds", type=float, default=10.0, help="length of the generated clip at 30 frames/s")
    parser.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"],
                        help="the network's train.amp, as a checkpoint carries it (auto: bf16 on native-bf16 CPUs)")
    args = parser.parse_args()
    if args.quick:
        args.size, args.width, args.video_size, args.video_seconds, args.rounds = 64, 0.25, "48x64", 0.3, 1
    return args


def image_rows(args: argparse.Namespace, net: torch.nn.Module, cfg: style_net.Config) -> dict:
    device = torch.device("cpu")
    size = args.size
    x = torch.rand(1, 3, size, size)
    body = vgg.build_layers(vgg.tap_index(max(STYLE + CONTENT)))
    content = stylize_images.normalize(x)
    step = cvtool_step(body, content, stylize_images.normalize(torch.rand(1, 3, size, size)), device,
                       runtime.amp_dtype(device, "auto"), placement.channels_last_for("auto", device, "stylize"))
    pixels = (x * 255).round().to(torch.uint8)
    fp32 = copy.deepcopy(cfg)
    fp32.train.amp = "off"
    runs = {"forward": style_net.inference_net(net, cfg, device), "forward fp32": style_net.inference_net(net, fp32, device)}

    def timed(call: Callable[[], object]) -> Callable[[], float]:
        def once() -> float:
            start = time.perf_counter()
            call()
            return time.perf_counter() - start
        return once

    variants = {name: timed(lambda run=run: style_net.stylise_pixels(run, pixels, device)) for name, run in runs.items()}
    variants["stylize step"] = timed(step)
    for once in variants.values():
        once()  # warm-up
    times = {k: benchlib.median(v) for k, v in benchlib.interleaved(variants, args.rounds).items()}
    fwd, per_step = times["forward"], times["stylize step"]
    steps = st.Config().optim.steps
    return {"size": [size, size], "dtype": str(runs["forward"].dtype).removeprefix("torch."), "forward_s": fwd,
            "forward_fp32_s": times["forward fp32"], "stylize_step_s": per_step, "stylize_steps": steps,
            "stylize_s": per_step * steps, "speedup": per_step * steps / fwd, "goal": 100,
            "met": per_step * steps / fwd >= 100}


def make_clip(path: Path, hw: tuple[int, int], seconds: float) -> Path:
    """A smooth random scene (blobs a tenth of the frame across, fine grain on top) panning 4 px a frame."""
    import av
    from PIL import Image

    rng = np.random.default_rng(0)
    h, w = hw
    coarse = Image.fromarray(rng.integers(0, 255, (max(2, h // 40), max(2, w // 20), 3), dtype=np.uint8))
    scene = np.asarray(coarse.resize((2 * w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    scene = np.clip(scene + rng.integers(-6, 7, scene.shape), 0, 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.height, stream.width = hw
        stream.pix_fmt = "yuv420p"
        for i in range(max(1, round(30 * seconds))):
            x = (4 * i) % w
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, x:x + w]), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def stages(info: vio.Info, run: style_net.Inference, folder: Path) -> dict:
    """Seconds per frame of each stage alone: decoding (to uint8 tensors), the network, encoding."""
    start = time.perf_counter()
    frames = [f.pixels for f in vio.decode(info)]
    decode = (time.perf_counter() - start) / len(frames)
    sample = torch.stack(frames[:8])
    style_net.stylise_pixels(run, sample[:1], torch.device("cpu"))  # warm-up
    start = time.perf_counter()
    styled = style_net.stylise_pixels(run, sample, torch.device("cpu"))
    network = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    with vio.Writer(folder / "encode.mp4", vio.Info(info.path, info.width, info.height, info.rate, 0, False)) as writer:
        for i in range(len(frames)):
            writer.write(styled[i % len(styled)])
        writer.close()
    encode = (time.perf_counter() - start) / len(frames)
    return {"decode_s": decode, "network_s": network, "encode_s": encode}


def video_row(args: argparse.Namespace, net: torch.nn.Module, cfg: style_net.Config, folder: Path) -> dict:
    hw = tuple(int(v) for v in args.video_size.lower().split("x"))
    clip = make_clip(folder / "clip.mp4", hw, args.video_seconds)  # type: ignore[arg-type]
    spec = get("train-style")
    planned = video.plan(spec, clip, folder / "out", overwrite=False)
    result = video.predict_video(spec, net, cfg, {}, planned, torch.device("cpu"), {})
    parts = stages(planned.info, style_net.inference_net(net, cfg, torch.device("cpu")), folder)
    return {"size": list(hw), "frames": result["frames"], "seconds": result["seconds"],
            "frames_per_second": result["frames_per_second"], "goal": 5, "met": result["frames_per_second"] >= 5,
            "stages": parts}


def width_rows(args: argparse.Namespace, hw: tuple[int, int]) -> list[dict]:
    """The network alone on one video frame, per model.width, in the shipped precision and in fp32: interleaved medians."""
    device = torch.device("cpu")
    pixels = torch.randint(0, 256, (1, 3, *hw), dtype=torch.uint8)
    runs = {}
    for width in WIDTHS:
        for amp in dict.fromkeys([args.amp, "off"]):
            cfg = c.load(style_net.Config, None, [f"model.width={width}", f"train.amp={amp}"])
            runs[(width, amp)] = style_net.inference_net(style_net.build_model(cfg).eval(), cfg, device)

    def once(run: style_net.Inference) -> float:
        start = time.perf_counter()
        style_net.stylise_pixels(run, pixels, device)
        return time.perf_counter() - start

    for run in runs.values():
        once(run)
    times = benchlib.interleaved({f"width {w} {amp}": (lambda r=r: once(r)) for (w, amp), r in runs.items()}, args.rounds)
    return [{"width": w, "amp": amp, "dtype": str(r.dtype).removeprefix("torch."),
             "network_s": benchlib.median(times[f"width {w} {amp}"])} for (w, amp), r in runs.items()]


def main() -> None:
    args = parse_args()
    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy or args.quick)
    runtime.select_device("cpu")  # as every command does: engine/memory.py's malloc settings with it
    torch.set_num_threads(threads.choose("auto").threads)
    torch.manual_seed(0)
    cfg = c.load(style_net.Config, None, [f"model.width={args.width}", f"train.amp={args.amp}"])
    net = style_net.build_model(cfg).eval()
    print(f"TransformerNet width {args.width} ({sum(p.numel() for p in net.parameters()):,} parameters), "
          f"{torch.get_num_threads()} threads, random weights")
    image = image_rows(args, net, cfg)
    print(f"{image['size'][0]}x{image['size'][1]}: forward {image['forward_s'] * 1000:.0f} ms ({image['dtype']}; fp32 "
          f"{image['forward_fp32_s'] * 1000:.0f} ms); stylize "
          f"{image['stylize_step_s'] * 1000:.0f} ms/step x {image['stylize_steps']} = {image['stylize_s']:.0f} s; "
          f"{image['speedup']:.0f}x (goal >= 100x: {'met' if image['met'] else 'NOT met'})", flush=True)
    hw = tuple(int(v) for v in args.video_size.lower().split("x"))
    widths = width_rows(args, hw)  # type: ignore[arg-type]
    for row in widths:
        print(f"{hw[0]}x{hw[1]} frame, network alone, width {row['width']} {row['dtype']}: "
              f"{row['network_s'] * 1000:.0f} ms ({1 / row['network_s']:.1f} frames/s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip = video_row(args, net, cfg, Path(tmp))
    print(f"video {clip['size'][0]}x{clip['size'][1]}, {clip['frames']} frames: {clip['seconds']:.1f} s, "
          f"{clip['frames_per_second']:.2f} frames/s (goal >= 5: {'met' if clip['met'] else 'NOT met'}); alone, per "
          f"frame: decode {clip['stages']['decode_s'] * 1000:.0f} ms, network {clip['stages']['network_s'] * 1000:.0f} ms, "
          f"encode {clip['stages']['encode_s'] * 1000:.0f} ms")
    record.update(width=args.width, amp=args.amp, threads=torch.get_num_threads(), image=image, video=clip,
                  widths=widths)
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    sys.exit(main())
