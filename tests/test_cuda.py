"""What only a CUDA GPU can show (issue 21): syncs, precision, determinism, resume, compile, NCCL.

Marked ``cuda`` and skipped without a GPU; ``make gpu-check`` runs them (about a minute on
one H100). They use the public entry points only (each task's build(), the Trainer, the
CLI through the ``cli`` fixture, stylize()), so code moving between modules keeps them valid.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from cvtool import config as cfglib
from cvtool.tasks import registry
from cvtool.engine import runtime, trainer
from cvtool.engine.progress import Reporter

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda", 0)


# --------------------------------------------------------------------------- tiny data and settings


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from cvtool.data import bananas, hotdog, kaggle_synth, voc

    root = tmp_path_factory.mktemp("cuda-data")
    return {"cifar": kaggle_synth.synthesize_cifar(root / "cifar", n_train=96, n_test=1),
            "voc": voc.synthesize(root / "voc", n_train=8, n_val=2, size=64),
            "bananas": bananas.synthesize(root / "bananas", n_train=16, n_val=4, size=64),
            "hotdog": hotdog.synthesize(root / "hotdog", n=8, size=40),
            "dogs": kaggle_synth.synthesize_dogs(root / "dogs", n_train=16, n_test=1, classes=4)}


def settings(command: str, data: dict[str, Path], tmp: Path) -> list[str]:
    """Seconds-long settings per command: tiny models, batches of 4 to 16, no downloads."""
    common = ["data.download=false", "train.device=cuda", "data.num_workers=0"]
    per = {
        "train-cifar": [f"data.root={data['cifar']}", "data.tiny=false", "data.split=train_valid",
                        f"data.cache_dir={tmp / 'cifar-cache'}", "data.on_device=true", "model.arch=fastnet",
                        "model.width=16", "data.batch_size=16"],
        "train-fcn": [f"data.root={data['voc']}", "model.weights=none", "data.crop_size=[48, 64]", "model.width=8",
                      "model.num_classes=6", "data.batch_size=4"],
        "train-ssd": [f"data.root={data['bananas']}", "data.image_size=64", "model.width=0.25", "data.flip=true",
                      "data.batch_size=4"],
        "finetune-hotdog": [f"data.root={data['hotdog']}", "model.weights=none", "data.image_size=32",
                            "data.resize=36", "data.batch_size=4"],
        "train-dog": [f"data.root={data['dogs']}", "data.tiny=false", "data.split=train_valid", "model.weights=none",
                      "model.num_classes=4", "data.image_size=32", "data.resize=36", "data.batch_size=4"],
    }
    return [*common, *per[command]]


def cli_args(sets: list[str]) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


def make_trainer(command: str, sets: list[str], run_dir: Path) -> trainer.Trainer:
    runtime.seed_everything(0)
    cfg = cfglib.load(registry.get(command).config, None, sets)
    task = registry.get(command).build(cfg)
    return trainer.Trainer(task, trainer.Run(run_dir=run_dir, device=CUDA, argv=[]), Reporter(quiet=True))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")["model"]


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == [], f"{len(different)} tensors differ, first {different[:3]}"


# --------------------------------------------------------------------------- syncs


SYNC_FREE = {
    "train-cifar": ['train.amp="bf16"', "train.channels_last=true"],
    "train-fcn": ['train.amp="bf16"'],
    "train-ssd": ['train.amp="bf16"'],
}


@pytest.mark.parametrize("command", sorted(SYNC_FREE))
def test_train_steps_do_not_wait_for_the_gpu(command, data, tmp_path):
    """Fetching a batch and one update, after two warm-up steps, under sync debug mode "error"."""
    fit = make_trainer(command, settings(command, data, tmp_path) + SYNC_FREE[command], tmp_path / "run")
    (fit.task.train_mode or torch.nn.Module.train)(fit.model)
    fit.sampler.set_epoch(1)
    batches = iter(fit.train_loader)
    for _ in range(2):
        fit.train_step(next(batches), 0, 1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            out = fit.train_step(next(batches), 0, 1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.loss).item()


# --------------------------------------------------------------------------- stylize precision


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> tuple[Path, Path]:
    import numpy as np

    from cvtool.data.textures import background

    folder = tmp_path_factory.mktemp("pictures")
    paths = folder / "content.png", folder / "style.png"
    for seed, path in enumerate(paths):
        background(np.random.default_rng(seed), 512, 512).save(path)
    return paths


def stylize_run(pictures, tmp_path: Path, size: int, amp: str, steps: int = 40) -> dict:
    from cvtool.tasks import stylize as st

    cfg = cfglib.load(st.Config, None, ["model.weights=none", f"image.size=[{size}, {size}]", f"optim.steps={steps}",
                                        "run.device=cuda", f'run.amp="{amp}"'])
    return st.stylize(cfg, *pictures, tmp_path / f"{size}-{amp}.png")


@pytest.mark.parametrize("size", [128, 512])
def test_stylize_bf16_and_fp16_finish_with_finite_losses_near_fp32(size, pictures, tmp_path):
    full = stylize_run(pictures, tmp_path, size, "off")
    for amp in ("bf16", "fp16"):
        result = stylize_run(pictures, tmp_path, size, amp)
        assert result["status"] == "completed" and result["steps"] == 40, amp
        assert all(math.isfinite(v) for v in result["final"].values()), (amp, result["final"])
        if amp == "bf16":
            assert result["final"]["total"] == pytest.approx(full["final"]["total"], rel=0.02), result["final"]


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
def test_stylize_style_grams_are_float32_products(amp, pictures):
    """The targets' Gram matrices equal fp32 products of the (autocast) features, not half-precision ones."""
    from cvtool.models import vgg
    from cvtool.ops.style import gram
    from cvtool.tasks import stylize as st
    from cvtool.tasks import stylize_images as images
    from cvtool.tasks.stylize_loop import compute_targets

    cfg = cfglib.load(st.Config, None, ["model.weights=none"])
    torch.manual_seed(0)
    net = vgg.vgg19_features("none", [*cfg.model.style_layers, *cfg.model.content_layers]).to(CUDA)
    image = images.normalize(images.resize(images.read_image(pictures[1], "style"), (512, 512))).to(CUDA)
    targets = compute_targets(net, image, image, cfg.model, CUDA, amp)
    with torch.no_grad(), runtime.autocast(CUDA, amp):
        feats = net(image)
    for i, g in targets.grams.items():
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), i
        torch.testing.assert_close(g, gram(feats[i].float()), rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- determinism and resume


@pytest.mark.parametrize("command", ["train-cifar", "train-fcn", "train-ssd", "finetune-hotdog", "train-dog"])
def test_deterministic_runs_are_bitwise_equal(command, data, tmp_path, cli):
    sets = settings(command, data, tmp_path) + ["train.deterministic=true", 'train.amp="bf16"']
    for name in ("a", "b"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code, _, err = cli(command, *cli_args(sets), "--epochs", "1", "--max-steps", "4", "--out", tmp_path / name)
        assert code == 0, err
        loose = [str(w.message) for w in caught if "deterministic" in str(w.message)]
        assert loose == [], loose[0] if loose else ""
    assert_bitwise_equal(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_resume_on_cuda_equals_an_uninterrupted_run(data, tmp_path, cli):
    """CIFAR on the device draws its augmentation from the CUDA generator, which the checkpoint must carry."""
    sets = settings("train-cifar", data, tmp_path) + ["train.deterministic=true", "data.augment=flip_translate"]
    args = [*cli_args(sets), "--max-steps", "3"]
    code, _, err = cli("train-cifar", *args, "--epochs", "2", "--out", tmp_path / "straight")
    assert code == 0, err
    code, _, err = cli("train-cifar", *args, "--epochs", "1", "--out", tmp_path / "split")
    assert code == 0, err
    code, _, err = cli("train-cifar", *args, "--epochs", "2", "--resume", "--out", tmp_path / "split")
    assert code == 0, err
    assert_bitwise_equal(weights(tmp_path / "straight"), weights(tmp_path / "split"))


def test_resume_with_another_amp_continues(data, tmp_path, cli):
    """off -> fp16 starts a fresh GradScaler; fp16 -> off drops the saved one."""
    sets = settings("train-cifar", data, tmp_path)
    args = [*cli_args(sets), "--max-steps", "2", "--out", tmp_path / "run"]
    for epochs, amp in enumerate(("off", "fp16", "off"), start=1):
        code, _, err = cli("train-cifar", *args, "--set", f'train.amp="{amp}"', "--epochs", epochs,
                           *(["--resume"] if epochs > 1 else []))
        assert code == 0, (amp, err)


# --------------------------------------------------------------------------- compile


def test_tinyssd_under_inductor_compiles_at_most_three_times_and_matches_eager():
    from torch._dynamo.utils import counters

    from cvtool.models.tinyssd import TinySSD

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = TinySSD(num_classes=1, width=0.5).to(CUDA)
    net = torch.compile(model)
    for batch in (4, 4, 3):
        x = torch.randn(batch, 3, 128, 128, device=CUDA)
        for a, b in zip(net(x), model(x)):
            torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)
    model.eval()
    with torch.no_grad():
        for a, b in zip(net(x), model(x)):
            torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)
    assert counters["stats"]["unique_graphs"] <= 3, dict(counters["stats"])


# --------------------------------------------------------------------------- precision per task


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("command", ["finetune-hotdog", "train-ssd", "train-fcn", "train-cifar", "train-dog"])
def test_each_task_trains_in_fp32_master_weights_with_a_float32_loss(command, amp, data, tmp_path):
    fit = make_trainer(command, settings(command, data, tmp_path) + [f'train.amp="{amp}"'], tmp_path / "run")
    assert fit.scaler.is_enabled() == (amp == "fp16")
    (fit.task.train_mode or torch.nn.Module.train)(fit.model)
    fit.sampler.set_epoch(1)
    for batch, _ in zip(fit.train_loader, range(3)):
        out = fit.train_step(batch, 0, 1)
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss).item(), (command, amp)
    params = [p for p in fit.model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in params)
    if amp == "fp16":
        assert fit.scaler.get_scale() > 0


# --------------------------------------------------------------------------- NCCL


def test_one_nccl_process_group_through_the_trainer(data, tmp_path):
    """World size 1 but the distributed path: DDP, NCCL all-reduces, broadcasts and the RNG gather."""
    import torch.distributed as dist

    class OneOfOne(runtime.Processes):
        @property
        def distributed(self) -> bool:
            return True

    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.cuda.set_device(CUDA)
        cfg = cfglib.load(registry.get("train-ssd").config, None,
                          settings("train-ssd", data, tmp_path) + ["train.epochs=1", "train.max_steps=3"])
        runtime.seed_everything(0)
        run = trainer.Run(run_dir=tmp_path / "run", device=CUDA, argv=[], procs=OneOfOne())
        summary = trainer.Trainer(registry.get("train-ssd").build(cfg), run, Reporter(quiet=True)).fit()
    finally:
        dist.destroy_process_group()
    assert summary["status"] == "completed"
    assert len(torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["rng"]["ranks"]) == 1
