"""data.on_bad_image: a corrupt image in a training set is an error naming it, or skipped and counted.

Every train command's loader gets one broken training image: with ``error`` (the default)
it is an InputError naming the file; with ``skip`` the dataset is one item shorter, the
file is logged once and ``metadata["skipped_images"]`` (summary.json's ``skipped_images``)
is 1. Truncated files have a valid header, so only a full decode finds them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from cvtool import config as cfglib
from cvtool.data import bananas, kaggle_synth, voc
from cvtool.errors import InputError
from cvtool.tasks import cifar, dog, fcn, hotdog, ssd

pytestmark = pytest.mark.usefixtures("one_thread")

CORRUPT = b"this is not an image, whatever its name says\n" * 4


def truncated_copy(path: Path) -> bytes:
    """The file's own format, cut in half: the header still reads, the pixels do not."""
    with Image.open(path) as img:
        fmt, (w, h) = img.format, img.size
    noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, fmt)
    data = buf.getvalue()
    return data[: len(data) // 2]


BREAKS: dict[str, Callable[[Path], bytes]] = {
    "zero-byte": lambda path: b"",
    "not-an-image": lambda path: CORRUPT,
    "truncated": truncated_copy,
}


@dataclass
class Case:
    """How to make one task's tiny data set, configure it, and find a training image to break."""

    make: Callable[[Path], Path]
    config: Callable[[Path, str], object]
    build: Callable
    victim: Callable[[Path], Path]
    total: int


def first_csv_id(path: Path) -> str:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))[1][0]


CASES = {
    "hotdog": Case(
        make=lambda out: hotdog_synth(out),
        config=lambda root, mode: cfglib.load(hotdog.Config, None, [
            f"data.root={root}", "data.image_size=32", "data.resize=36", "data.num_workers=0",
            "model.weights=none", f"data.on_bad_image={mode}"]),
        build=hotdog.build,
        victim=lambda root: root / "train" / "hotdog" / "0.png",
        total=6),
    "dog": Case(
        make=lambda out: kaggle_synth.synthesize_dogs(out, n_train=9, n_test=2, classes=3, seed=5),
        config=lambda root, mode: cfglib.load(dog.Config, None, [
            f"data.root={root}", "data.tiny=false", "model.weights=none", "model.num_classes=3",
            "model.hidden=4", "data.image_size=32", "data.resize=36", "data.num_workers=0",
            "data.split=train_valid", "train.device=cpu", f"data.on_bad_image={mode}"]),
        build=dog.build,
        victim=lambda root: root / "train" / f"{first_csv_id(root / 'labels.csv')}.jpg",
        total=9),
    "cifar": Case(
        make=lambda out: kaggle_synth.synthesize_cifar(out, n_train=20, n_test=3, seed=1),
        config=lambda root, mode: cfglib.load(cifar.Config, None, [
            f"data.root={root}", "data.tiny=false", f"data.cache_dir={root.parent / 'cache'}",
            "model.arch=fastnet", "model.width=4", "data.split=train_valid", "train.device=cpu",
            f"data.on_bad_image={mode}"]),
        build=cifar.build,
        victim=lambda root: root / "train" / "1.png",
        total=20),
    "ssd": Case(
        make=lambda out: bananas.synthesize(out, n_train=6, n_val=2, size=64, seed=3),
        config=lambda root, mode: cfglib.load(ssd.Config, None, [
            f"data.root={root}", "data.download=false", "data.image_size=64", "model.width=0.25",
            f"data.on_bad_image={mode}"]),
        build=ssd.build,
        victim=lambda root: root / "bananas_train" / "images" / "0.png",
        total=6),
    "fcn": Case(
        make=lambda out: voc.synthesize(out / "VOCdevkit", n_train=5, n_val=2, size=32, classes=3).parent,
        config=lambda root, mode: cfglib.load(fcn.Config, None, [
            f"data.root={root / 'VOCdevkit'}", "data.download=false", "data.crop_size=[32, 32]",
            "model.weights=none", "model.width=4", "model.num_classes=4", "data.num_workers=0",
            f"data.on_bad_image={mode}"]),
        build=fcn.build,
        victim=lambda root: root / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2012_000000.jpg",
        total=5),
}


def hotdog_synth(out: Path) -> Path:
    from cvtool.data.hotdog import synthesize

    return synthesize(out, n=3, size=40, seed=3)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    return {name: case.make(tmp_path_factory.mktemp(name) / name) for name, case in CASES.items()}


def broken(name: str, pristine: dict[str, Path], tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """A private copy of ``name``'s data set with one training image broken: (root, that image)."""
    root = Path(shutil.copytree(pristine[name], tmp_path / name))
    victim = CASES[name].victim(root)
    victim.write_bytes(BREAKS[kind](victim))
    return root, victim


def fetch_all(data) -> None:
    for i in range(len(data)):
        data[i]


def test_default_is_error():
    assert cfglib.DataConfig().on_bad_image == "error"
    for case in CASES.values():
        assert case.config(Path("x"), "error").data.on_bad_image == "error"
    with pytest.raises(cfglib.ConfigError, match="data.on_bad_image must be one of error | skip"):
        CASES["hotdog"].config(Path("x"), "ignore")


@pytest.mark.parametrize("name", list(CASES))
def test_error_names_the_file(name, pristine, tmp_path):
    root, victim = broken(name, pristine, tmp_path, "not-an-image")
    case = CASES[name]
    with pytest.raises(InputError, match=victim.name):
        task = case.build(case.config(root, "error"))
        fetch_all(task.train_data)  # hotdog decodes lazily, as before this option existed


@pytest.mark.parametrize("kind", list(BREAKS))
@pytest.mark.parametrize("name", list(CASES))
def test_skip_leaves_the_image_out_and_counts_it(name, kind, pristine, tmp_path, caplog):
    root, victim = broken(name, pristine, tmp_path, kind)
    case = CASES[name]
    with caplog.at_level(logging.WARNING, logger="cvtool.data.images"):
        task = case.build(case.config(root, "skip"))
    assert len(task.train_data) == case.total - 1
    assert task.metadata["skipped_images"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and victim.name in messages[0] and "data.on_bad_image: skip" in messages[0]
    fetch_all(task.train_data)


@pytest.mark.parametrize("name", list(CASES))
def test_skip_on_clean_data_skips_nothing(name, pristine):
    case = CASES[name]
    task = case.build(case.config(pristine[name], "skip"))
    assert len(task.train_data) == case.total and task.metadata["skipped_images"] == 0


def test_cifar_skip_leaves_no_cache_so_the_next_run_logs_it_again(pristine, tmp_path, caplog):
    root, victim = broken("cifar", pristine, tmp_path, "truncated")
    cfg = CASES["cifar"].config(root, "skip")
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cvtool.data.images"):
            task = cifar.build(cfg)
        assert task.metadata["skipped_images"] == 1 and victim.name in caplog.text
    assert not list((tmp_path / "cache").glob("*.pt"))
    with pytest.raises(InputError, match=victim.name):
        cifar.build(CASES["cifar"].config(root, "error"))


def test_a_bad_test_image_is_still_an_error_for_the_submission(pristine, tmp_path):
    root = Path(shutil.copytree(pristine["cifar"], tmp_path / "cifar"))
    (root / "test" / "2.png").write_bytes(CORRUPT)
    task = cifar.build(CASES["cifar"].config(root, "skip"))
    assert task.metadata["skipped_images"] == 0
    with pytest.raises(InputError, match="2.png"):
        task.finish(task.model, tmp_path, torch.device("cpu"))

    dogs = Path(shutil.copytree(pristine["dog"], tmp_path / "dogs"))
    victim = next((dogs / "test").iterdir())
    victim.write_bytes(b"")
    task = dog.build(CASES["dog"].config(dogs, "skip"))
    with pytest.raises(InputError, match=victim.name):
        task.finish(task.model, tmp_path, torch.device("cpu"))


def test_cli_run_reports_skipped_images_in_the_summary(cli, hotdog_root, tmp_path):
    root = Path(shutil.copytree(hotdog_root, tmp_path / "hotdog"))
    (root / "train" / "not-hotdog" / "2.png").write_bytes(truncated_copy(root / "train" / "not-hotdog" / "2.png"))
    run = tmp_path / "run"
    code, _, err = cli("finetune-hotdog", "--set", f"data.root={root}", "--set", "data.image_size=32",
                       "--set", "data.resize=36", "--set", "data.batch_size=4", "--set", "data.num_workers=0",
                       "--set", "model.weights=none", "--set", "data.on_bad_image=skip",
                       "--max-steps", "1", "--epochs", "1", "--device", "cpu", "--out", str(run))
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["skipped_images"] == 1
