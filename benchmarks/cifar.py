"""Images per second of one CIFAR-10 training epoch: cvtool's pipeline vs the book's way.

The book's way: every epoch each PNG is opened with PIL and sent through per-image
transforms (Resize 40, RandomResizedCrop 32, flip, ToTensor, Normalize) in DataLoader
workers, and the model runs eagerly in fp32. cvtool's way: the PNGs are decoded once into
a uint8 tensor cache, a batch is one gather, the same augmentation runs batch-wise on the
training device, and the step runs under bf16 autocast (on CUDA also channels_last, with
the data resident on the GPU). Both train the same CIFAR ResNet-18 (same init, same SGD),
in the same process, on synthetic data in the Kaggle layout, and the timing of each epoch
includes its data loading.

    python benchmarks/cifar.py                 # CPU or GPU, whichever `auto` finds
    python benchmarks/cifar.py --width 32 --n-train 512   # quicker
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from cvtool.data import cifar10, datasets, kaggle, kaggle_synth
from cvtool.data.batch_augment import BatchAugment
from cvtool.engine import runtime
from cvtool.models.cifar import cifar_resnet18


class BookImages(Dataset):
    """What the book's ImageFolder does per item: open the PNG, transform it with PIL."""

    def __init__(self, labeled: kaggle.Labeled, transform):
        self.files = labeled.files
        self.labels = labeled.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB")), self.labels[i]


def book_transform() -> T.Compose:
    return T.Compose([T.Resize(40), T.RandomResizedCrop(32, scale=(0.64, 1.0), ratio=(1.0, 1.0)),
                      T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(cifar10.CIFAR_MEAN, cifar10.CIFAR_STD)])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_model(width: int, device: torch.device, channels_last: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = cifar_resnet18(10, width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.SGD(model.parameters(), lr=0.0256, momentum=0.9, weight_decay=3.9e-6)


def run_epoch(batches, step, device: torch.device, warmup: int) -> float:
    """Images per second over one epoch, data loading included; the first ``warmup``
    batches (kernel selection, worker start-up) are run but not counted."""
    seen, start = 0, None
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        step(x, y)
        if start is not None:
            seen += len(y)
    sync(device)
    return seen / (time.perf_counter() - start)


def book_way(labeled: kaggle.Labeled, args, device: torch.device) -> float:
    model, opt = fresh_model(args.width, device, channels_last=False)
    loader = DataLoader(BookImages(labeled, book_transform()), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, num_workers=args.book_workers)

    def step(x, y):
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    return run_epoch(loader, step, device, args.warmup)


def cvtool_way(images: torch.Tensor, labels: torch.Tensor, args, device: torch.device,
               dtype: torch.dtype | None) -> float:
    channels_last = device.type == "cuda"
    model, opt = fresh_model(args.width, device, channels_last)
    if device.type == "cuda":
        images, labels = images.to(device), labels.to(device)
    augment = BatchAugment("book", cifar10.CIFAR_MEAN, cifar10.CIFAR_STD)
    loader = DataLoader(datasets.TensorBatches(images, labels), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, collate_fn=datasets.collate)

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with runtime.autocast(device, dtype):
            x = augment(x, train=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    return run_epoch(loader, step, device, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a Kaggle CIFAR-10 folder (default: synthesize one)")
    parser.add_argument("--n-train", type=int, default=1024, help="synthetic training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 width (the book's: 64)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--book-workers", type=int, default=4, help="the book's DataLoader workers (d2l: 4)")
    parser.add_argument("--amp", choices=["bf16", "off"], default="bf16", help="cvtool's autocast precision")
    parser.add_argument("--warmup", type=int, default=3, help="batches per epoch not timed")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = runtime.select_device(args.device)
    dtype = runtime.amp_dtype(device, args.amp)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or kaggle_synth.synthesize_cifar(Path(tmp) / "cifar10", n_train=args.n_train, n_test=1)
        labeled = kaggle.read_labels(root, kaggle.CIFAR)
        n, batches = len(labeled.ids), len(labeled.ids) // args.batch_size  # drop_last: whole batches only
        if batches <= args.warmup:
            need = (args.warmup + 1) * args.batch_size
            more = "use a bigger --data folder" if args.data else f"raise --n-train to {need}"
            parser.error(f"{n} images make {batches} batches of {args.batch_size}, none left to time after "
                         f"--warmup {args.warmup}; {more}, or lower --batch-size or --warmup")
        began = time.perf_counter()
        images, _ = cifar10.cached_train_images(labeled, cache_dir=Path(tmp) / "cache")
        decode_s = time.perf_counter() - began
        book = book_way(labeled, args, device)
        ours = cvtool_way(images, labeled.labels, args, device, dtype)
        ours_fp32 = cvtool_way(images, labeled.labels, args, device, None) if dtype is not None else None

    name = runtime.device_name(device)
    print(f"device: {name} ({torch.get_num_threads()} threads); model: CIFAR ResNet-18 width {args.width}; "
          f"{len(labeled.ids)} images, batch {args.batch_size}")
    print(f"book   (PIL decode + transforms per image, {args.book_workers} workers, fp32): {book:9.1f} images/s")
    if ours_fp32 is not None:
        print(f"cvtool (uint8 cache, batch-wise augmentation, fp32):                   {ours_fp32:9.1f} images/s")
    precision = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast", None: "fp32"}[dtype]
    print(f"cvtool (uint8 cache, batch-wise augmentation, {precision}):          {ours:9.1f} images/s")
    print(f"one-time decode into the uint8 cache: {decode_s:.2f} s for {len(labeled.ids)} PNGs")
    if ours_fp32 is not None:
        print(f"ratio cvtool fp32 / book: {ours_fp32 / book:.2f}x (the data pipeline alone)")
    print(f"ratio cvtool / book: {ours / book:.2f}x")


if __name__ == "__main__":
    main()
