"""Does channels_last (NHWC) speed up each model family on this CPU? fp32 training steps, NCHW vs NHWC.

    PYTHONPATH=. python benchmarks/layout.py                 # every family, the default sizes
    PYTHONPATH=. python benchmarks/layout.py --quick --allow-busy   # smoke test

One model per family at the size its commands train at, random weights, forward +
backward + SGD step (stylize: the image's gradient only, the VGG frozen), the two layouts
taking turns per round, the median ms per step reported with the NHWC/NCHW speed-up.
The table `CPU_CHANNELS_LAST` in cvtool/engine/placement.py (train.channels_last: auto)
comes from this script's figures on an idle machine.
"""

from __future__ import annotations

import argparse
import time

import benchlib  # noqa: F401  (before cvtool: keeps the original environment)
import torch
import torchvision

from cvtool.engine import threads
from cvtool.models import vgg
from cvtool.models.cifar import cifar_resnet18
from cvtool.models.fcn import FCN
from cvtool.models.tinyssd import TinySSD

# family -> (model maker, batch, height, width) at the default and at the --quick size
CASES = {
    "classify (CIFAR ResNet-18, 32 px)": ("classify", lambda q: cifar_resnet18(10, 8 if q else 64), (32, 32, 32), (4, 32, 32)),
    "classify (ResNet-18, 224 px)": ("classify", lambda q: torchvision.models.resnet18(num_classes=2), (8, 224, 224), (1, 32, 32)),
    "detect (TinySSD, 256 px)": ("detect", lambda q: TinySSD(1, 0.25 if q else 1.0), (32, 256, 256), (1, 64, 64)),
    "segment (FCN ResNet-18, 320x480)": ("segment", lambda q: FCN(21, 4 if q else 64), (4, 320, 480), (1, 32, 32)),
    "stylize (VGG-19 to conv5_1, 300x450)": ("stylize", lambda q: vgg.build_layers(5 if q else 28), (1, 300, 450), (1, 32, 32)),
}


def loss_of(out) -> torch.Tensor:
    if isinstance(out, tuple):
        return sum(o.float().mean() for o in out[1:])
    return out.float().mean()


def make_step(family: str, model: torch.nn.Module, shape: tuple[int, int, int], nhwc: bool):
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    batch, h, w = shape
    x = torch.randn(batch, 3, h, w).contiguous(memory_format=fmt)
    if family == "stylize":
        model.requires_grad_(False)
        x.requires_grad_(True)

        def step() -> None:
            x.grad = None
            model(x).square().mean().backward()

        return step
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_of(model(x)).backward()
        opt.step()

    return step


def ms_per_step(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchlib.add_common(parser)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--only", default="", help="comma-separated family names (classify,detect,...)")
    args = parser.parse_args()
    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy or args.quick)
    choice = threads.choose("auto")
    torch.set_num_threads(choice.threads)
    rounds, steps = (1, 1) if args.quick else (args.rounds, args.steps)
    wanted = set(filter(None, args.only.split(",")))
    rows = []
    for name, (family, make, size, quick_size) in CASES.items():
        if wanted and family not in wanted:
            continue
        torch.manual_seed(0)
        model = make(args.quick)
        shape = quick_size if args.quick else size
        variants = {layout: make_step(family, model if layout == "NCHW" else _copy(model), shape, layout == "NHWC")
                    for layout in ("NCHW", "NHWC")}
        for step in variants.values():
            step()  # warm-up: oneDNN primitive creation
        times = benchlib.interleaved({k: (lambda s=s: ms_per_step(s, steps)) for k, s in variants.items()}, rounds)
        nchw, nhwc = benchlib.median(times["NCHW"]), benchlib.median(times["NHWC"])
        rows.append({"case": name, "family": family, "shape": list(shape), "nchw_ms": nchw, "nhwc_ms": nhwc,
                     "speedup": nchw / nhwc})
        print(f"{name:<38} NCHW {nchw:9.1f} ms  NHWC {nhwc:9.1f} ms  NHWC speed-up {nchw / nhwc:5.2f}x", flush=True)
    record.update(rows=rows, threads=choice.threads, rounds=rounds, steps=steps, quick=args.quick)
    benchlib.finish(record, args.json)


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


if __name__ == "__main__":
    main()
