"""Device choice under torchrun, the process-group timeout and the deterministic settings (issue 21).

No GPU needed: CUDA's presence is faked where only the choice of device is tested.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch

from cvtool import config as cfglib
from cvtool.data import kaggle_synth
from cvtool.engine import run as runlib
from cvtool.engine import runtime
from cvtool.errors import InputError
from cvtool.tasks import cifar, dog, hotdog


@pytest.fixture
def four_gpus_rank_2(monkeypatch):
    """This process as torchrun's rank 2 of 4 on a machine with four (pretended) GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    for name, value in {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "2"}.items():
        monkeypatch.setenv(name, value)


def test_each_rank_takes_the_gpu_of_its_local_rank(four_gpus_rank_2):
    assert runtime.local_device("cuda") == torch.device("cuda", 2)
    assert runtime.local_device("auto") == torch.device("cuda", 2)
    assert runtime.local_device("cpu") == torch.device("cpu")


def test_a_numbered_gpu_under_torchrun_is_refused(four_gpus_rank_2):
    with pytest.raises(InputError, match="use --device cuda"):
        runtime.local_device("cuda:1")
    assert runtime.select_device("cuda:1") == torch.device("cuda", 1)  # one process: as asked


def test_cifar_keeps_its_on_device_data_on_this_ranks_gpu(four_gpus_rank_2):
    cfg = cfglib.load(cifar.Config, None, ["train.device=cuda"])
    assert cifar.data_device(cfg) == torch.device("cuda", 2)


def test_dog_caches_features_on_this_ranks_gpu(four_gpus_rank_2, tmp_path, monkeypatch):
    root = kaggle_synth.synthesize_dogs(tmp_path / "dogs", n_train=12, n_test=1, classes=3, seed=5)
    used = []

    def features(model, dataset, cfg, device):
        used.append(device)
        return torch.zeros(len(dataset), 8), dataset.targets

    monkeypatch.setattr(dog, "backbone_features", features)
    cfg = cfglib.load(dog.Config, None, [f"data.root={root}", "data.tiny=false", "model.weights=none",
                                         "model.num_classes=3", "train.device=cuda", "finetune.cache_features=true",
                                         "data.augment=false", "finetune.mode=frozen"])
    dog.build(cfg)
    assert used == [torch.device("cuda", 2)] * 2


def test_the_process_group_waits_as_long_as_configured(monkeypatch):
    joined = {}
    monkeypatch.setattr(runtime.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(runtime.dist, "init_process_group", lambda backend, **kw: joined.update(backend=backend, **kw))
    monkeypatch.delenv(runtime.DIST_TIMEOUT_ENV, raising=False)
    runtime.init_processes(runtime.Processes(rank=1, world=2), torch.device("cpu"))
    assert joined == {"backend": "gloo", "timeout": timedelta(hours=2)}
    monkeypatch.setenv(runtime.DIST_TIMEOUT_ENV, "90")
    assert runtime.dist_timeout() == timedelta(seconds=90)
    for bad in ("soon", "0", "-5"):
        monkeypatch.setenv(runtime.DIST_TIMEOUT_ENV, bad)
        with pytest.raises(InputError, match="CVTOOL_DIST_TIMEOUT"):
            runtime.init_processes(runtime.Processes(rank=1, world=2), torch.device("cpu"))


@pytest.fixture
def restore_determinism():
    yield
    runtime.configure(torch.device("cpu"), deterministic=False)


def test_deterministic_raises_where_no_deterministic_kernel_exists(restore_determinism, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    runtime.configure(torch.device("cpu"), deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert runtime.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    runtime.configure(torch.device("cpu"), deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()  # the next run in this process is not bound


def test_a_deterministic_run_is_set_up_before_the_task_is_built(restore_determinism, monkeypatch, tmp_path):
    """train-dog's feature cache runs cuBLAS inside build, which reads CUBLAS_WORKSPACE_CONFIG once."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = {}

    def build(cfg, rank_zero=True):
        seen.update(env=runtime.os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                    deterministic=torch.are_deterministic_algorithms_enabled())
        raise InputError("built")

    cfg = cfglib.load(hotdog.Config, None, ["train.deterministic=true", "train.device=cpu"])
    with pytest.raises(InputError, match="built"):
        runlib.train("finetune-hotdog", build, cfg, out=str(tmp_path / "run"), argv=[], stream=None)
    assert seen == {"env": ":4096:8", "deterministic": True}
