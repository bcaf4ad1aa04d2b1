"""Bad input across every command: a corpus of broken configs, data, checkpoints and devices.

Each case must end with exit 2 (bad input) or 3 (missing data or weights), exactly one
line on stderr that names the culprit (a file, a key or a device), no traceback, and,
where it runs against an existing run directory, that directory byte for byte as it
was. Images in odd modes that can be converted (CMYK, L, LA, RGBA, P, I;16) are
converted by every image loader, not refused.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtool import config as cfglib
from cvtool.engine import checkpoint
from cvtool.tasks import hotdog as hotdog_task

HOTDOG_CLASSES = ["hotdog", "not-hotdog"]
RUN = ["--max-steps", "1", "--epochs", "1", "--device", "cpu"]


# --------------------------------------------------------------------------- bytes of bad files


def noise(h: int = 40, w: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming width x height RGB pixels, with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


def huge_jpeg(width: int = 65_000, height: int = 65_000) -> bytes:
    """A small JPEG whose frame header is patched to claim width x height pixels."""
    data = bytearray(encoded(Image.new("RGB", (8, 8), (90, 60, 30)), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


CORRUPT = b"this is not an image, whatever its name says\n" * 4


class Evil:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --------------------------------------------------------------------------- per-case environment


class Env:
    """What a case needs: private copies of tiny datasets, files, checkpoints, run dirs.

    Run directories made here are recorded, and the test checks each one is unchanged.
    """

    def __init__(self, tmp: Path, pristine: dict[str, Path]):
        self.tmp = tmp
        self.pristine = pristine
        self.runs: list[Path] = []

    def data(self, kind: str) -> Path:
        """A private copy of a pristine dataset, free to break."""
        target = self.tmp / "data" / kind
        if not target.exists():
            shutil.copytree(self.pristine[kind], target)
        return target

    def write(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    def empty_dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True)
        return path

    def out(self) -> str:
        return str(self.tmp / "runs" / "new")

    # ---- train commands on tiny data

    def hotdog(self, root: Path | None = None, *more: str) -> list[str]:
        root = root or self.pristine["hotdog"]
        return ["finetune-hotdog", "--set", f"data.root={root}", *sets(HOTDOG_SETS), *more, *RUN,
                "--out", self.out()]

    def ssd(self, root: Path | None = None, *more: str) -> list[str]:
        root = root or self.pristine["bananas"]
        return ["train-ssd", "--set", f"data.root={root}", "--set", "data.download=false",
                "--set", "data.image_size=64", "--set", "data.batch_size=8", "--set", "model.width=0.25",
                *more, *RUN, "--out", self.out()]

    def fcn(self, root: Path | None = None, *more: str) -> list[str]:
        root = root or self.pristine["voc"]
        return ["train-fcn", "--set", f"data.root={root}", "--set", "data.download=false",
                "--set", "data.crop_size=[32,32]", "--set", "model.num_classes=3", "--set", "model.width=4",
                "--set", "model.weights=none", "--set", "data.batch_size=8", "--set", "data.num_workers=0",
                *more, *RUN, "--out", self.out()]

    def cifar(self, root: Path | None = None, *more: str) -> list[str]:
        root = root or self.pristine["cifar"]
        return ["train-cifar", "--set", f"data.root={root}", "--set", "data.tiny=false",
                "--set", f"data.cache_dir={self.tmp / 'cache'}", "--set", "model.arch=fastnet",
                "--set", "model.width=4", *more, *RUN, "--out", self.out()]

    def dog(self, root: Path | None = None, *more: str) -> list[str]:
        root = root or self.pristine["dogs"]
        return ["train-dog", "--set", f"data.root={root}", "--set", "data.tiny=false",
                "--set", "model.num_classes=3", "--set", "model.weights=none", "--set", "model.hidden=4",
                "--set", "data.image_size=32", "--set", "data.resize=36", "--set", "data.batch_size=8",
                "--set", "data.num_workers=0", *more, *RUN, "--out", self.out()]

    def stylize(self, content: Path | None = None, style: Path | None = None, *more: str) -> list[str]:
        content = content or self.write("content.png", encoded(Image.fromarray(noise(48, 64, 1)), "PNG"))
        style = style or self.write("style.png", encoded(Image.fromarray(noise(48, 48, 2)), "PNG"))
        return ["stylize", str(content), str(style), "-o", str(self.tmp / "out.png"), "--size", "64",
                "--steps", "1", "--device", "cpu", "--set", "model.weights=none", *more]

    # ---- checkpoints and run directories

    def hotdog_config(self) -> dict:
        overrides = [f"data.root={self.pristine['hotdog']}", *HOTDOG_SETS, "train.device=cpu",
                     "train.epochs=1", "train.max_steps=1"]
        return cfglib.to_dict(cfglib.load(hotdog_task.Config, None, overrides))

    def checkpoint(self, path: Path, **fields) -> Path:
        """A checkpoint in the cvtool format (a tiny stand-in model unless ``model`` is given)."""
        state = {"format": checkpoint.FORMAT, "task": "finetune-hotdog", "config": self.hotdog_config(),
                 "metadata": {"classes": HOTDOG_CLASSES}, "epoch": 1, "step": 0,
                 "model": {"fc.weight": torch.zeros(2, 512), "fc.bias": torch.zeros(2)}}
        state.update(fields)
        checkpoint.save(state, path)
        return path

    def existing_run(self, last: Callable[[Path], None] | None = None) -> Path:
        """A finished-looking finetune-hotdog run; ``last`` replaces its last.pt."""
        run = self.tmp / "runs" / "old"
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text("data:\n  root: somewhere\n", encoding="utf-8")
        (run / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,lr\n1,0.7,0.5,0.69,0.5,0.001\n")
        (run / "summary.json").write_text('{"status": "completed"}\n')
        self.checkpoint(run / "checkpoints" / "best.pt")
        if last is None:
            self.checkpoint(run / "checkpoints" / "last.pt")
        else:
            last(run / "checkpoints" / "last.pt")
        self.runs.append(run)
        return run

    def resume(self, run: Path, *more: str) -> list[str]:
        return ["finetune-hotdog", "--resume", "--out", str(run), *more]


HOTDOG_SETS = ["data.image_size=32", "data.resize=36", "data.batch_size=32", "data.num_workers=0",
               "model.weights=none", "optim.name=adam", "optim.lr=0.001"]


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: content digest and modification time (but the run's lock file,
    which names whoever last held it)."""
    return {str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".cvtool.lock"}


# --------------------------------------------------------------------------- the corpus

CASES: list = []


def case(code: int = 2, xfail: str | None = None):
    """Register ``fn(env) -> (argv, culprit)``: the command line and what stderr must name."""

    def register(fn):
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        CASES.append(pytest.param(fn, code, id=fn.__name__.replace("_", "-"), marks=marks))
        return fn

    return register


# ---- configs


@case()
def config_bad_yaml(env):
    path = env.write("bad.yaml", "data:\n  root: [unclosed\noptim:\n  lr: 0.1\n")
    return env.hotdog(None, "--config", str(path)), path.name


@case()
def config_a_list_not_a_mapping(env):
    path = env.write("list.yaml", "- data\n- optim\n")
    return env.hotdog(None, "--config", str(path)), path.name


@case()
def config_a_bare_string(env):
    path = env.write("word.yaml", "hotdog\n")
    return env.hotdog(None, "--config", str(path)), path.name


@case()
def config_unknown_section(env):
    path = env.write("unknown.yaml", "optimizer:\n  lr: 0.1\n")
    return env.hotdog(None, "--config", str(path)), "optimizer"


@case()
def config_unknown_key_in_section(env):
    path = env.write("typo.yaml", "optim:\n  lrr: 0.1\n")
    return env.hotdog(None, "--config", str(path)), "optim.lrr"


@case()
def config_section_given_a_value(env):
    path = env.write("flat.yaml", "optim: 3\n")
    return env.hotdog(None, "--config", str(path)), "optim"


@case()
def config_text_where_an_integer_goes(env):
    path = env.write("type.yaml", "sched:\n  step_size: many\n")
    return env.hotdog(None, "--config", str(path)), "sched.step_size"


@case()
def config_fraction_where_an_integer_goes(env):
    path = env.write("frac.yaml", "sched:\n  step_size: 1.5\n")
    return env.hotdog(None, "--config", str(path)), "sched.step_size"


@case()
def config_text_where_a_bool_goes(env):
    path = env.write("bool.yaml", "data:\n  augment: 'yes please'\n")
    return env.hotdog(None, "--config", str(path)), "data.augment"


@case()
def config_nan_in_yaml(env):
    path = env.write("nan.yaml", "optim:\n  weight_decay: .nan\n")
    return env.hotdog(None, "--config", str(path)), "optim.weight_decay"


@case()
def config_python_tag_is_not_run(env):
    marker = env.tmp / "pwned"
    path = env.write("tag.yaml", f"data: !!python/object/apply:os.system ['touch {marker}']\n")
    return env.hotdog(None, "--config", str(path)), path.name


@case()
def config_not_utf8(env):
    path = env.write("latin1.yaml", "data:\n  root: caf\xe9\n".encode("latin-1"))
    return env.hotdog(None, "--config", str(path)), path.name


@case()
def config_path_is_a_directory(env):
    path = env.empty_dir("configs.d")
    return env.hotdog(None, "--config", str(path)), path.name


@case()
def config_path_missing(env):
    return env.hotdog(None, "--config", str(env.tmp / "nowhere.yaml")), "nowhere.yaml"


@case()
def set_negative_image_size(env):
    return env.hotdog(None, "--set", "data.image_size=-32"), "data.image_size"


@case()
def set_zero_batch_size(env):
    return env.hotdog(None, "--set", "data.batch_size=0"), "data.batch_size"


@case()
def set_negative_workers(env):
    return env.hotdog(None, "--set", "data.num_workers=-1"), "data.num_workers"


@case()
def set_lr_zero(env):
    return env.hotdog(None, "--set", "optim.lr=0"), "optim.lr"


@case()
def set_lr_nan(env):
    return env.hotdog(None, "--set", "optim.lr=nan"), "optim.lr"


@case()
def set_lr_inf(env):
    return env.hotdog(None, "--set", "optim.lr=inf"), "optim.lr"


@case()
def set_lr_a_word(env):
    return env.hotdog(None, "--set", "optim.lr=fast"), "optim.lr"


@case()
def set_momentum_one(env):
    return env.hotdog(None, "--set", "optim.momentum=1"), "optim.momentum"


@case()
def set_unknown_optimizer(env):
    return env.hotdog(None, "--set", "optim.name=rmsprop"), "optim.name"


@case()
def set_negative_grad_clip(env):
    return env.hotdog(None, "--set", "train.grad_clip=-1"), "train.grad_clip"


@case()
def set_without_equals(env):
    return env.hotdog(None, "--set", "optim.lr"), "optim.lr"


@case()
def set_through_a_value(env):
    return env.hotdog(None, "--set", "data.root.x=1"), "data.root"


@case()
def set_misspelt_key(env):
    return env.hotdog(None, "--set", "optim.lrr=0.1"), "optim.lrr"


@case()
def epochs_zero(env):
    return [*env.hotdog(), "--epochs", "0"], "train.epochs"


@case()
def max_steps_zero(env):
    return [*env.hotdog(), "--max-steps", "0"], "train.max_steps"


@case()
def num_classes_disagree_with_folders(env):
    return env.hotdog(None, "--set", "model.num_classes=3"), "model.num_classes"


@case()
def fcn_crop_size_one_number(env):
    return env.fcn(None, "--set", "data.crop_size=[32]"), "data.crop_size"


@case()
def fcn_scale_range_reversed(env):
    return env.fcn(None, "--set", "data.scale_range=[2.0,1.0]"), "data.scale_range"


@case()
def dog_crop_scale_one_number(env):
    return env.dog(None, "--set", "data.crop_scale=[0.5]"), "data.crop_scale"


@case()
def dog_resize_below_crop(env):
    return env.dog(None, "--set", "data.resize=16"), "data.resize"


@case()
def cifar_on_device_with_workers(env):
    return env.cifar(None, "--set", "data.on_device=true", "--set", "data.num_workers=2"), "data.on_device"


@case()
def ssd_class_names_disagree(env):
    return env.ssd(None, "--set", "data.classes=[banana,apple]", "--set", "model.num_classes=1"), "data.classes"


@case()
def ssd_image_too_small(env):
    return env.ssd(None, "--set", "data.image_size=32"), "data.image_size"


@case()
def stylize_size_zero(env):
    return [*env.stylize(), "--size", "0"], "--size"


@case()
def stylize_size_words(env):
    return [*env.stylize(), "--size", "big"], "--size"


@case()
def stylize_zero_steps(env):
    return [*env.stylize(), "--steps", "0"], "optim.steps"


@case()
def stylize_negative_style_weight(env):
    return [*env.stylize(), "--style-weight", "-1"], "loss.style_weight"


# ---- weights


@case()
def weights_unknown_name(env):
    return env.hotdog(None, "--set", "model.weights=IMAGENET9K_V9"), "IMAGENET9K_V9"


@case(code=3)
def weights_file_missing(env):
    return env.hotdog(None, "--set", f"model.weights={env.tmp / 'r18.pth'}"), "r18.pth"


@case()
def weights_file_not_a_state_dict(env):
    path = env.write("notes.pth", "these are not weights\n")
    return env.hotdog(None, "--set", f"model.weights={path}"), path.name


@case()
def weights_file_of_plain_words(env):
    path = env.write("hello.pth", "hello world")
    return env.hotdog(None, "--set", f"model.weights={path}"), path.name


@case()
def weights_of_another_architecture(env):
    from cvtool.models.cifar import fastnet

    path = env.tmp / "fastnet.pth"
    torch.save(fastnet(10, 4).state_dict(), path)
    return env.hotdog(None, "--set", f"model.weights={path}"), path.name


@case()
def weights_pickle_that_runs_code(env):
    path = env.tmp / "evil.pth"
    torch.save({"conv1.weight": Evil(env.tmp / "pwned")}, path)
    return env.hotdog(None, "--set", f"model.weights={path}"), path.name


# ---- devices


@case()
def device_cuda_7(env):
    return [*env.hotdog(), "--device", "cuda:7"], "cuda:7"


@case()
def device_unknown(env):
    return [*env.hotdog(), "--device", "tpu"], "tpu"


@case()
def device_bad_index(env):
    return [*env.hotdog(), "--device", "cuda:x"], "cuda:x"


@case()
def fcn_device_cuda_7(env):
    return [*env.fcn(), "--device", "cuda:7"], "cuda:7"


@case()
def stylize_device_cuda_7(env):
    return [*env.stylize(), "--device", "cuda:7"], "cuda:7"


# ---- hotdog folders


@case()
def hotdog_empty_root(env):
    root = env.empty_dir("hotdog-empty")
    return env.hotdog(root), str(root / "train")


@case()
def hotdog_empty_class_folder(env):
    root = env.data("hotdog")
    for f in (root / "train" / "hotdog").iterdir():
        f.unlink()
    return env.hotdog(root), str(root / "train" / "hotdog")


@case()
def hotdog_one_class_only(env):
    root = env.data("hotdog")
    shutil.rmtree(root / "train" / "not-hotdog")
    return env.hotdog(root), str(root / "train")


@case()
def hotdog_test_classes_differ(env):
    root = env.data("hotdog")
    (root / "test" / "not-hotdog").rename(root / "test" / "pizza")
    return env.hotdog(root), "pizza"


@case()
def hotdog_zero_byte_image(env):
    root = env.data("hotdog")
    (root / "train" / "hotdog" / "1.png").write_bytes(b"")
    return env.hotdog(root), "1.png"


@case()
def hotdog_corrupt_image(env):
    root = env.data("hotdog")
    (root / "train" / "not-hotdog" / "2.png").write_bytes(CORRUPT)
    return env.hotdog(root), "2.png"


@case()
def hotdog_truncated_image(env):
    root = env.data("hotdog")
    path = root / "train" / "hotdog" / "3.png"
    path.write_bytes(truncated(encoded(Image.fromarray(noise()), "PNG")))
    return env.hotdog(root), "3.png"


@case()
def hotdog_huge_image(env):
    root = env.data("hotdog")
    (root / "train" / "hotdog" / "4.png").write_bytes(huge_png())
    return env.hotdog(root), "4.png"


# ---- train-cifar (Kaggle layout)


def cifar_csv(root: Path, text: str | bytes) -> Path:
    path = root / "trainLabels.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@case(code=3)
def cifar_labels_csv_missing(env):
    root = env.data("cifar")
    (root / "trainLabels.csv").unlink()
    return env.cifar(root), str(root)


@case(code=3)
def cifar_train_folder_missing(env):
    root = env.data("cifar")
    shutil.rmtree(root / "train")
    return env.cifar(root), str(root / "train")


@case()
def cifar_csv_extra_column(env):
    root = env.data("cifar")
    path = cifar_csv(root, "id,label,weight\n1,cat,1\n")
    return env.cifar(root), path.name


@case()
def cifar_csv_missing_column(env):
    root = env.data("cifar")
    path = cifar_csv(root, "id\n1\n2\n")
    return env.cifar(root), path.name


@case()
def cifar_csv_row_with_extra_field(env):
    root = env.data("cifar")
    lines = (root / "trainLabels.csv").read_text().splitlines()
    lines[3] += ",extra"
    path = cifar_csv(root, "\n".join(lines) + "\n")
    return env.cifar(root), f"{path.name} line 4"


@case()
def cifar_csv_not_utf8(env):
    root = env.data("cifar")
    path = cifar_csv(root, "id,label\n1,caf\xe9\n".encode("latin-1"))
    return env.cifar(root), path.name


@case()
def cifar_csv_unknown_label(env):
    root = env.data("cifar")
    cifar_csv(root, "id,label\n1,cat\n2,zebra\n")
    return env.cifar(root), "zebra"


@case()
def cifar_csv_id_without_image(env):
    root = env.data("cifar")
    cifar_csv(root, "id,label\n1,cat\n999,dog\n")
    return env.cifar(root), "999"


@case()
def cifar_csv_duplicate_id(env):
    root = env.data("cifar")
    cifar_csv(root, "id,label\n1,cat\n2,dog\n1,cat\n")
    return env.cifar(root), "line 4"


@case()
def cifar_csv_header_only(env):
    root = env.data("cifar")
    path = cifar_csv(root, "id,label\n")
    return env.cifar(root), path.name


@case()
def cifar_zero_byte_png(env):
    root = env.data("cifar")
    (root / "train" / "5.png").write_bytes(b"")
    return env.cifar(root), "5.png"


@case()
def cifar_truncated_png(env):
    root = env.data("cifar")
    (root / "train" / "6.png").write_bytes(truncated(encoded(Image.fromarray(noise(32, 32)), "PNG")))
    return env.cifar(root), "6.png"


@case()
def cifar_wrong_size_png(env):
    root = env.data("cifar")
    Image.fromarray(noise(32, 33)).save(root / "train" / "7.png")
    return env.cifar(root), "7.png"


@case()
def cifar_huge_png(env):
    root = env.data("cifar")
    (root / "train" / "8.png").write_bytes(huge_png())
    return env.cifar(root), "8.png is 100000x100000 pixels"


@case()
def cifar_jpeg_named_png(env):
    root = env.data("cifar")
    (root / "train" / "9.png").write_bytes(encoded(Image.fromarray(noise(32, 32)), "JPEG"))
    return env.cifar(root), "9.png"


@case()
def cifar_python_batch_holds_a_list(env):
    root = env.empty_dir("cifar-10-batches-py")
    (root / "data_batch_1").write_bytes(pickle.dumps([1, 2, 3]))
    return env.cifar(root), "data_batch_1"


@case()
def cifar_python_batch_is_garbage(env):
    root = env.empty_dir("cifar-10-batches-py")
    (root / "data_batch_1").write_bytes(b"}]a.fq]]a p")
    return env.cifar(root), "data_batch_1"


# ---- train-dog (Kaggle layout)


def dog_file(root: Path, k: int = 0) -> Path:
    """The k-th image of the training split (loaded in the first batch, before any step)."""
    from cvtool.data import kaggle

    labeled = kaggle.read_labels(root, kaggle.DOGS)
    train, _ = kaggle.split_indices(labeled.labels, "train", 0.1, 0)
    return labeled.files[train[k]]


@case(code=3)
def dog_labels_csv_missing(env):
    root = env.data("dogs")
    (root / "labels.csv").unlink()
    return env.dog(root), "labels.csv"


@case()
def dog_labels_csv_extra_column(env):
    root = env.data("dogs")
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join(line + ",x" for line in lines) + "\n")
    return env.dog(root), "labels.csv"


@case()
def dog_breed_not_in_sample_submission(env):
    root = env.data("dogs")
    lines = (root / "labels.csv").read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ",wolf"
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return env.dog(root), "wolf"


@case()
def dog_sample_submission_not_utf8(env):
    root = env.data("dogs")
    (root / "sample_submission.csv").write_bytes("id,caf\xe9,breed_001\n".encode("latin-1"))
    return env.dog(root), "sample_submission.csv"


@case()
def dog_sample_submission_repeats_a_breed(env):
    root = env.data("dogs")
    (root / "sample_submission.csv").write_text("id,breed_000,breed_000,breed_002\n")
    return env.dog(root), "sample_submission.csv"


@case()
def dog_zero_byte_jpeg(env):
    root = env.data("dogs")
    path = dog_file(root, 0)
    path.write_bytes(b"")
    return env.dog(root), path.name


@case()
def dog_corrupt_jpeg(env):
    root = env.data("dogs")
    path = dog_file(root, 1)
    path.write_bytes(CORRUPT)
    return env.dog(root), path.name


@case()
def dog_truncated_jpeg(env):
    root = env.data("dogs")
    path = dog_file(root, 2)
    path.write_bytes(truncated(encoded(Image.fromarray(noise(64, 64)), "JPEG")))
    return env.dog(root), path.name


@case()
def dog_huge_jpeg(env):
    root = env.data("dogs")
    path = dog_file(root, 0)
    path.write_bytes(huge_jpeg())
    return env.dog(root), path.name


@case()
def dog_default_120_breeds_on_3(env):
    return env.dog(None, "--set", "model.num_classes=120"), "model.num_classes"


# ---- train-fcn (VOC layout)


def voc_dir(root: Path) -> Path:
    return root / "VOC2012"


def voc_first(root: Path, split: str = "train") -> str:
    return (voc_dir(root) / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()[0]


@case()
def voc_empty_root(env):
    root = env.empty_dir("VOCdevkit")
    return env.fcn(root), "VOCdevkit"


@case()
def voc_empty_id_list(env):
    root = env.data("voc")
    (voc_dir(root) / "ImageSets" / "Segmentation" / "train.txt").write_text("\n")
    return env.fcn(root), "train.txt"


@case()
def voc_missing_label(env):
    root = env.data("voc")
    name = voc_first(root)
    (voc_dir(root) / "SegmentationClass" / f"{name}.png").unlink()
    return env.fcn(root), name


@case()
def voc_missing_image(env):
    root = env.data("voc")
    name = voc_first(root, "val")
    (voc_dir(root) / "JPEGImages" / f"{name}.jpg").unlink()
    return env.fcn(root), name


@case()
def voc_label_value_out_of_range(env):
    root = env.data("voc")
    name = voc_first(root)
    path = voc_dir(root) / "SegmentationClass" / f"{name}.png"
    with Image.open(path) as img:
        mask = np.array(img)
    mask[:4, :4] = 50
    from cvtool.data.voc import palette_image

    palette_image(mask).save(path)
    return env.fcn(root), path.name


@case()
def voc_label_size_differs(env):
    root = env.data("voc")
    name = voc_first(root)
    path = voc_dir(root) / "SegmentationClass" / f"{name}.png"
    from cvtool.data.voc import palette_image

    palette_image(np.zeros((5, 7), np.uint8)).save(path)
    return env.fcn(root), path.name


@case()
def voc_label_16_bit(env):
    root = env.data("voc")
    path = voc_dir(root) / "SegmentationClass" / f"{voc_first(root)}.png"
    with Image.open(path) as img:
        wide = np.array(img).astype(np.uint16)
    wide[0, 0] = 300  # 16-bit index masks are read by value; one above 255 is no class
    Image.fromarray(wide).save(path)
    return env.fcn(root), path.name


@case()
def voc_label_unknown_colour(env):
    root = env.data("voc")
    name = voc_first(root)
    path = voc_dir(root) / "SegmentationClass" / f"{name}.png"
    with Image.open(path) as img:
        rgb = np.array(img.convert("RGB"))
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    return env.fcn(root), path.name


@case()
def voc_zero_byte_label(env):
    root = env.data("voc")
    path = voc_dir(root) / "SegmentationClass" / f"{voc_first(root)}.png"
    path.write_bytes(b"")
    return env.fcn(root), path.name


@case()
def voc_huge_image(env):
    root = env.data("voc")
    path = voc_dir(root) / "JPEGImages" / f"{voc_first(root)}.jpg"
    path.write_bytes(huge_jpeg())
    return env.fcn(root), path.name


# ---- train-ssd (banana layout)


def banana_csv(root: Path, split: str = "train") -> Path:
    return root / f"bananas_{split}" / "label.csv"


def banana_image(root: Path) -> Path:
    row = banana_csv(root).read_text().splitlines()[1]
    return root / "bananas_train" / "images" / row.split(",")[0]


@case()
def ssd_label_csv_missing(env):
    root = env.data("bananas")
    banana_csv(root, "val").unlink()
    return env.ssd(root), "label.csv"


@case()
def ssd_csv_extra_column(env):
    root = env.data("bananas")
    path = banana_csv(root)
    path.write_text("img_name,label,xmin,ymin,xmax,ymax,score\n0.png,0,1,1,9,9,1\n")
    return env.ssd(root), "label.csv"


@case()
def ssd_csv_not_utf8(env):
    root = env.data("bananas")
    path = banana_csv(root)
    path.write_bytes("img_name,label,xmin,ymin,xmax,ymax\ncaf\xe9.png,0,1,1,9,9\n".encode("latin-1"))
    return env.ssd(root), "label.csv"


@case()
def ssd_label_out_of_range(env):
    root = env.data("bananas")
    path = banana_csv(root)
    lines = path.read_text().splitlines()
    fields = lines[1].split(",")
    fields[1] = "3"
    lines[1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return env.ssd(root, "--set", "data.classes=[banana]"), "label.csv line 2"  # auto would take 4 classes


@case()
def ssd_box_outside_image(env):
    root = env.data("bananas")
    path = banana_csv(root)
    lines = path.read_text().splitlines()
    name = lines[1].split(",")[0]
    lines[1] = f"{name},0,10,10,500,20"
    path.write_text("\n".join(lines) + "\n")
    return env.ssd(root, "--set", "data.classes=[banana]"), "label.csv line 2"  # auto would take 4 classes


@case()
def ssd_zero_byte_image(env):
    root = env.data("bananas")
    path = banana_image(root)
    path.write_bytes(b"")
    return env.ssd(root), path.name


@case()
def ssd_truncated_image(env):
    root = env.data("bananas")
    path = banana_image(root)
    path.write_bytes(truncated(encoded(Image.fromarray(noise(64, 64)), "PNG")))
    return env.ssd(root), path.name


@case()
def ssd_huge_image(env):
    root = env.data("bananas")
    path = banana_image(root)
    path.write_bytes(huge_png())
    return env.ssd(root), path.name


# ---- stylize


@case()
def stylize_content_missing(env):
    return env.stylize(env.tmp / "holiday.jpg"), "holiday.jpg"


@case()
def stylize_style_corrupt(env):
    return env.stylize(None, env.write("starry.png", CORRUPT)), "starry.png"


@case()
def stylize_content_huge(env):
    return env.stylize(env.write("poster.png", huge_png())), "poster.png"


@case()
def stylize_style_truncated(env):
    style = env.write("wave.jpg", truncated(encoded(Image.fromarray(noise(64, 64)), "JPEG")))
    return env.stylize(None, style), "wave.jpg"


@case()
def stylize_output_is_a_folder(env):
    folder = env.empty_dir("pictures")
    return [*env.stylize(), "-o", str(folder)], "pictures"


@case()
def stylize_output_unknown_format(env):
    return [*env.stylize(), "-o", str(env.tmp / "out.xyz")], "out.xyz"


@case()
def stylize_out_dir_holds_a_run(env):
    run = env.existing_run()
    return [*env.stylize(), "--out-dir", str(run)], str(run)


# ---- predict with bad checkpoints and images


def an_image(env) -> str:
    return str(env.write("lunch.png", encoded(Image.fromarray(noise(40, 40, 5)), "PNG")))


@case()
def predict_checkpoint_missing(env):
    return ["predict", "--checkpoint", str(env.tmp / "best.pt"), an_image(env)], "best.pt"


@case()
def predict_checkpoint_is_a_directory(env):
    folder = env.empty_dir("ckpt.pt")
    return ["predict", "--checkpoint", str(folder), an_image(env)], "ckpt.pt"


@case()
def predict_checkpoint_zero_bytes(env):
    path = env.write("empty.pt", b"")
    return ["predict", "--checkpoint", str(path), an_image(env)], path.name


@case()
def predict_checkpoint_truncated(env):
    path = env.checkpoint(env.tmp / "cut.pt")
    path.write_bytes(truncated(path.read_bytes()))
    return ["predict", "--checkpoint", str(path), an_image(env)], path.name


@case()
def predict_checkpoint_runs_code(env):
    path = env.tmp / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "model": Evil(env.tmp / "pwned")}, path)
    return ["predict", "--checkpoint", str(path), an_image(env)], path.name


@case()
def predict_checkpoint_of_plain_words(env):
    path = env.write("words.pt", "hello world")
    return ["predict", "--checkpoint", str(path), an_image(env)], path.name


@case()
def predict_checkpoint_is_a_png(env):
    path = env.write("photo.pt", encoded(Image.fromarray(noise()), "PNG"))
    return ["predict", "--checkpoint", str(path), an_image(env)], path.name


@case()
def predict_checkpoint_is_a_plain_state_dict(env):
    path = env.tmp / "weights.pt"
    torch.save({"fc.weight": torch.zeros(2, 512)}, path)
    return ["predict", "--checkpoint", str(path), an_image(env)], path.name


@case()
def predict_checkpoint_without_task(env):
    path = env.tmp / "hollow.pt"
    torch.save({"format": checkpoint.FORMAT}, path)
    return ["predict", "--checkpoint", str(path), an_image(env)], path.name


@case()
def predict_checkpoint_of_unknown_task(env):
    path = env.checkpoint(env.tmp / "gan.pt", task="train-gan")
    return ["predict", "--checkpoint", str(path), an_image(env)], "train-gan"


@case()
def predict_checkpoint_with_a_bad_config(env):
    config = env.hotdog_config()
    config["optim"]["lr"] = -1.0
    path = env.checkpoint(env.tmp / "odd.pt", config=config)
    return ["predict", "--checkpoint", str(path), an_image(env)], "optim.lr"


@case()
def predict_checkpoint_of_another_architecture(env):
    from cvtool.models.cifar import fastnet

    path = env.checkpoint(env.tmp / "fast.pt", model=fastnet(10, 4).state_dict())
    return ["predict", "--checkpoint", str(path), an_image(env)], path.name


@case()
def predict_image_missing(env):
    path = env.checkpoint(env.tmp / "best.pt")
    return ["predict", "--checkpoint", str(path), str(env.tmp / "dinner.png")], "dinner.png"


@case()
def predict_image_corrupt(env):
    path = env.checkpoint(env.tmp / "best.pt", model=hotdog_task.build_model(
        cfglib.from_dict(hotdog_task.Config, env.hotdog_config())).state_dict())
    image = env.write("dinner.png", CORRUPT)
    return ["predict", "--checkpoint", str(path), str(image), "--device", "cpu"], image.name


@case()
def predict_image_huge(env):
    path = env.checkpoint(env.tmp / "best.pt", model=hotdog_task.build_model(
        cfglib.from_dict(hotdog_task.Config, env.hotdog_config())).state_dict())
    image = env.write("banquet.jpg", huge_jpeg())
    return ["predict", "--checkpoint", str(path), str(image), "--device", "cpu"], image.name


@case()
def predict_device_cuda_7(env):
    path = env.checkpoint(env.tmp / "best.pt")
    return ["predict", "--checkpoint", str(path), an_image(env), "--device", "cuda:7"], "cuda:7"


def cifar_checkpoint(env) -> str:
    from cvtool.tasks import cifar

    return str(env.checkpoint(env.tmp / "cifar.pt", task="train-cifar", config=cfglib.to_dict(cifar.Config())))


@case()
def predict_kaggle_test_folder_missing(env):
    return ["predict", "--checkpoint", cifar_checkpoint(env), "--kaggle-test", str(env.tmp / "test")], "test"


@case()
def predict_kaggle_test_would_overwrite_a_submission(env):
    env.write("out/submission.csv", b"id,label\n")
    return ["predict", "--checkpoint", cifar_checkpoint(env), "--kaggle-test", str(env.empty_dir("test")),
            "--out", str(env.tmp / "out")], "submission.csv"


@case()
def predict_threshold_for_a_classifier(env):
    return ["predict", "--checkpoint", cifar_checkpoint(env), an_image(env), "--threshold", "0.5"], "--threshold"


# ---- resume into an existing run directory (which must stay as it was)


@case()
def resume_truncated_last(env):
    def cut(path: Path) -> None:
        env.checkpoint(path)
        path.write_bytes(truncated(path.read_bytes()))

    run = env.existing_run(cut)
    return env.resume(run), "last.pt"


@case()
def resume_zero_byte_last(env):
    run = env.existing_run(lambda path: path.write_bytes(b""))
    return env.resume(run), "last.pt"


@case()
def resume_last_runs_code(env):
    run = env.existing_run(lambda path: torch.save({"format": checkpoint.FORMAT,
                                                    "model": Evil(env.tmp / "pwned")}, path))
    return env.resume(run), "last.pt"


@case()
def resume_last_is_text(env):
    run = env.existing_run(lambda path: path.write_text("not a checkpoint\n"))
    return env.resume(run), "last.pt"


@case()
def resume_checkpoint_of_another_task(env):
    run = env.existing_run(lambda path: env.checkpoint(path, task="train-fcn"))
    return env.resume(run), "last.pt"


@case()
def resume_given_checkpoint_of_another_task(env):
    run = env.existing_run()
    other = env.checkpoint(env.tmp / "fcn-best.pt", task="train-fcn")
    return ["finetune-hotdog", "--resume", str(other), "--out", str(run)], "fcn-best.pt"


@case()
def resume_checkpoint_of_another_architecture(env):
    from cvtool.models.cifar import fastnet

    run = env.existing_run(lambda path: env.checkpoint(path, model=fastnet(10, 4).state_dict()))
    return env.resume(run), "last.pt"


@case()
def resume_nothing_to_resume(env):
    run = env.existing_run(lambda path: None)
    return env.resume(run), "last.pt"


@case()
def resume_with_cuda_7(env):
    run = env.existing_run()
    return env.resume(run, "--device", "cuda:7"), "cuda:7"


@case()
def resume_with_lr_zero(env):
    run = env.existing_run()
    return env.resume(run, "--set", "optim.lr=0"), "optim.lr"


@case()
def resume_with_unknown_key(env):
    run = env.existing_run()
    return env.resume(run, "--set", "optim.lrr=0.1"), "optim.lrr"


@case(code=3)
def resume_when_the_data_is_gone(env):
    run = env.existing_run()
    return env.resume(run, "--set", f"data.root={env.tmp / 'gone'}", "--set", "data.download=false"), str(env.tmp / "gone")


@case()
def resume_when_the_data_is_broken(env):
    run = env.existing_run()
    root = env.data("hotdog")
    shutil.rmtree(root / "test")
    return env.resume(run, "--set", f"data.root={root}"), str(root / "test")


@case()
def out_holds_a_run_without_resume(env):
    run = env.existing_run()
    return [*env.hotdog()[:-2], "--out", str(run)], str(run)


@case()
def out_is_a_file(env):
    path = env.write("results.txt", "keep me\n")
    return [*env.hotdog()[:-2], "--out", str(path)], path.name


# ---- the other commands


@case()
def config_validate_a_directory(env):
    folder = env.empty_dir("cfgs")
    return ["config", "validate", str(folder)], "cfgs"


@case()
def config_validate_bad_yaml(env):
    path = env.write("broken.yaml", "optim: {lr: 0.1\n")
    return ["config", "validate", str(path), "--task", "train-fcn"], path.name


@case()
def config_show_unknown_task(env):
    return ["config", "show", "train-gan"], "train-gan"


@case()
def data_synth_unknown_kind(env):
    return ["data", "synth", "penguins", "--out", str(env.tmp / "p")], "penguins"


@case()
def data_synth_into_a_full_folder(env):
    folder = env.tmp / "full"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    return ["data", "synth", "hotdog", "--out", str(folder), "--n", "1"], str(folder)


@case()
def data_fetch_unknown_dataset(env):
    return ["data", "fetch", "imagenet", "--root", str(env.tmp / "imagenet")], "imagenet"


# --------------------------------------------------------------------------- the test


@pytest.fixture(scope="session")
def pristine(tmp_path_factory, hotdog_root) -> dict[str, Path]:
    """One tiny dataset per task in its real layout; cases copy what they break."""
    from cvtool.data import bananas, kaggle_synth, voc

    base = tmp_path_factory.mktemp("pristine")
    return {
        "hotdog": hotdog_root,
        "bananas": bananas.synthesize(base / "bananas", n_train=4, n_val=2, size=64),
        "voc": voc.synthesize(base / "voc", n_train=2, n_val=2, size=32, classes=2),
        "cifar": kaggle_synth.synthesize_cifar(base / "cifar", n_train=20, n_test=2),
        "dogs": kaggle_synth.synthesize_dogs(base / "dogs", n_train=6, n_test=2, classes=3),
    }


def test_the_corpus_is_large():
    assert len(CASES) >= 60


def test_the_evil_pickle_really_runs_code(tmp_path):
    pickle.loads(pickle.dumps(Evil(tmp_path / "pwned")))
    assert (tmp_path / "pwned").exists()


@pytest.mark.parametrize("make, code", CASES)
def test_bad_input_is_one_line_naming_the_culprit(make, code, cli, pristine, tmp_path):
    env = Env(tmp_path, pristine)
    argv, culprit = make(env)
    before = {run: snapshot(run) for run in env.runs}
    got, out, err = cli(*argv)
    lines = err.strip().splitlines()
    assert got == code, err
    assert "Traceback" not in err + out
    assert len(lines) == 1, err
    assert lines[0].startswith("cvtool: error: ")
    assert culprit in lines[0]
    assert not (tmp_path / "pwned").exists()
    for run, files in before.items():
        assert snapshot(run) == files, f"{run} changed"


# --------------------------------------------------------------------------- odd image modes


def odd_images() -> dict[str, tuple[Image.Image, str]]:
    """Each odd mode as (image, file format) with known RGB pixels: see ``expected_rgb``."""
    rgb = noise(24, 20, 7)
    grey = rgb[..., 0]
    return {
        "CMYK": (Image.fromarray(rgb).convert("CMYK"), "TIFF"),
        "CMYK-jpeg": (Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "L": (Image.fromarray(grey), "PNG"),
        "L-jpeg": (Image.fromarray(grey), "JPEG"),
        "LA": (Image.fromarray(np.dstack([grey, 255 - grey]), "LA"), "PNG"),
        "RGBA": (Image.fromarray(np.dstack([rgb, grey])), "PNG"),
        "P": (Image.fromarray(rgb).quantize(16), "PNG"),
        "I;16": (Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
    }


def expected_rgb(img: Image.Image) -> np.ndarray:
    if img.mode == "I;16":
        return np.repeat((np.asarray(img) >> 8).astype(np.uint8)[..., None], 3, axis=2)
    if img.mode in ("LA", "RGBA"):  # as a viewer shows it: over white
        rgba = np.asarray(img.convert("RGBA")).astype(np.float64)
        alpha = rgba[..., 3:] / 255
        return np.round(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize("name", list(odd_images()))
def test_load_rgb_converts_odd_modes(name, tmp_path):
    from cvtool.data.images import load_rgb

    img, fmt = odd_images()[name]
    path = tmp_path / f"odd.{fmt.lower()}"
    img.save(path, fmt)
    with Image.open(path) as stored:
        assert stored.mode == img.mode
        want = expected_rgb(stored)
    got = load_rgb(path)
    assert got.mode == "RGB" and got.size == img.size
    np.testing.assert_array_equal(np.asarray(got), want)


def test_hotdog_loader_converts_odd_modes(hotdog_root, tmp_path):
    root = Path(shutil.copytree(hotdog_root, tmp_path / "hotdog"))
    folder = root / "train" / "hotdog"
    for name, (img, fmt) in odd_images().items():
        img.save(folder / f"odd-{name.replace(';', '')}.{'jpg' if fmt == 'JPEG' else fmt.lower()}", fmt)
    cfg = cfglib.load(hotdog_task.Config, None, [f"data.root={root}", *HOTDOG_SETS])
    task = hotdog_task.build(cfg)
    odd = [i for i, (path, _) in enumerate(task.train_data.samples) if path.name.startswith("odd-")]
    assert len(odd) == len(odd_images())
    for i in odd:
        x, label = task.train_data[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and label == 0
        assert torch.isfinite(x).all()


def test_dog_loader_converts_odd_modes(tmp_path):
    from cvtool.data import kaggle, kaggle_synth
    from cvtool.tasks import dog

    root = kaggle_synth.synthesize_dogs(tmp_path / "dogs", n_train=len(odd_images()) * 2, n_test=1, classes=2)
    files = kaggle.read_labels(root, kaggle.DOGS).files
    for path, (img, fmt) in zip(files, odd_images().values()):
        img.save(path, fmt)
    cfg = cfglib.load(dog.Config, None, [f"data.root={root}", "data.tiny=false", "model.num_classes=2",
                                         "model.weights=none", "data.image_size=32", "data.resize=36",
                                         "data.augment=false", "data.num_workers=0"])
    task = dog.build(cfg)
    seen = 0
    for data in (task.train_data, task.val_data):
        for i in range(len(data)):
            x, _ = data[i]
            assert x.shape == (3, 32, 32) and torch.isfinite(x).all()
            seen += 1
    assert seen == len(files)


@pytest.mark.parametrize("name", ["L", "LA", "RGBA", "P", "I;16"])
def test_cifar_decoder_converts_odd_modes(name, tmp_path):
    from cvtool.data import cifar10

    rgb = noise(32, 32, 9)
    grey = rgb[..., 0]
    img = {"L": Image.fromarray(grey), "LA": Image.fromarray(np.dstack([grey, grey]), "LA"),
           "RGBA": Image.fromarray(np.dstack([rgb, grey])), "P": Image.fromarray(rgb).quantize(16),
           "I;16": Image.fromarray(grey.astype(np.uint16) * 257 + 200)}[name]
    path = tmp_path / "1.png"
    img.save(path)
    got = cifar10.decode_cifar_png(path)
    assert got.dtype == torch.uint8 and got.shape == (3, 32, 32)
    with Image.open(path) as stored:
        want = expected_rgb(stored)
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), want)


def test_a_damaged_cifar_cache_is_rebuilt(pristine, tmp_path):
    from cvtool.data import cifar10, kaggle

    labeled = kaggle.read_labels(pristine["cifar"], kaggle.CIFAR)
    images, path = cifar10.cached_train_images(labeled, tmp_path)
    path.write_bytes(b"these are not tensors\n")
    again, rebuilt = cifar10.cached_train_images(labeled, tmp_path)
    assert rebuilt == path and torch.equal(again, images)
