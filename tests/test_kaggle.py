"""The Kaggle data layer: split, CSV checks, the decoded-image cache, submissions, batch augmentation."""

from __future__ import annotations

import csv
import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cvtool.data import batch_augment as ba
from cvtool.data import cifar10, datasets, decoded_cache, kaggle, kaggle_synth
from cvtool.errors import InputError, MissingResource


@pytest.fixture(scope="session")
def cifar_src(tmp_path_factory) -> Path:
    return kaggle_synth.synthesize_cifar(tmp_path_factory.mktemp("data") / "cifar", n_train=40, n_test=7, seed=1)


@pytest.fixture
def cifar_root(cifar_src, tmp_path) -> Path:
    """A private copy the test may edit."""
    return Path(shutil.copytree(cifar_src, tmp_path / "cifar"))


def write_labels(root: Path, rows: list[str], header: str = "id,label") -> Path:
    path = root / "trainLabels.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


# --------------------------------------------------------------------------- split


def test_stratified_split_takes_a_fraction_of_every_class():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20 + [3] * 7 + [4] * 1)[torch.randperm(108)]
    train, val = kaggle.stratified_split(labels, 0.1, seed=3)
    assert torch.bincount(labels[val], minlength=5).tolist() == [5, 3, 2, 1, 0]
    assert sorted(torch.cat([train, val]).tolist()) == list(range(108))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_stratified_split_is_a_function_of_the_seed():
    labels = torch.arange(200) % 4
    a = kaggle.stratified_split(labels, 0.2, seed=7)
    b = kaggle.stratified_split(labels, 0.2, seed=7)
    c = kaggle.stratified_split(labels, 0.2, seed=8)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])
    assert torch.bincount(labels[c[1]]).tolist() == [10, 10, 10, 10]


def test_train_valid_trains_on_everything():
    train, val = kaggle.split_indices(torch.arange(10) % 2, "train_valid", 0.3, 0)
    assert train.tolist() == list(range(10)) and val.numel() == 0


# --------------------------------------------------------------------------- CSV checks


def test_read_labels_matches_the_csv(cifar_root):
    labeled = kaggle.read_labels(cifar_root, kaggle.CIFAR)
    rows = list(csv.reader(open(cifar_root / "trainLabels.csv")))[1:]
    assert labeled.classes == list(kaggle.CIFAR10_CLASSES)
    assert labeled.ids == [r[0] for r in rows]
    assert [labeled.classes[i] for i in labeled.labels.tolist()] == [r[1] for r in rows]
    assert labeled.files[0] == cifar_root / "train" / f"{rows[0][0]}.png"


@pytest.mark.parametrize("rows, message", [
    (["1,cat", "2,dog", "1,bird"], "line 4: duplicate id 1 (first on line 2)"),
    (["1,cat", "999,dog"], "line 3: unknown id 999: no image train/999.png"),
    (["1,cat", "2,zebra"], "line 3: label 'zebra' is not a known class"),
    (["1,cat", ",dog"], "line 3: missing id"),
    (["1,cat", "2,dog,extra"], "line 3: expected 2 fields"),
    (["1,cat", "2,"], "line 3: id 2 has no label"),
])
def test_bad_label_rows_name_file_and_line(cifar_root, rows, message):
    path = write_labels(cifar_root, rows)
    with pytest.raises(InputError) as err:
        kaggle.read_labels(cifar_root, kaggle.CIFAR)
    assert str(path) in str(err.value) and message in str(err.value)


def test_bad_header_is_line_1(cifar_root):
    write_labels(cifar_root, ["1,cat"], header="image,class")
    with pytest.raises(InputError, match="trainLabels.csv line 1: header must be id,label"):
        kaggle.read_labels(cifar_root, kaggle.CIFAR)


def test_missing_csv_is_a_missing_resource(cifar_root):
    (cifar_root / "trainLabels.csv").unlink()
    with pytest.raises(MissingResource, match="trainLabels.csv does not exist"):
        kaggle.read_labels(cifar_root, kaggle.CIFAR)


def test_dog_breeds_come_from_the_sample_submission(tmp_path):
    root = kaggle_synth.synthesize_dogs(tmp_path / "dogs", n_train=6, n_test=2, classes=3, seed=0)
    labeled = kaggle.read_labels(root, kaggle.DOGS)
    assert labeled.classes == ["breed_000", "breed_001", "breed_002"]
    first = (root / "labels.csv").read_text().splitlines()[1].split(",")[0]
    (root / "labels.csv").write_text(f"id,breed\n{first},poodle\n")
    with pytest.raises(InputError, match=r"labels.csv line 2: breed 'poodle' is not a known class"):
        kaggle.read_labels(root, kaggle.DOGS)


def test_synthetic_dogs_have_varied_sizes_and_kaggle_columns(tmp_path):
    root = kaggle_synth.synthesize_dogs(tmp_path / "dogs", n_train=8, n_test=3, classes=4, seed=2)
    sizes = {Image.open(p).size for p in (root / "train").iterdir()}
    assert len(sizes) > 4 and all(Image.open(p).format == "JPEG" for p in (root / "test").iterdir())
    header = (root / "sample_submission.csv").read_text().splitlines()[0].split(",")
    assert header == ["id", "breed_000", "breed_001", "breed_002", "breed_003"]
    assert len(kaggle.test_ids(root / "test", kaggle.DOGS)) == 3


# --------------------------------------------------------------------------- decoding and cache


def test_non_png_and_corrupt_and_wrong_size_images_are_named(cifar_root):
    labeled = kaggle.read_labels(cifar_root, kaggle.CIFAR)
    bad = labeled.files[2]
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="JPEG")
    cases = [(buf.getvalue(), "is not a PNG image"), (cifar10.PNG_SIGNATURE + b"junk", "not a readable PNG")]
    for content, message in cases:
        bad.write_bytes(content)
        with pytest.raises(InputError, match=message) as err:
            cifar10.cached_train_images(labeled)
        assert str(bad) in str(err.value)
    Image.new("RGB", (16, 16)).save(bad)
    with pytest.raises(InputError, match="is 16x16 pixels"):
        cifar10.cached_train_images(labeled)


def test_cache_is_reused_then_rebuilt_when_the_folder_changes(cifar_root, monkeypatch):
    calls = []
    real = cifar10.decode_cifar_png
    monkeypatch.setattr(cifar10, "decode_cifar_png", lambda p: calls.append(p) or real(p))
    labeled = kaggle.read_labels(cifar_root, kaggle.CIFAR)
    first, path = cifar10.cached_train_images(labeled)
    assert len(calls) == 40 and path.parent == cifar_root / ".cvtool-cache"
    assert first.shape == (40, 3, 32, 32) and first.dtype == torch.uint8
    expected = torch.from_numpy(np.array(Image.open(labeled.files[5]).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(first[5], expected)

    again, path2 = cifar10.cached_train_images(labeled)
    assert len(calls) == 40 and path2 == path and torch.equal(again, first)

    Image.new("RGB", (32, 32), (255, 0, 0)).save(labeled.files[5])
    os.utime(labeled.files[5], ns=(1, 1))
    rebuilt, path3 = cifar10.cached_train_images(labeled)
    assert len(calls) == 80 and path3 != path and not path.exists()
    assert rebuilt[5, 0].eq(255).all() and rebuilt[5, 1:].eq(0).all()
    assert torch.equal(rebuilt[:5], first[:5])


def test_cache_follows_the_csv_order(cifar_root):
    labeled = kaggle.read_labels(cifar_root, kaggle.CIFAR)
    images, _ = cifar10.cached_train_images(labeled)
    rows = (cifar_root / "trainLabels.csv").read_text().splitlines()
    write_labels(cifar_root, rows[1:][::-1])
    reversed_rows = kaggle.read_labels(cifar_root, kaggle.CIFAR)
    again, _ = cifar10.cached_train_images(reversed_rows)
    assert torch.equal(again, images.flip(0))


def test_read_only_data_caches_under_xdg(cifar_root, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real = decoded_cache.writable
    monkeypatch.setattr(decoded_cache, "writable", lambda d: d != cifar_root / ".cvtool-cache" and real(d))
    _, path = cifar10.cached_train_images(kaggle.read_labels(cifar_root, kaggle.CIFAR))
    assert path.is_relative_to(tmp_path / "xdg" / "cvtool") and path.is_file()


def test_test_chunks_cover_every_id_once_in_numeric_order(cifar_root):
    for i in (8, 9, 10, 11):
        shutil.copy(cifar_root / "test" / "1.png", cifar_root / "test" / f"{i}.png")
    seen = []
    progress = []
    for ids, images in cifar10.cifar_test_chunks(cifar_root / "test", chunk=3, progress=lambda d, t: progress.append(d)):
        assert images.shape == (len(ids), 3, 32, 32) and len(ids) <= 3
        seen += ids
    assert seen == [str(i) for i in range(1, 12)]
    assert progress[-1] == 11


# --------------------------------------------------------------------------- torchvision layout


def write_batch(path: Path, n: int, seed: int, payload=None) -> None:
    rng = np.random.default_rng(seed)
    blob = payload or {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
    path.write_bytes(pickle.dumps(blob, protocol=2))


def test_torchvision_batches_are_read_safely(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        write_batch(folder / f"data_batch_{i}", 3, i)
    write_batch(folder / "test_batch", 4, 9)
    assert cifar10.torchvision_folder(tmp_path) == folder
    images, labels, test_images, test_labels = cifar10.read_torchvision_cifar(folder)
    assert images.shape == (15, 3, 32, 32) and labels.shape == (15,) and test_images.shape == (4, 3, 32, 32)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    write_batch(folder / "test_batch", 0, 0, payload={"data": Evil(), "labels": []})
    with pytest.raises(InputError, match="refusing to load"):
        cifar10.read_torchvision_cifar(folder)


# --------------------------------------------------------------------------- locating


def test_missing_full_set_explains_where_to_get_it(tmp_path):
    with pytest.raises(MissingResource) as err:
        kaggle.locate(tmp_path / "cifar-10", kaggle.CIFAR, download=True, tiny=False)
    assert "kaggle.com/c/cifar-10" in str(err.value) and "trainLabels.csv" in str(err.value)


def test_missing_tiny_set_without_download_says_how_to_fetch(tmp_path):
    with pytest.raises(MissingResource, match="cvtool data fetch dog_tiny"):
        kaggle.locate(tmp_path / "kaggle_dog_tiny", kaggle.DOGS, download=False, tiny=True)


# --------------------------------------------------------------------------- submissions and batches


def test_probability_rows_sum_to_one_and_writes_are_atomic(tmp_path):
    probs = torch.softmax(torch.randn(5, 7) * 4, 1).float()
    with kaggle.SubmissionWriter(tmp_path / "submission.csv", ("id", *"abcdefg")) as out:
        out.probabilities([f"x{i}" for i in range(5)], probs)
    rows = list(csv.reader(open(tmp_path / "submission.csv")))
    assert rows[0] == ["id", *"abcdefg"] and [r[0] for r in rows[1:]] == [f"x{i}" for i in range(5)]
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert np.allclose(values.sum(1), 1, atol=1e-6) and np.allclose(values, probs.numpy(), atol=1e-6)

    with pytest.raises(RuntimeError):
        with kaggle.SubmissionWriter(tmp_path / "other.csv", ("id", "label")) as out:
            out.labels(["1"], ["cat"])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [tmp_path / "submission.csv"]


def test_submission_columns_follow_the_sample_order():
    assert kaggle.submission_columns(["a", "b", "c"], ["c", "a", "b"]) == [2, 0, 1]
    assert kaggle.submission_columns(["a", "b"], None) == [0, 1]
    with pytest.raises(InputError, match="differ from the model's 2 classes"):
        kaggle.submission_columns(["a", "b"], ["a", "z"])


def test_tensor_batches_gather_whole_batches():
    data = datasets.TensorBatches(torch.arange(20).view(10, 2), torch.arange(10))
    batches = list(DataLoader(data, batch_size=4, shuffle=False, collate_fn=datasets.collate))
    assert [type(b) for b in batches] == [datasets.Batch] * 3
    x, y = batches[1]
    assert y.tolist() == [4, 5, 6, 7] and x.tolist() == [[8, 9], [10, 11], [12, 13], [14, 15]]
    assert data[3][1].item() == 3


# --------------------------------------------------------------------------- batch augmentation


def test_flip_and_identity_crop():
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(ba.hflip(x, p=1.0), x.flip(3)) and torch.equal(ba.hflip(x, p=0.0), x)
    assert torch.allclose(ba.resized_crop(x, (1.0, 1.0)), x, atol=1e-5)


def test_resized_crop_zooms_in_by_at_most_the_scale():
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 32).expand(64, 1, 32, 32).contiguous()
    out = ba.resized_crop(x, (0.64, 0.64))
    span = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    full = x[0, 0, 0, -1] - x[0, 0, 0, 0]
    assert torch.allclose(span, torch.full_like(span, 0.8 * full.item()), atol=0.02)
    assert out.min() >= 0 and out.max() <= 1


def test_resized_crop_samples_in_float32_under_autocast():
    """A bf16 sampling grid (autocast's choice for affine_grid) lands up to 1/16 px off."""
    x = torch.rand(8, 3, 32, 32)
    torch.manual_seed(0)
    plain = ba.resized_crop(x, (0.64, 1.0))
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ba.resized_crop(x, (0.64, 1.0))
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain, rtol=0, atol=1e-6)


def test_translate_shifts_within_the_padding():
    torch.manual_seed(0)
    x = torch.randint(0, 255, (16, 3, 12, 12), dtype=torch.uint8)
    out = ba.translate(x, 2)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    shifts = set()
    for b in range(16):
        match = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(padded[b, :, dy:dy + 12, dx:dx + 12], out[b].float())]
        assert match
        shifts.add(match[0])
    assert len(shifts) > 3


def test_batch_augment_normalises_and_only_randomises_training():
    aug = ba.BatchAugment("book", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    assert torch.allclose(aug(x, train=False), torch.full((2, 3, 4, 4), 2.0))
    y = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(aug(y, train=False), aug(y, train=False))
    assert not torch.equal(aug(y, train=True), aug(y, train=False))


def test_a_tiny_sample_may_list_more_ids_than_it_has_images(tmp_path):
    root = kaggle_synth.synthesize_dogs(tmp_path / "dogs", n_train=12, n_test=2, classes=3, seed=1)
    with open(root / "labels.csv", "a", encoding="utf-8") as fh:
        fh.write("ffffffffffffffffffffffffffffffff,breed_000\n")
    with pytest.raises(InputError, match="unknown id ffff"):
        kaggle.read_labels(root, kaggle.DOGS)
    assert len(kaggle.read_labels(root, kaggle.DOGS, sample=True).ids) == 12
