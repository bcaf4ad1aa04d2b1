"""Checkpointed random generators: one state per process, restored per rank, CUDA left alone off CUDA."""

from __future__ import annotations

import random

import pytest
import torch
import torch.multiprocessing as mp

from cvtool.engine import checkpoint


def draws() -> tuple[list[float], float]:
    return torch.rand(4).tolist(), random.random()


def test_round_trip_through_a_file_restores_both_generators(tmp_path):
    torch.manual_seed(1)
    random.seed(1)
    path = tmp_path / "last.pt"
    checkpoint.save({"format": checkpoint.FORMAT, "task": "t", "model": {}, "rng": checkpoint.all_rng_states()}, path)
    expected = draws()
    rng = checkpoint.load(path)["rng"]
    assert len(rng["ranks"]) == 1
    assert checkpoint.set_rng_state(rng) is True
    assert draws() == expected


def test_each_rank_restores_its_own_state_and_extra_ranks_keep_theirs():
    states = []
    for seed in (10, 11):
        torch.manual_seed(seed)
        random.seed(seed)
        states.append(checkpoint.rng_state()["ranks"][0])
    saved = {**states[0], "ranks": states}
    for rank, seed in ((1, 11), (0, 10)):
        torch.manual_seed(seed)
        random.seed(seed)
        expected = draws()
        torch.manual_seed(99)
        assert checkpoint.set_rng_state(saved, rank) is True
        assert draws() == expected
    torch.manual_seed(5)  # a rank the checkpoint does not know (it came from fewer processes)
    before = torch.get_rng_state()
    assert checkpoint.set_rng_state(saved, 2) is False
    assert torch.equal(torch.get_rng_state(), before)


def test_a_checkpoint_from_before_per_rank_states_restores_rank_0():
    torch.manual_seed(3)
    random.seed(3)
    legacy = {"torch": torch.get_rng_state(), "python": random.getstate()}
    expected = draws()
    assert checkpoint.set_rng_state(legacy, 0) is True and draws() == expected
    assert checkpoint.set_rng_state(legacy, 1) is False


def test_a_cpu_run_never_touches_cuda(monkeypatch):
    """Even where CUDA exists: reading or setting its generators would create a context."""
    def refuse(*args, **kwargs):
        raise AssertionError("CUDA touched in a CPU run")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    for name in ("get_rng_state_all", "set_rng_state_all", "get_rng_state", "set_rng_state", "device_count"):
        monkeypatch.setattr(torch.cuda, name, refuse)
    state = checkpoint.all_rng_states()
    assert "cuda" not in state and "cuda" not in state["ranks"][0]
    assert checkpoint.set_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)]}) is True


def test_a_checkpoint_from_a_machine_with_more_gpus_restores_the_devices_present(monkeypatch):
    restored = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((device, int(state[0]))))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("would index missing GPUs"))
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "cuda": [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]}
    assert checkpoint.set_rng_state({**state, "ranks": [state]}) is True
    assert restored == [(0, 0), (1, 1)]


def gloo_worker(rank: int, world: int, init: str, out: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)
        random.seed(100 + rank)
        saved = checkpoint.all_rng_states()
        expected = draws()
        box = [saved]
        dist.broadcast_object_list(box, src=0)  # what every rank reads back from rank 0's file
        torch.manual_seed(0)
        random.seed(0)
        restored = checkpoint.set_rng_state(box[0])
        out[rank] = (saved is None if rank else len(saved["ranks"]), restored, draws() == expected, expected)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_each_resume_their_own_streams(tmp_path):
    out = mp.Manager().dict()
    mp.spawn(gloo_worker, args=(2, f"file://{tmp_path / 'store'}", out), nprocs=2)
    assert out[0][:3] == (2, True, True)
    assert out[1][:3] == (True, True, True)
    assert out[0][3] != out[1][3]  # the two ranks' streams differ (rank 1 does not replay rank 0's)
