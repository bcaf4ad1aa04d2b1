"""Training images per second on CIFAR-10: the book's pipeline vs `cvtool train-cifar --config
configs/cifar.yaml` exactly as a user runs it (its defaults unchanged).

    PYTHONPATH=. python benchmarks/cifar.py                      # 3 interleaved rounds, medians, ratio
    PYTHONPATH=. python benchmarks/cifar.py --json cifar.json    # also keep the record
    PYTHONPATH=. python benchmarks/cifar.py --quick --allow-busy # smoke test (tiny model, seconds)

The book's pipeline (D2L 14.13): every epoch each PNG is opened with PIL and sent through
per-image transforms (Resize 40, RandomResizedCrop 32 scale (0.64, 1) ratio 1, flip,
ToTensor, Normalize) in DataLoader workers (2 by default, as in the issue's measurement),
then the CIFAR ResNet-18 trains eagerly in fp32 (SGD, the book's lr and weight decay) with
torch's default threads and environment. cvtool: the real CLI, `python -m cvtool
train-cifar --config configs/cifar.yaml --set data.root=SYNTH --epochs 2`, whatever its
defaults choose on this machine (precision, layout, threads; its env.json is kept in the
record); only the data folder (synthetic, Kaggle layout) and the epoch count are given.

Each run is a fresh process; the figure is the second epoch's images/s (the first warms up
kernels and caches), timed the same way on both sides: from the start of the epoch to its
last step, data loading included, validation and checkpoints excluded. The rounds
alternate book and cvtool so that a change in load hits both; medians and their ratio are
reported, with the machine, the date and the load average the script saw.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import benchlib

QUICK_WIDTH = 8


def book_worker(args: argparse.Namespace) -> None:
    """One book run in this process: two epochs, the second timed; prints one JSON line."""
    import torch  # before cvtool, as a plain script would
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from cvtool.data import cifar10, kaggle
    from cvtool.models.cifar import cifar_resnet18

    labeled = kaggle.read_labels(args.data, kaggle.CIFAR, sample=True)
    train_idx, _ = kaggle.split_indices(labeled.labels, "train", 0.1, 0)
    files = [labeled.files[i] for i in train_idx.tolist()]
    labels = labeled.labels[train_idx].tolist()
    transform = T.Compose([T.Resize(40), T.RandomResizedCrop(32, scale=(0.64, 1.0), ratio=(1.0, 1.0)),
                           T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(cifar10.CIFAR_MEAN, cifar10.CIFAR_STD)])

    class BookImages(Dataset):
        def __len__(self) -> int:
            return len(files)

        def __getitem__(self, i: int):
            with Image.open(files[i]) as img:
                return transform(img.convert("RGB")), labels[i]

    torch.manual_seed(0)
    model = cifar_resnet18(10, args.width)
    opt = torch.optim.SGD(model.parameters(), lr=2e-4 * args.batch_size, momentum=0.9,
                          weight_decay=5e-4 / args.batch_size)
    loader = DataLoader(BookImages(), batch_size=args.batch_size, shuffle=True, num_workers=args.book_workers)
    model.train()
    for _ in range(args.epochs):
        seen, began = 0, time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
        seconds = time.perf_counter() - began
    print(json.dumps({"images_per_second": seen / seconds, "threads": torch.get_num_threads()}))


def book(args: argparse.Namespace, root: Path) -> float:
    result = benchlib.run([str(Path(__file__).resolve()), "--worker", "book", "--data", str(root),
                           "--batch-size", str(args.batch_size), "--width", str(args.width),
                           "--book-workers", str(args.book_workers), "--epochs", str(args.epochs)], benchlib.env())
    return benchlib.last_json(result.stdout)["images_per_second"]


def cvtool(args: argparse.Namespace, root: Path, out: Path, record: dict) -> float:
    sets = [f"data.root={root}"] + ([f"model.width={args.width}"] if args.quick else [])
    row = benchlib.cli_epoch("train-cifar", "configs/cifar.yaml", sets, out, args.epochs, benchlib.env())
    record["cvtool_threads"] = row["threads"]
    return row["images_per_second"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchlib.add_common(parser)
    parser.add_argument("--data", type=Path, help="a Kaggle-layout CIFAR-10 folder (default: synthesize one)")
    parser.add_argument("--n-train", type=int, default=1000, help="synthetic training images (the tiny set's 1000)")
    parser.add_argument("--book-workers", type=int, default=2, help="the book's DataLoader workers")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the last is timed")
    parser.add_argument("--worker", choices=["book"], help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)  # configs/cifar.yaml's
    parser.add_argument("--width", type=int, default=64, help=argparse.SUPPRESS)  # configs/cifar.yaml's
    args = parser.parse_args()
    if args.quick and args.worker is None:
        args.width, args.n_train, args.rounds, args.epochs = QUICK_WIDTH, min(args.n_train, 40), 1, 1
    return args


def main() -> None:
    args = parse_args()
    if args.worker == "book":
        return book_worker(args)
    from cvtool.data import kaggle_synth

    record = benchlib.machine()
    benchlib.check_load(record, args.allow_busy)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or kaggle_synth.synthesize_cifar(Path(tmp) / "cifar10", n_train=args.n_train, n_test=1)
        runs = iter(range(10 ** 6))
        results = benchlib.interleaved({
            "book": lambda: book(args, root),
            "cvtool": lambda: cvtool(args, root, Path(tmp) / f"run{next(runs)}", record),
        }, args.rounds)
    book_ips, ours = benchlib.median(results["book"]), benchlib.median(results["cvtool"])
    record.update(results=results, book_median=book_ips, cvtool_median=ours, ratio=ours / book_ips,
                  rounds=args.rounds, quick=args.quick, book_workers=args.book_workers)
    print(f"CIFAR ResNet-18 width {args.width}, batch {args.batch_size}, {args.rounds} interleaved round(s), "
          f"second epoch of each run, medians:")
    print(f"book   (PIL per image, {args.book_workers} workers, fp32, torch's threads): {book_ips:9.1f} images/s")
    threads = record.get("cvtool_threads") or {}
    print(f"cvtool (configs/cifar.yaml unchanged; {threads.get('threads')} threads, {threads.get('source')}): "
          f"{ours:9.1f} images/s")
    print(f"ratio cvtool / book: {ours / book_ips:.2f}x")
    benchlib.finish(record, args.json)


if __name__ == "__main__":
    sys.exit(main())
