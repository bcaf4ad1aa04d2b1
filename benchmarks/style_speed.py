"""A trained style network against `cvtool stylize`: one forward pass versus 500 optimisation steps,
and a video through `cvtool predict`'s own pipeline (decode, batches, network, encode).

    PYTHONPATH=. python benchmarks/style_speed.py [--size 512] [--width 1.0] [--video-seconds 10]
    PYTHONPATH=. python benchmarks/style_speed.py --quick --allow-busy --json r.json   # smoke test

Goals (issue 32): at 512x512 one forward pass >= 100x faster than `cvtool stylize` with its
default 500 steps; a 10-second 480p clip (854x480, 30 frames/s) at >= 5 frames/s. The
image figures are interleaved medians in one process: the network's forward pass as
`predict` runs it (fp32, no gradients) and one `cvtool stylize` step with its defaults
(bf16 autocast where the CPU has it, the frozen VGG-19 trunk, an Adam step on the pixels),
times the default step count: optimising 500 steps at 512x512 takes too long to repeat on
a shared machine, and every step costs the same. The video figure is one end-to-end run
(tasks/video.py) on a clip made here. Weights are random: a convolution's speed does not
depend on what its weights mean.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import benchlib  # noqa: I001  (before cvtool: keeps the original environment)
import numpy as np
import torch

from cvtool import config as c
from cvtool.engine import checkpoint, runtime, threads
from cvtool.models import vgg
from cvtool.tasks import style_net, stylize as st, stylize_images, video
from cvtool.tasks.registry import get
from stylize import CONTENT, STYLE, cvtool_step


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.add_common(parser)
    parser.add_argument("--size", type=int, default=512, help="square image side for the image comparison")
    parser.add_argument("--width", type=float, default=1.0, help="the style network's model.width")
    parser.add_argument("--video-size", default="480x854", help="HxW of the generated clip")
    parser.add_argument("--video-seconds", type=float, default=10.0, help="length of the generated clip at 30 frames/s")
    args = parser.parse_args()
    if args.quick:
        args.size, args.width, args.video_size, args.video_seconds, args.rounds = 64, 0.25, "48x64", 0.3, 1
    return args


def image_rows(args: argparse.Namespace, net: torch.nn.Module) -> dict:
    device = torch.device("cpu")
    size = args.size
    x = torch.rand(1, 3, size, size)
    body = vgg.build_layers(vgg.tap_index(max(STYLE + CONTENT)))
    content = stylize_images.normalize(x)
    step = cvtool_step(body, content, stylize_images.normalize(torch.rand(1, 3, size, size)), device,
                       runtime.amp_dtype(device, "auto"), False)

    def forward() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            style_net.stylise(net, x)
        return time.perf_counter() - start

    def one_step() -> float:
        start = time.perf_counter()
        step()
        return time.perf_counter() - start

    forward(), one_step()  # warm-up
    times = benchlib.interleaved({"forward": forward, "stylize step": one_step}, args.rounds)
    fwd, per_step = benchlib.median(times["forward"]), benchlib.median(times["stylize step"])
    steps = st.Config().optim.steps
    return {"size": [size, size], "forward_s": fwd, "stylize_step_s": per_step, "stylize_steps": steps,
            "stylize_s": per_step * steps, "speedup": per_step * steps / fwd, "goal": 100,
            "met": per_step * steps / fwd >= 100}


def make_clip(path: Path, hw: tuple[int, int], seconds: float) -> Path:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.height, stream.width = hw
        stream.pix_fmt = "yuv420p"
        for i in range(max(1, round(30 * seconds))):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def video_row(args: argparse.Namespace, net: torch.nn.Module, cfg: style_net.Config, folder: Path) -> dict:
    hw = tuple(int(v) for v in args.video_size.lower().split("x"))
    clip = make_clip(folder / "clip.mp4", hw, args.video_seconds)  # type: ignore[arg-type]
    spec = get("train-style")
    planned = video.plan(spec, clip, folder / "out", overwrite=False)
    result = video.predict_video(spec, net, cfg, {}, planned, torch.device("cpu"), {})
    return {"size": list(hw), "frames": result["frames"], "seconds": result["seconds"],
            "frames_per_second": result["frames_per_second"], "goal": 5, "met": result["frames_per_second"] >= 5}


def main() -> None:
    args = parse_args()
    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy or args.quick)
    torch.set_num_threads(threads.choose("auto").threads)
    torch.manual_seed(0)
    cfg = c.load(style_net.Config, None, [f"model.width={args.width}"])
    net = style_net.build_model(cfg).eval()
    print(f"TransformerNet width {args.width} ({sum(p.numel() for p in net.parameters()):,} parameters), "
          f"{torch.get_num_threads()} threads, random weights")
    image = image_rows(args, net)
    print(f"{image['size'][0]}x{image['size'][1]}: forward {image['forward_s'] * 1000:.0f} ms; stylize "
          f"{image['stylize_step_s'] * 1000:.0f} ms/step x {image['stylize_steps']} = {image['stylize_s']:.0f} s; "
          f"{image['speedup']:.0f}x (goal >= 100x: {'met' if image['met'] else 'NOT met'})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip = video_row(args, net, cfg, Path(tmp))
    print(f"video {clip['size'][0]}x{clip['size'][1]}, {clip['frames']} frames: {clip['seconds']:.1f} s, "
          f"{clip['frames_per_second']:.2f} frames/s (goal >= 5: {'met' if clip['met'] else 'NOT met'})")
    record.update(width=args.width, threads=torch.get_num_threads(), image=image, video=clip)
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    sys.exit(main())
