"""train-cifar: CIFAR-10 from the Kaggle layout to submission.csv.

Two recipes share this task: the book's CIFAR ResNet-18 (configs/cifar.yaml) and a
fast VGG-style net for a GPU (configs/cifar-fast.yaml). Either way the images are
decoded once into a uint8 tensor (cvtool.data.cifar10), batches are slices of it (on
the GPU with ``data.on_device``), and augmentation runs on the whole batch on the
training device (cvtool.data.batch_augment), not per image in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from torchvision.transforms import v2

from cvtool import config as c
from cvtool.data import cifar10, datasets, kaggle, presets
from cvtool.data.batch_augment import BatchAugment
from cvtool.engine import runtime
from cvtool.engine.progress import terminal_progress
from cvtool.engine.task import StepOutput, Task
from cvtool.errors import MissingResource
from cvtool.models.cifar import cifar_resnet18, fastnet
from cvtool.tasks import classify
from cvtool.tasks.specs.cifar import SPEC, Config, Data, INPUT_SIZE

COLUMNS = classify.COLUMNS


def build_model(cfg: Config) -> nn.Module:
    m = cfg.model
    classes = c.class_count(m.num_classes, len(kaggle.CIFAR10_CLASSES))
    if m.arch == "fastnet":
        return fastnet(classes, m.width)
    return cifar_resnet18(classes, m.width)


# --------------------------------------------------------------------------- data


@dataclass
class CifarData:
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    test: Callable[[int, kaggle.Progress], Iterator[tuple[list[str], torch.Tensor]]] | None
    skipped: int = 0


def detect_format(root: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if (root / kaggle.CIFAR.labels_csv).is_file():
        return "kaggle"
    if cifar10.torchvision_folder(root) is not None:
        return "torchvision"
    raise MissingResource(f"{root} holds neither the Kaggle layout ({kaggle.CIFAR.describe(root)}) "
                          "nor torchvision's cifar-10-batches-py")


def load_data(d: Data, quiet: bool = False) -> CifarData:
    root = kaggle.locate(d.root, kaggle.CIFAR, d.download, d.tiny)
    if detect_format(root, d.format) == "torchvision":
        folder = cifar10.torchvision_folder(root)
        if folder is None:
            raise MissingResource(f"{root} holds no cifar-10-batches-py folder (data_batch_1..5, test_batch)")
        images, labels, test_images, _ = cifar10.read_torchvision_cifar(folder)
        ids = [str(i) for i in range(1, len(test_images) + 1)]

        def tensor_chunks(chunk: int, progress: kaggle.Progress) -> Iterator[tuple[list[str], torch.Tensor]]:
            for start in range(0, len(ids), chunk):
                yield ids[start:start + chunk], test_images[start:start + chunk]
                progress(min(start + chunk, len(ids)), len(ids))

        return CifarData(images, labels, list(kaggle.CIFAR10_CLASSES), tensor_chunks)
    listed = kaggle.read_labels(root, kaggle.CIFAR, sample=d.tiny)
    with terminal_progress(f"decoding {len(listed.ids)} training PNGs once", quiet) as progress:
        labeled, images, _ = cifar10.load_train_images(listed, d.cache_dir, progress, d.on_bad_image == "skip")
    test_dir = root / "test"
    test = (lambda chunk, progress: cifar10.cifar_test_chunks(test_dir, chunk, progress)) if test_dir.is_dir() else None
    return CifarData(images, labeled.labels, labeled.classes, test, len(listed.ids) - len(labeled.ids))


def data_device(cfg: Config) -> torch.device:
    """Where ``data.on_device`` puts the set: the GPU this process trains on (its LOCAL_RANK's)."""
    return runtime.local_device(cfg.train.device)


# --------------------------------------------------------------------------- steps


def augmenter(cfg: Config) -> BatchAugment:
    d = cfg.data
    return BatchAugment(d.augment, d.mean, d.std, scale=(d.crop_scale[0], d.crop_scale[1]), pad=d.translate)


def make_train_step(cfg: Config, augment: BatchAugment) -> Callable[[nn.Module, Any], StepOutput]:
    smoothing = cfg.loss.label_smoothing
    channels_last = cfg.train.channels_last is True  # run.train resolves auto

    def train_step(model: nn.Module, batch: Any) -> StepOutput:
        x, y = batch
        x = augment(x, train=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return classify.train_step(model, (x, y), label_smoothing=smoothing)

    return train_step


def make_forward(model: nn.Module, augment: BatchAugment, cfg: Config) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 batch -> logits, with the mirror image's logits averaged in when ``eval.tta_flip``."""
    tta_flip = cfg.eval.tta_flip
    channels_last = cfg.train.channels_last is True  # run.train resolves auto

    def forward(images: torch.Tensor) -> torch.Tensor:
        x = augment(images, train=False)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x).float()
        if tta_flip:
            logits = (logits + model(x.flip(3)).float()) / 2
        return logits

    return forward


def make_evaluate(cfg: Config, augment: BatchAugment) -> Callable[[nn.Module, Iterable, torch.device], dict]:
    def evaluate(model: nn.Module, batches: Iterable, device: torch.device) -> dict[str, float]:
        return classify.evaluate(make_forward(model, augment, cfg), batches, device)

    return evaluate


def write_submission(forward: Callable[[torch.Tensor], torch.Tensor], chunks: Iterable[tuple[list[str], torch.Tensor]],
                     classes: list[str], path: Path, device: torch.device, batch_size: int) -> Path:
    """submission.csv (id,label): one row per test id, labels as class names."""
    with kaggle.SubmissionWriter(path, ("id", "label")) as out, torch.no_grad():
        for ids, images in chunks:
            preds = torch.cat([forward(images[i:i + batch_size].to(device)).argmax(1).cpu()
                               for i in range(0, len(images), batch_size)])
            out.labels(ids, [classes[k] for k in preds.tolist()])
    return path


# --------------------------------------------------------------------------- task


def build(cfg: Config, rank_zero: bool = True) -> Task:
    d = cfg.data
    if d.on_device and d.num_workers:
        raise c.ConfigError("data.on_device needs data.num_workers: 0 (workers cannot share device tensors)")
    presets.check_crop_scale(d.crop_scale)
    data = load_data(d, quiet=not rank_zero)
    cfg = c.with_num_classes(cfg, len(data.classes), f"the data in {d.root}")
    train_idx, val_idx = kaggle.split_indices(data.labels, d.split, d.valid_ratio, d.split_seed)
    images, labels = data.images, data.labels
    if d.on_device:
        device = data_device(cfg)
        images, labels = images.to(device), labels.to(device)
    train = datasets.TensorBatches(images[train_idx.to(images.device)], labels[train_idx.to(images.device)])
    val = datasets.TensorBatches(images[val_idx.to(images.device)], labels[val_idx.to(images.device)])
    augment = augmenter(cfg)

    def finish(model: nn.Module, run_dir: Path, device: torch.device) -> dict[str, str]:
        if data.test is None or not rank_zero:
            return {}
        forward = make_forward(model, augment, cfg)
        with terminal_progress("predicting the test set") as progress:
            path = write_submission(forward, data.test(d.test_chunk, progress), data.classes,
                                    run_dir / "submission.csv", device, max(d.batch_size, 256))
        return {"submission": str(path)}

    return Task(
        name=SPEC.command, config=cfg, model=build_model(cfg), train_data=train, val_data=val,
        train_step=make_train_step(cfg, augment), evaluate=make_evaluate(cfg, augment), columns=COLUMNS,
        best_metric="val_acc", best_mode="max", collate_fn=datasets.collate, finish=finish,
        pictures=classify.make_pictures(classify.tensor_samples(val.inputs, val.labels), data.classes,
                                        lambda model, x: make_forward(model, augment, cfg)(x)),
        metadata={"classes": data.classes, "train_size": len(train), "val_size": len(val),
                  "skipped_images": data.skipped},
    )


def image_transform(cfg: Config) -> v2.Compose:
    """Any picture as a CIFAR input: squashed to 32x32, normalised like training."""
    return presets.squashed(INPUT_SIZE[0], cfg.data.mean, cfg.data.std)


def predict(model: nn.Module, cfg: Config, metadata: dict[str, Any], paths: list[Path],
            device: torch.device, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Top classes of ``paths``; with ``kaggle_test`` a submission.csv for that test folder."""
    classes = metadata.get("classes", list(kaggle.CIFAR10_CLASSES))
    model.eval()
    results: list[dict[str, Any]] = []
    if options.get("kaggle_test") is not None:
        test_dir = kaggle.find_test_dir(options["kaggle_test"])
        out = Path(options.get("out") or ".") / "submission.csv"
        forward = make_forward(model, augmenter(cfg), cfg)
        rows = len(kaggle.test_ids(test_dir, kaggle.CIFAR))
        with terminal_progress("predicting the test set") as progress:
            path = write_submission(forward, cifar10.cifar_test_chunks(test_dir, cfg.data.test_chunk, progress),
                                    classes, out, device, 256)
        results.append({"test_dir": str(test_dir), "submission": str(path), "rows": rows})
    if paths:
        results += classify.predict_images(model, image_transform(cfg), classes, paths, device,
                                           top=options.get("top", 5))
    return results
