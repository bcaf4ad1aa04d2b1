"""Milliseconds per style-transfer step: the book's plain loop against cvtool's.

    PYTHONPATH=. python benchmarks/stylize.py [--device auto] [--steps N] [--sizes 300x450,512x512]
    PYTHONPATH=. python benchmarks/stylize.py --quick --allow-busy   # smoke test

``cvtool defaults`` is what `cvtool stylize` picks on this machine with train.amp,
train.channels_last and train.threads at auto (bf16 only where the CPU has it natively,
NHWC from the family table); goal (issue 20): >= 2x the book's loop. Both run in this
process with the same thread count (the defaults' choice) and OpenMP's own wait (torch is
loaded before cvtool could set it), so the ratio is the loop's and the settings', not the
thread policy's (benchmarks/contention.py measures that).

The book's loop: VGG-19 features[:29] whose weights still require gradients (so every
backward also computes 10 M weight gradients nobody uses), fp32, NCHW. cvtool's: the
frozen trunk from cvtool.models.vgg and the step of cvtool.tasks.stylize, in fp32, with
bf16 autocast, and with channels_last. Both use the same random weights: the timing of
a convolution does not depend on what its weights mean. Results are ratios taken in one
run on one device; on a shared CPU, run it twice and trust the ratios more than the ms.
"""

from __future__ import annotations

import argparse
import copy
import sys
import statistics
import time
from collections.abc import Callable

import benchlib  # noqa: I001  (before cvtool: keeps the original environment)
import torch
import torch.nn.functional as F
from torch import nn

from cvtool.engine import placement, runtime, threads
from cvtool.models import vgg
from cvtool.ops import style as style_ops
from cvtool.tasks import stylize as st
from cvtool.tasks import stylize_images, stylize_loop

STYLE, CONTENT = [0, 5, 10, 19, 28], [25]


def book_step(net: nn.Sequential, content: torch.Tensor, style: torch.Tensor,
              image: nn.Parameter) -> Callable[[], None]:
    """The book's structure: a loop over an unfrozen Sequential, targets computed once."""

    def extract(x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        styles, contents = [], []
        for i, layer in enumerate(net):
            x = layer(x)
            if i in STYLE:
                styles.append(x)
            if i in CONTENT:
                contents.append(x)
        return contents, styles

    contents_y, _ = extract(content)
    _, styles_y = extract(style)
    contents_y = [y.detach() for y in contents_y]
    grams_y = [style_ops.gram(y).detach() for y in styles_y]
    optimizer = torch.optim.Adam([image], lr=0.3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 50, 0.8)

    def step() -> None:
        optimizer.zero_grad()
        contents, styles = extract(image)
        c = [F.mse_loss(y, t) * 1.0 for y, t in zip(contents, contents_y)]
        s = [(style_ops.gram(y) - g).square().mean() * 1e4 for y, g in zip(styles, grams_y)]
        loss = sum(s + c + [style_ops.tv_loss(image) * 10])
        loss.backward()
        optimizer.step()
        scheduler.step()

    return step


def cvtool_step(body: nn.Sequential, content: torch.Tensor, style: torch.Tensor, device: torch.device,
                dtype: torch.dtype | None, channels_last: bool) -> Callable[[], None]:
    """cvtool's step as tasks/stylize.py runs it, losses kept on the device until a flush."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = vgg.VGGFeatures(copy.deepcopy(body), STYLE + CONTENT).to(memory_format=fmt)
    cfg = st.Config()
    targets = stylize_loop.compute_targets(net, content.contiguous(memory_format=fmt), style.contiguous(memory_format=fmt),
                                 cfg.model, device, dtype)
    image = content.clone().contiguous(memory_format=fmt).requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=cfg.optim.lr)
    one = stylize_loop.make_step(net, targets, cfg.loss, device, dtype)
    pending: list[torch.Tensor] = []
    done = [0]

    def step() -> None:
        optimizer.param_groups[0]["lr"] = stylize_loop.step_lr(cfg.optim, done[0])
        pending.append(one(image, optimizer))
        done[0] += 1
        if len(pending) == stylize_loop.FLUSH_EVERY:
            stylize_loop.flush(pending, done[0])
            pending.clear()

    return step


def time_rounds(steps: list[Callable[[], None]], device: torch.device, warmup: int, rounds: int) -> list[float]:
    """Median ms per step of each variant, taking turns so that a busy neighbour slows them all alike."""
    for step in steps:
        for _ in range(warmup):
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(rounds):
        for step, spent in zip(steps, times):
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            spent.append(1000 * (time.perf_counter() - start))
    return [statistics.median(t) for t in times]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_ok(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and runtime.cpu_has_native_bf16()  # emulated bf16 only shows the emulation


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.add_common(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per variant, in turns; the median counts (default --rounds on a CPU, 20 on a GPU)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--sizes", default="300x450,512x512")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: cvtool's auto)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 variants")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.steps, args.warmup = "32x32", 1, 1
    return args


def variants_for(body, book_net, content, style, device, use_bf16: bool):
    default_dtype = runtime.amp_dtype(device, "auto")
    default_nhwc = placement.channels_last_for("auto", device, "stylize")
    out: list[tuple[str, Callable[[], Callable[[], None]]]] = [
        ("book (fp32)", lambda: book_step(book_net, content, style, nn.Parameter(content.clone()))),
        ("cvtool defaults", lambda: cvtool_step(body, content, style, device, default_dtype, default_nhwc)),
        ("cvtool fp32", lambda: cvtool_step(body, content, style, device, None, False)),
        ("cvtool fp32 channels_last", lambda: cvtool_step(body, content, style, device, None, True)),
    ]
    if use_bf16:
        out += [
            ("cvtool bf16", lambda: cvtool_step(body, content, style, device, torch.bfloat16, False)),
            ("cvtool bf16 channels_last", lambda: cvtool_step(body, content, style, device, torch.bfloat16, True)),
        ]
    return out


def main() -> None:
    args = parse_args()
    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy or args.quick)
    torch.set_num_threads(args.threads or threads.choose("auto").threads)
    device = runtime.select_device(args.device)
    steps = args.steps or (args.rounds if device.type == "cpu" else 20)
    runtime.configure(device, deterministic=False)
    torch.manual_seed(0)
    body = vgg.build_layers(vgg.tap_index(max(STYLE + CONTENT))).to(device)
    book_net = copy.deepcopy(body[:29])  # the book's net stops at layer 28 and leaves requires_grad on
    use_bf16 = bf16_ok(device) and not args.no_bf16
    print(f"device {runtime.device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"random VGG-19 weights; {args.warmup} warm-up + median of {steps} timed steps per variant, in turns")
    print(f"{'size':>9}  {'variant':<26} {'ms/step':>9} {'vs book':>8}")
    rows = []
    for text in args.sizes.split(","):
        h, w = (int(v) for v in text.lower().split("x"))
        content = stylize_images.normalize(torch.rand(1, 3, h, w, device=device))
        style = stylize_images.normalize(torch.rand(1, 3, h, w, device=device))
        variants = variants_for(body, book_net, content, style, device, use_bf16)
        times = time_rounds([make() for _, make in variants], device, args.warmup, steps)
        for (name, _), ms in zip(variants, times):
            rows.append({"size": [h, w], "variant": name, "ms_per_step": ms, "vs_book": times[0] / ms})
            print(f"{h:>4}x{w:<4}  {name:<26} {ms:>9.1f} {times[0] / ms:>7.2f}x", flush=True)
    record.update(rows=rows, steps=steps, threads=torch.get_num_threads())
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    sys.exit(main())
