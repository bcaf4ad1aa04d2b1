"""Training throughput of every command on one GPU: cvtool's pipeline against a plain loop.

    PYTHONPATH=. python benchmarks/gpu.py                        # everything, on the GPU `auto` finds
    PYTHONPATH=. python benchmarks/gpu.py --compile --json gpu.json
    PYTHONPATH=. python benchmarks/gpu.py --only train-cifar,resnet18-224 --steps 200
    PYTHONPATH=. python benchmarks/gpu.py --device cpu --quick   # smoke test: tiny sizes, 2 steps each

Nothing is downloaded: each command's data is written first by its own ``synthesize``
function (in the real on-disk layout, in a temporary folder, several processes at once),
and every model starts from random weights (``model.weights: none``).

Rows, per train command:

- ``cvtool``: the task as ``registry.get(cmd).build(cfg)`` makes it, trained by
  ``cvtool.engine.trainer.Trainer``'s own loader and step (device copies, bf16 autocast,
  channels_last, the data on the GPU where the task can keep it there, optionally
  ``torch.compile``), with PyTorch's backend flags as the trainer sets them.
- ``plain``: the same task's data and model in the loop a tutorial would write: a
  DataLoader with the same workers, forward, backward, SGD; fp32, NCHW, eager, with
  PyTorch's default backend flags (no cuDNN autotuning, no TF32 matmuls).

Both run ``warmup`` untimed steps, then ``steps`` timed ones; the timer covers fetching
each batch, so data loading counts. ``vs plain`` is the images/s ratio to the plain row
(for stylize: the book loop's ms/step over the row's).

``resnet18-224``: torchvision's ResNet-18 at 224 px with the data resident on the GPU (a
uint8 set that never leaves the device, each batch one gather with per-image random
crop and flip), bf16 + channels_last (+ compile), against the same in fp32. Goal on one
H100: >= 25,000 training images/s.

``stylize``: ``cvtool stylize`` at 512x512 for 500 steps through ``tasks.stylize.stylize``
(its defaults; first call in the process, then warm, then with channels_last), against
the book's loop from benchmarks/stylize.py (fp32, VGG weights that still require
gradients). Goal on one H100: 500 steps in <= 3 s (the warm run at the command's defaults).

Peak memory is ``torch.cuda.max_memory_allocated`` of each run alone (reset in between;
"-" off CUDA). The default sizes (the book's batch for each command; file-based loaders
with min(8, CPUs) workers) are meant to finish in under 8 minutes on one H100 without
``--compile``, which adds one compilation per model; the total is printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import itertools
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from cvtool import config as cfglib
from cvtool.files import json_text
from cvtool.tasks import registry
from cvtool.data import bananas, hotdog, kaggle_synth, voc
from cvtool.data.batch_augment import hflip
from cvtool.data.textures import background
from cvtool.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from cvtool.engine import runtime, trainer
from cvtool.engine.progress import Reporter
from cvtool.errors import CvtoolError
from cvtool.models import vgg
from cvtool.models.weights import pretrained
from cvtool.tasks import stylize as st
from cvtool.tasks import stylize_images

RESNET = "resnet18-224"
STYLIZE = "stylize"
TRAIN = ("finetune-hotdog", "train-ssd", "train-fcn", "train-cifar", "train-dog")
NAMES = (*TRAIN, RESNET, STYLIZE)
GOAL_IMAGES_PER_S = 25_000
GOAL_STYLIZE_SECONDS = 3.0
GOAL_STYLIZE_STEPS = 500
PRECISION = {"off": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # stylize's "amp" -> a short label


@dataclass(frozen=True)
class Spec:
    """One train command's run: data kind, sizes and the config keys it sets."""

    command: str
    data: str
    batch: int
    shape: str
    warmup: int
    steps: int
    overrides: tuple[str, ...] = ()
    fast: tuple[str, ...] = ()  # cvtool variant only
    streamed: bool = True  # decoded from files every epoch by workers; False: held in memory
    pool: int = 0  # in-memory sets: this many synthetic training images, reused epoch after epoch

    def batches(self) -> int:
        return self.warmup + self.steps


# The book's model and batch for each command; only the data sizes differ in --quick.
GPU_SPECS = {
    "finetune-hotdog": Spec("finetune-hotdog", "hotdog", 128, "224", 5, 25, ("model.weights=none",)),
    "train-ssd": Spec("train-ssd", "bananas", 32, "256", 10, 100, (), streamed=False, pool=256),
    "train-fcn": Spec("train-fcn", "voc", 32, "320x480", 3, 20, ("model.weights=none",)),
    "train-cifar": Spec("train-cifar", "cifar", 128, "32", 10, 100,
                        ("data.tiny=false", "data.split=train_valid", "model.arch=resnet18", "model.width=64"),
                        ("data.on_device=true",), streamed=False, pool=2048),
    "train-dog": Spec("train-dog", "dogs", 128, "224", 5, 25,
                      ("data.tiny=false", "data.split=train_valid", "model.weights=none")),
}
QUICK_SPECS = {
    "finetune-hotdog": Spec("finetune-hotdog", "hotdog", 4, "32", 1, 2,
                            ("model.weights=none", "data.image_size=32", "data.resize=36")),
    "train-ssd": Spec("train-ssd", "bananas", 4, "64", 1, 2,
                      ("data.image_size=64", "model.width=0.25"), streamed=False, pool=12),
    "train-fcn": Spec("train-fcn", "voc", 2, "48x64", 1, 2,
                      ("model.weights=none", "data.crop_size=[48, 64]", "model.width=8", "model.num_classes=6")),
    "train-cifar": Spec("train-cifar", "cifar", 8, "32", 1, 2,
                        ("data.tiny=false", "data.split=train_valid", "model.arch=resnet18", "model.width=8"),
                        ("data.on_device=true",), streamed=False, pool=24),
    "train-dog": Spec("train-dog", "dogs", 4, "32", 1, 2,
                      ("data.tiny=false", "data.split=train_valid", "model.weights=none", "model.num_classes=5",
                       "data.image_size=32", "data.resize=36")),
}


@dataclass(frozen=True)
class Sizes:
    """Everything but the train commands' specs that --quick shrinks."""

    image: int  # synthetic picture size (hotdog, bananas, voc)
    dog_classes: int
    resnet_batch: int
    resnet_store: int  # side of the resident uint8 images; crops are resnet_crop
    resnet_crop: int
    resnet_count: int
    resnet_warmup: int
    resnet_steps: int
    stylize_hw: tuple[int, int]
    stylize_steps: int
    stylize_warmup: int


GPU_SIZES = Sizes(256, 120, 256, 256, 224, 4096, 10, 100, (512, 512), GOAL_STYLIZE_STEPS, 5)
QUICK_SIZES = Sizes(64, 5, 4, 72, 64, 16, 1, 2, (32, 32), 3, 1)


@dataclass
class Row:
    command: str
    variant: str
    batch: int | None
    shape: str
    steps: int
    images_per_second: float | None
    ms_per_step: float | None
    peak_memory_bytes: int | None
    ratio: float | None = None
    note: str = ""


# --------------------------------------------------------------------------- synthetic data


def synth_jobs(specs: list[Spec], sizes: Sizes, root: Path, parts: int) -> tuple[list[tuple], list[Path]]:
    """(function, folder, kwargs) per synthesize call, and the hotdog part folders to merge.

    Sets decoded from files each epoch get one image per timed or warm-up slot, so no
    step waits on an epoch boundary (worker restarts); in-memory sets are reused.
    """
    jobs: list[tuple] = []
    hotdog_parts: list[Path] = []
    for spec in specs:
        need = spec.batches() * spec.batch
        out = root / spec.data
        if spec.data == "hotdog":
            per_class = math.ceil(need / 2)
            count = min(parts, per_class)
            for k in range(count):
                part = root / "hotdog-parts" / str(k)
                share = per_class // count + (k < per_class % count)
                jobs.append((hotdog.synthesize, part, {"n": share, "size": sizes.image, "seed": k}))
                hotdog_parts.append(part)
        elif spec.data == "bananas":
            jobs.append((bananas.synthesize, out, {"n_train": spec.pool, "n_val": 4, "size": sizes.image}))
        elif spec.data == "voc":
            jobs.append((voc.synthesize, out, {"n_train": need, "n_val": 2, "size": round(sizes.image * 375 / 256)}))
        elif spec.data == "cifar":
            jobs.append((kaggle_synth.synthesize_cifar, out, {"n_train": spec.pool, "n_test": 1}))
        elif spec.data == "dogs":
            jobs.append((kaggle_synth.synthesize_dogs, out, {"n_train": max(need, sizes.dog_classes), "n_test": 1,
                                                       "classes": sizes.dog_classes}))
    return jobs, hotdog_parts


def call(job: tuple) -> Path:
    fn, out, kwargs = job
    return fn(out, **kwargs)


def synthesize(specs: list[Spec], sizes: Sizes, root: Path, processes: int) -> None:
    jobs, parts = synth_jobs(specs, sizes, root, processes)
    if processes > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(call, jobs))
    else:
        for job in jobs:
            call(job)
    if parts:
        merge_class_folders(parts, root / "hotdog")


def merge_class_folders(parts: list[Path], out: Path) -> None:
    """Hotdog sets written in parallel, moved into one set of {split}/{class}/ folders."""
    for k, part in enumerate(parts):
        for path in sorted(part.glob("*/*/*.png")):
            dest = out / path.parent.parent.name / path.parent.name
            dest.mkdir(parents=True, exist_ok=True)
            path.rename(dest / f"{k}_{path.name}")
        shutil.rmtree(part)
    parts[0].parent.rmdir()


def write_pictures(folder: Path, hw: tuple[int, int]) -> tuple[Path, Path]:
    """A content and a style picture (random textures) for the stylize runs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "content.png", folder / "style.png"
    for seed, path in enumerate(paths):
        background(np.random.default_rng(seed), *hw).save(path)
    return paths


# --------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[Any], int], stream: Iterator[Any], warmup: int, steps: int,
          device: torch.device) -> tuple[float, float]:
    """(images/s, ms/step) of ``steps`` steps after ``warmup`` untimed ones; fetching batches counts."""
    for _ in range(warmup):
        step(next(stream))
    sync(device)
    images = 0
    start = time.perf_counter()
    for _ in range(steps):
        images += step(next(stream))
    sync(device)
    seconds = time.perf_counter() - start
    return images / seconds, 1000 * seconds / steps


def measured(device: torch.device, run: Callable[[], Any]) -> tuple[Any, int | None]:
    """``run()`` and the peak device memory it allocated, counted from a clean slate."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    result = run()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    gc.collect()
    return result, peak


def backend_flags() -> tuple[bool, bool, bool]:
    return (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


def set_backend_flags(flags: tuple[bool, bool, bool]) -> None:
    torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@contextlib.contextmanager
def plain_flags(defaults: tuple[bool, bool, bool]):
    """PyTorch's flags as a script that sets none has them (cvtool turns on autotuning and TF32)."""
    saved = backend_flags()
    set_backend_flags(defaults)
    try:
        yield
    finally:
        set_backend_flags(saved)


def leading(batch: Any) -> int:
    """The batch size of a batch of any nesting (tensor, tuple, list, dict)."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        return leading(next(iter(batch.values())))
    return leading(batch[0])


def endless(loader: DataLoader, batch: int, start_epoch: Callable[[int], None]) -> Iterator[Any]:
    """Full batches epoch after epoch; a short last batch is skipped (it would recompile a compiled model)."""
    if len(loader.dataset) < batch:
        raise ValueError(f"{len(loader.dataset)} training items cannot fill a batch of {batch}")
    for epoch in itertools.count(1):
        start_epoch(epoch)
        for b in loader:
            if leading(b) == batch:
                yield b


# --------------------------------------------------------------------------- train commands


def load_config(spec: Spec, root: Path, device: torch.device, workers: int, fast: bool, dtype: torch.dtype | None,
                compile_model: bool) -> Any:
    sets = [f"data.root={root / spec.data}", "data.download=false", f"data.batch_size={spec.batch}",
            f"train.device={device}", "train.seed=0", *spec.overrides]
    sets.append(f"data.num_workers={workers if spec.streamed else 0}")
    if spec.data == "cifar":
        sets.append(f"data.cache_dir={root / 'cifar-cache'}")
    if fast:
        amp = "bf16" if dtype is not None else "off"
        sets += [f'train.amp="{amp}"', "train.channels_last=true", f"train.compile={str(compile_model).lower()}",
                 "train.on_nan=stop", *spec.fast]
    else:
        sets += ['train.amp="off"', "train.channels_last=false", "train.compile=false"]
    return cfglib.load(registry.get(spec.command).config, None, sets)


def run_cvtool(spec: Spec, cfg: Any, device: torch.device, run_dir: Path) -> tuple[float, float]:
    """The trainer's loader and step on the task the command builds.

    ``train.on_nan: skip`` stays off: its finiteness check reads the loss on the host every
    step, a sync the plain loop does not have (the trainer's ``stop`` check runs in fit(),
    not in train_step, so it costs nothing here).
    """
    runtime.seed_everything(0)
    task = registry.get(spec.command).build(cfg)
    fit = trainer.Trainer(task, trainer.Run(run_dir=run_dir, device=device, argv=[]), Reporter(quiet=True))
    (task.train_mode or nn.Module.train)(fit.model)
    def start_epoch(epoch: int) -> None:
        fit.sampler.set_epoch(epoch)
        fit.loader_gen.manual_seed(cfg.train.seed * 7919 + epoch)

    def step(batch: Any) -> int:
        return fit.train_step(batch, 0, 1).count

    return timed(step, endless(fit.train_loader, spec.batch, start_epoch), spec.warmup, spec.steps, device)


def run_plain(spec: Spec, cfg: Any, device: torch.device) -> tuple[float, float]:
    """The tutorial loop on the same task: DataLoader, forward, backward, SGD, all fp32."""
    runtime.seed_everything(0)
    task = registry.get(spec.command).build(cfg)
    model = task.model.to(device)
    (task.train_mode or nn.Module.train)(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr, momentum=0.9)
    loader = DataLoader(task.train_data, batch_size=spec.batch, shuffle=True, num_workers=cfg.data.num_workers,
                        collate_fn=task.collate_fn)

    def step(batch: Any) -> int:
        batch = trainer.to_device(batch, device)
        out = task.train_step(model, batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        return out.count

    return timed(step, endless(loader, spec.batch, lambda epoch: None), spec.warmup, spec.steps, device)


def train_rows(spec: Spec, root: Path, device: torch.device, dtype: torch.dtype | None, args: argparse.Namespace,
               defaults: tuple[bool, bool, bool]) -> list[Row]:
    plain_cfg = load_config(spec, root, device, args.workers, False, None, False)
    with plain_flags(defaults):
        (rate, ms), peak = measured(device, lambda: run_plain(spec, plain_cfg, device))
    workers = f"{plain_cfg.data.num_workers} workers" if spec.streamed else "in memory"
    plain = Row(spec.command, "plain fp32 eager", spec.batch, spec.shape, spec.steps, rate, ms, peak, 1.0, workers)
    report(plain)
    cfg = load_config(spec, root, device, args.workers, True, dtype, args.compile)
    run_dir = root / "runs" / spec.command
    (rate, ms), peak = measured(device, lambda: run_cvtool(spec, cfg, device, run_dir))
    settings = [runtime_label(dtype), "channels_last"]
    if "data.on_device=true" in spec.fast:
        settings.append("data on device")
    if args.compile:
        settings.append("compile")
    note = workers if not spec.fast else "on device"
    ours = Row(spec.command, "cvtool " + " + ".join(settings), spec.batch, spec.shape, spec.steps, rate, ms, peak,
               rate / plain.images_per_second, note)
    report(ours)
    return [plain, ours]


def runtime_label(dtype: torch.dtype | None) -> str:
    return "bf16" if dtype is not None else "fp32"


# --------------------------------------------------------------------------- ResNet-18, data on the GPU


def random_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """A ``size`` x ``size`` window at a random place in each image: one gather for the batch."""
    b, c, h, w = x.shape
    top = torch.randint(0, h - size + 1, (b,), device=x.device)
    left = torch.randint(0, w - size + 1, (b,), device=x.device)
    steps = torch.arange(size, device=x.device)
    rows = (top[:, None] + steps)[:, None, :, None]
    cols = (left[:, None] + steps)[:, None, None, :]
    return x[torch.arange(b, device=x.device)[:, None, None, None],
             torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def run_resident(sizes: Sizes, device: torch.device, dtype: torch.dtype | None, fast: bool,
                 compile_model: bool) -> tuple[float, float]:
    """ResNet-18 training on a uint8 set that lives on the device: no loader, no host copies."""
    torch.manual_seed(0)
    shape = (sizes.resnet_count, 3, sizes.resnet_store, sizes.resnet_store)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    labels = torch.randint(0, 1000, (sizes.resnet_count,), device=device)
    memory_format = torch.channels_last if fast else torch.contiguous_format
    model = pretrained("resnet18", None).to(device=device, memory_format=memory_format)
    net = torch.compile(model) if compile_model else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
    model.train()

    def step(_: Any) -> int:
        idx = torch.randint(0, sizes.resnet_count, (sizes.resnet_batch,), device=device)
        x = normalize(random_crop(hflip(images[idx]), sizes.resnet_crop), IMAGENET_MEAN, IMAGENET_STD)
        with runtime.autocast(device, dtype):
            loss = F.cross_entropy(net(x.contiguous(memory_format=memory_format)), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return sizes.resnet_batch

    return timed(step, itertools.repeat(None), sizes.resnet_warmup, sizes.resnet_steps, device)


def resident_rows(sizes: Sizes, device: torch.device, dtype: torch.dtype | None, args: argparse.Namespace,
                  defaults: tuple[bool, bool, bool]) -> list[Row]:
    shape = f"{sizes.resnet_crop}"
    note = f"{sizes.resnet_count} uint8 images on the device, random crop + flip per image"
    with plain_flags(defaults):
        (rate, ms), peak = measured(device, lambda: run_resident(sizes, device, None, False, False))
    plain = Row(RESNET, "plain fp32 eager", sizes.resnet_batch, shape, sizes.resnet_steps, rate, ms, peak, 1.0, note)
    report(plain)
    runtime.configure(device, deterministic=False)
    (rate, ms), peak = measured(device, lambda: run_resident(sizes, device, dtype, True, args.compile))
    variant = f"cvtool {runtime_label(dtype)} + channels_last" + (" + compile" if args.compile else "")
    ours = Row(RESNET, variant, sizes.resnet_batch, shape, sizes.resnet_steps, rate, ms, peak,
               rate / plain.images_per_second, note)
    report(ours)
    return [plain, ours]


# --------------------------------------------------------------------------- stylize


def stylize_benchmark() -> ModuleType:
    """benchmarks/stylize.py, whose book loop is the baseline here."""
    spec = importlib.util.spec_from_file_location("stylize_benchmark", Path(__file__).with_name("stylize.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_stylize_command(content: Path, style: Path, out: Path, sizes: Sizes, device: torch.device,
                        steps: int, channels_last: bool) -> dict[str, Any]:
    cfg = st.Config()
    cfg.image.size = list(sizes.stylize_hw)
    cfg.model.weights = "none"
    cfg.optim.steps = steps
    cfg.run.device = str(device)
    cfg.run.channels_last = channels_last
    return st.stylize(cfg, content, style, out)


def run_book_stylize(content: Path, style: Path, sizes: Sizes, device: torch.device, steps: int) -> float:
    """ms per step of the book's loop, after a few untimed steps."""
    book = stylize_benchmark()
    torch.manual_seed(0)
    net = vgg.build_layers(vgg.tap_index(max(book.STYLE + book.CONTENT)))[:29].to(device)
    pictures = [stylize_images.normalize(stylize_images.resize(stylize_images.read_image(p, "picture"), sizes.stylize_hw)).to(device)
                for p in (content, style)]
    step = book.book_step(net, pictures[0], pictures[1], nn.Parameter(pictures[0].clone()))

    def one(_: Any) -> int:
        step()
        return 1

    _, ms = timed(one, itertools.repeat(None), sizes.stylize_warmup, steps, device)
    return ms


def stylize_rows(root: Path, sizes: Sizes, device: torch.device, steps: int,
                 defaults: tuple[bool, bool, bool]) -> list[Row]:
    content, style = write_pictures(root / "stylize", sizes.stylize_hw)
    shape = "x".join(map(str, sizes.stylize_hw))
    with plain_flags(defaults):
        ms, peak = measured(device, lambda: run_book_stylize(content, style, sizes, device, steps))
    book = Row(STYLIZE, "plain: book loop fp32, VGG weights require grad", 1, shape, steps, None, ms, peak, 1.0,
               f"{sizes.stylize_warmup} untimed steps first")
    report(book)
    rows = [book]
    runs = [("cvtool defaults, first call", False, "cuDNN autotuning included" if device.type == "cuda" else ""),
            ("cvtool defaults", False, "second call"),
            ("cvtool + channels_last", True, "")]
    out = root / "stylize" / "out.png"
    for variant, channels_last, note in runs:
        result, peak = measured(device, partial(run_stylize_command, content, style, out, sizes, device, steps,
                                                channels_last))
        label = f"{variant} ({PRECISION.get(result['amp'], result['amp'])})"
        row = Row(STYLIZE, label, 1, shape, steps, None, result["ms_per_step"], peak,
                  book.ms_per_step / result["ms_per_step"], f"{result['seconds']:.2f} s in all; {note}".strip("; "))
        report(row)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- output


def report(row: Row) -> None:
    """One progress line per finished run, on stderr, so stdout keeps only the table."""
    speed = f"{row.images_per_second:,.0f} images/s" if row.images_per_second else f"{row.ms_per_step:.2f} ms/step"
    print(f"  {row.command}: {row.variant}: {speed}", file=sys.stderr, flush=True)


def gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2 ** 30:.2f} GiB"


def table(rows: list[Row]) -> str:
    head = ("command", "variant", "batch", "size", "steps", "images/s", "ms/step", "peak mem", "vs plain", "note")
    body = [(r.command, r.variant, str(r.batch or "-"), r.shape, str(r.steps),
             f"{r.images_per_second:,.0f}" if r.images_per_second else "-",
             f"{r.ms_per_step:.2f}" if r.ms_per_step is not None else "-", gib(r.peak_memory_bytes),
             f"{r.ratio:.2f}x" if r.ratio is not None else "-", r.note) for r in rows]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    right = {2, 4, 5, 6, 7, 8}

    def fmt(line: tuple[str, ...]) -> str:
        cells = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, body)])


def goals(rows: list[Row], device_name: str) -> list[str]:
    lines = []
    where = "" if "H100" in device_name else f" (the goals are for one H100; this is {device_name})"
    resident = next((r for r in rows if r.command == RESNET and r.variant.startswith("cvtool")), None)
    if resident is not None:
        met = resident.images_per_second >= GOAL_IMAGES_PER_S
        lines.append(f"goal ResNet-18 224 px, data on the GPU, >= {GOAL_IMAGES_PER_S:,} images/s: "
                     f"{resident.images_per_second:,.0f} ({'met' if met else 'not met'}){where}")
    warm = next((r for r in rows if r.command == STYLIZE and r.variant.startswith("cvtool defaults (")), None)
    if warm is not None:
        seconds = warm.ms_per_step * GOAL_STYLIZE_STEPS / 1000
        met = seconds <= GOAL_STYLIZE_SECONDS
        lines.append(f"goal stylize {GOAL_STYLIZE_STEPS} steps at 512x512 in <= {GOAL_STYLIZE_SECONDS:g} s: "
                     f"{seconds:.2f} s at {warm.shape} ({'met' if met else 'not met'}){where}")
    return lines


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu (default: auto)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps of every train command and of resnet18-224 (default: per command)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before them (default: per command)")
    parser.add_argument("--stylize-steps", type=int, default=None, help="stylize steps per run (default 500)")
    parser.add_argument("--only", action="append", default=None, metavar="CMD[,CMD]",
                        help=f"run only these: {', '.join(NAMES)} (repeatable)")
    parser.add_argument("--compile", action="store_true", help="torch.compile cvtool's models")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the file-based commands (default: min(8, CPUs); 0 with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 timed steps each: a smoke test")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    chosen = [n.strip() for item in (args.only or [",".join(NAMES)]) for n in item.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in NAMES]
    if unknown:
        parser.error(f"unknown --only {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    args.only = [n for n in NAMES if n in chosen]
    for name in ("steps", "warmup", "stylize_steps", "workers"):
        value = getattr(args, name)
        if value is not None and value < (0 if name in ("warmup", "workers") else 1):
            parser.error(f"--{name.replace('_', '-')} must be {'>= 0' if name in ('warmup', 'workers') else '>= 1'}")
    if args.workers is None:
        args.workers = 0 if args.quick else min(8, os.cpu_count() or 1)
    return args


def plan(args: argparse.Namespace) -> tuple[list[Spec], Sizes]:
    specs = QUICK_SPECS if args.quick else GPU_SPECS
    sizes = QUICK_SIZES if args.quick else GPU_SIZES
    chosen = []
    for name in TRAIN:
        if name in args.only:
            spec = specs[name]
            spec = replace(spec, steps=args.steps or spec.steps,
                           warmup=spec.warmup if args.warmup is None else args.warmup)
            chosen.append(spec)
    sizes = replace(sizes, resnet_steps=args.steps or sizes.resnet_steps,
                    resnet_warmup=sizes.resnet_warmup if args.warmup is None else args.warmup,
                    stylize_steps=args.stylize_steps or sizes.stylize_steps)
    return chosen, sizes


def main(argv: list[str] | None = None) -> int:
    began = time.perf_counter()
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    defaults = backend_flags()
    try:
        device = runtime.select_device(args.device)
    except CvtoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bf16 = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
    dtype = torch.bfloat16 if bf16 else None
    name = runtime.device_name(device)
    specs, sizes = plan(args)
    print(f"device: {name}; torch {torch.__version__}; {'quick sizes' if args.quick else 'full sizes'}"
          f"{'; compile' if args.compile else ''}; workers {args.workers}", flush=True)
    if device.type == "cpu" and not args.quick:
        print("note: the full sizes take very long on a CPU; --quick is the CPU smoke test", file=sys.stderr)

    rows: list[Row] = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="cvtool-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        synthesize(specs, sizes, root, 1 if args.quick else (os.cpu_count() or 1))
        print(f"synthetic data written in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        benches: list[tuple[str, Callable[[], list[Row]]]] = [
            (s.command, lambda s=s: train_rows(s, root, device, dtype, args, defaults)) for s in specs]
        if RESNET in args.only:
            benches.append((RESNET, lambda: resident_rows(sizes, device, dtype, args, defaults)))
        if STYLIZE in args.only:
            benches.append((STYLIZE, lambda: stylize_rows(root, sizes, device, sizes.stylize_steps, defaults)))
        for command, bench in benches:
            print(f"{command} ...", file=sys.stderr, flush=True)
            try:
                rows += bench()
            except Exception as exc:  # noqa: BLE001 - one failing command must not hide the others' numbers
                first = (str(exc).splitlines() or [""])[0]
                failed.append(command)
                rows.append(Row(command, "failed", None, "-", 0, None, None, None, None,
                                f"{type(exc).__name__}: {first}"))
                print(f"  {command} failed: {type(exc).__name__}: {first}", file=sys.stderr, flush=True)
            set_backend_flags(defaults)

    total = time.perf_counter() - began
    print(table(rows))
    for line in goals(rows, name):
        print(line)
    print(f"total {total:.0f} s")
    if args.json is not None:
        record = {"device": name, "torch": torch.__version__, "quick": args.quick, "compile": args.compile,
                  "workers": args.workers, "total_seconds": round(total, 1), "rows": [asdict(r) for r in rows],
                  "goals": goals(rows, name), "failed": failed}
        args.json.write_text(json_text(record, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
