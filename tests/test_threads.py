"""The thread policy and CPU defaults: precedence, /proc parsing and the adaptation's decisions,
all on fake readings (deterministic), plus what a run records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cvtool
from cvtool import config as cfglib
from cvtool.engine import placement, runtime, threads
from cvtool.engine.threads import Adapter, Choice, Policy, ProcReader, Sample


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- precedence


def test_an_explicit_setting_wins_over_omp_num_threads_and_is_never_adapted():
    choice = threads.choose(3, workers=2, cpus=8, environ={"OMP_NUM_THREADS": "1"}, platform="linux")
    assert (choice.threads, choice.source, choice.adaptive) == (3, "train.threads", False)


def test_omp_num_threads_replaces_auto_and_is_never_adapted():
    choice = threads.choose("auto", workers=2, cpus=8, environ={"OMP_NUM_THREADS": "4,2"}, platform="linux")
    assert (choice.threads, choice.source, choice.adaptive) == (4, "OMP_NUM_THREADS", False)


@pytest.mark.parametrize("value", ["", "0", "many", " "])
def test_an_unusable_omp_num_threads_leaves_auto_in_charge(value):
    choice = threads.choose("auto", cpus=4, environ={"OMP_NUM_THREADS": value}, platform="linux")
    assert (choice.threads, choice.source) == (4, "auto")


@pytest.mark.parametrize("cpus,workers,want", [(8, 0, 8), (8, 2, 6), (2, 2, 1), (1, 0, 1), (2, 4, 1)])
def test_auto_is_the_usable_cpus_less_the_workers(cpus, workers, want):
    choice = threads.choose("auto", workers, cpus=cpus, environ={}, platform="linux")
    assert choice.threads == want and choice.adaptive == (cpus > 1)


def test_auto_adapts_on_linux_only():
    assert not threads.choose("auto", cpus=4, environ={}, platform="darwin").adaptive


def test_a_deterministic_run_keeps_autos_count_fixed():
    fixed = threads.choose("auto", cpus=4, environ={}, platform="linux", fixed=True)
    assert (fixed.threads, fixed.source, fixed.adaptive) == (4, "auto", False)
    assert threads.choose("auto", cpus=4, environ={}, platform="linux").adaptive


def test_usable_cpus_follow_the_affinity():
    assert 1 <= threads.usable_cpus() <= (__import__("os").cpu_count() or 1)


def test_the_config_key_takes_a_number_or_auto_and_refuses_the_rest():
    from cvtool.tasks import cifar

    assert cfglib.load(cifar.Config).train.threads == "auto"
    assert cfglib.load(cifar.Config, overrides=["train.threads=3"]).train.threads == 3
    for bad, words in (("0", ">= 1"), ("lots", "an integer or one of auto")):
        with pytest.raises(cfglib.ConfigError, match=words):
            cfglib.load(cifar.Config, overrides=[f"train.threads={bad}"])


# --------------------------------------------------------------------------- /proc


STAT = """cpu  900 0 100 800 0 0 0 0 0 0
cpu0 500 0 50 400 0 0 0 0 0 0
cpu1 400 0 50 400 100 0 0 0 0 0
cpu2 0 0 0 1000 0 0 0 0 0 0
intr 1 2 3
"""


def test_proc_stat_counts_only_the_cpus_this_process_may_use():
    assert threads.parse_proc_stat(STAT, {0, 1}) == (1000, 1900)  # iowait counts as idle
    assert threads.parse_proc_stat(STAT, None) == (1000, 2900)


def test_pid_stat_survives_a_name_with_spaces_and_parentheses():
    text = "42 (python (x) y) S 7 42 42 0 -1 4194560 1 0 0 0 150 25 3 4 20 0 3 0"
    assert threads.parse_pid_stat(text) == (7, 175)


def fake_proc(root: Path, busy: int, total: int, main: int, child: int, pid: int = 100) -> None:
    idle = total - busy
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0\ncpu0 {busy} 0 0 {idle} 0 0 0 0\n")
    for p, parent, used in ((pid, 1, main), (pid + 1, pid, child), (pid + 2, 1, 999)):
        (root / str(p)).mkdir(exist_ok=True)
        (root / str(p) / "stat").write_text(f"{p} (py) S {parent} 0 0 0 0 0 0 0 0 0 {used} 0 0 0")


def test_the_reader_sums_this_process_and_its_children_but_no_stranger(tmp_path):
    fake_proc(tmp_path, busy=50, total=200, main=30, child=7)
    reader = ProcReader(root=tmp_path, pid=100, cpu_ids={0}, count_children=True)
    assert reader.sample() == Sample(busy=50, total=200, main=30, children=7)
    assert ProcReader(root=tmp_path / "absent", pid=100).sample() is None


# --------------------------------------------------------------------------- decisions


def readings(cpus: int, others: float, ours: float, children: float = 0.0, seconds: int = 2):
    """Two samples ``seconds`` apart (100 ticks a second per CPU) with the given cores busy."""
    before = Sample(0, 0, 0, 0)
    ticks = 100 * seconds
    busy = round((others + ours + children) * ticks)
    return before, Sample(busy, cpus * ticks, round(ours * ticks), round(children * ticks))


def test_a_busy_neighbour_takes_a_thread_at_once_and_gives_it_back_after_two_readings():
    adapter = Adapter(cpus=2, start=2)
    assert adapter.observe(*readings(2, others=1.0, ours=1.0)) == 1
    assert adapter.others == pytest.approx(1.0)
    assert adapter.observe(*readings(2, others=0.05, ours=1.0)) == 1  # one reading: could be a lull
    assert adapter.observe(*readings(2, others=0.05, ours=1.0)) == 2  # the neighbour left


def test_a_blip_between_agreeing_readings_restarts_the_count():
    adapter = Adapter(cpus=4, start=2)
    adapter.observe(*readings(4, others=0.0, ours=2.0))
    adapter.observe(*readings(4, others=2.0, ours=2.0))  # back to the current count: forget the candidate
    assert adapter.observe(*readings(4, others=0.0, ours=2.0)) == 2
    assert adapter.observe(*readings(4, others=0.0, ours=2.0)) == 4


def test_small_background_load_keeps_every_core_and_a_full_machine_keeps_one():
    adapter = Adapter(cpus=8, start=8, up=1)
    assert adapter.observe(*readings(8, others=0.4, ours=7.6)) == 8
    assert adapter.observe(*readings(8, others=12.0, ours=1.0)) == 1


def test_busy_workers_are_counted_and_idle_ones_give_their_cores_back():
    adapter = Adapter(cpus=4, start=2, up=1)  # auto started at 4 CPUs less 2 workers
    assert adapter.observe(*readings(4, others=0.0, ours=2.0, children=0.2)) == 4
    assert adapter.observe(*readings(4, others=0.0, ours=2.0, children=2.0)) == 2


def test_no_elapsed_time_changes_nothing():
    adapter = Adapter(cpus=2, start=2, up=1)
    same = Sample(5, 10, 1, 0)
    assert adapter.observe(same, same) == 2


class ScriptedReader:
    def __init__(self, samples):
        self.samples = list(samples)

    def sample(self):
        return self.samples.pop(0) if self.samples else None


def test_the_policy_reads_at_most_every_interval_and_sets_torch_threads():
    now = [0.0]
    ticks = [Sample(0, 0, 0, 0), *(Sample(400 * k, 400 * k, 200 * k, 0) for k in (1, 2))]  # a neighbour: 1 core
    choice = Choice(2, "auto", cpus=2, adaptive=True)
    policy = Policy(choice, reader=ScriptedReader(ticks), interval=2.0, clock=lambda: now[0])
    assert torch.get_num_threads() == 2
    now[0] = 1.0
    assert policy.tick() == 2 and len(ticks) == 3  # too soon: nothing read
    now[0] = 2.0
    policy.tick()
    assert policy.threads == 1 and torch.get_num_threads() == 1
    assert policy.record()["changes"] == [[2.0, 1]] and policy.record()["source"] == "auto"


def test_a_fixed_choice_never_reads_proc():
    reader = ScriptedReader([])
    policy = Policy(Choice(1, "train.threads", cpus=2), reader=reader, clock=lambda: 1e9)
    assert policy.tick() == 1 and torch.get_num_threads() == 1


@pytest.mark.parametrize("given,want", [
    ({}, {"GOMP_SPINCOUNT": cvtool.SPIN_COUNT}),  # nothing said: a short spin, then sleep
    ({"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}),  # the user's words, nothing added
    ({"GOMP_SPINCOUNT": "infinite"}, {"GOMP_SPINCOUNT": "infinite"}),
])
def test_the_openmp_wait_is_set_before_torch_loads_unless_the_user_set_one(given, want):
    environ = {k: v for k, v in os.environ.items() if k not in cvtool.WAIT_SETTINGS}
    code = ("import json, os, cvtool; "
            "print(json.dumps({k: os.environ[k] for k in cvtool.WAIT_SETTINGS if k in os.environ}))")
    out = subprocess.run([sys.executable, "-c", code], env={**environ, **given}, capture_output=True, text=True,
                         check=True, cwd=Path(cvtool.__file__).parents[1]).stdout
    assert json.loads(out) == want


# --------------------------------------------------------------------------- CPU defaults


@pytest.mark.parametrize("cpuinfo,machine,want", [
    ("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n", "x86_64", True),
    ("flags\t\t: fpu sse avx2 amx_bf16 amx_tile\n", "x86_64", True),
    ("flags\t\t: fpu sse avx2 avx512f avx512bw\n", "x86_64", False),
    ("Features\t: fp asimd bf16 i8mm\n", "aarch64", True),
    ("Features\t: fp asimd\n", "aarch64", False),
    ("", "x86_64", False),
])
def test_native_bf16_comes_from_the_cpu_flags(cpuinfo, machine, want):
    assert runtime.native_bf16(runtime.cpu_flags(cpuinfo), machine) is want


def test_amp_auto_on_the_cpu_follows_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.amp_dtype(cpu, "auto") == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.amp_dtype(cpu, "auto") is None
    assert runtime.amp_dtype(cpu, "bf16") == torch.bfloat16  # explicit: as asked


@pytest.mark.parametrize("setting,device,family,want", [
    (True, "cpu", "classify", True), (False, "cuda", "detect", False),  # explicit: as given
    ("auto", "cuda", "classify", True), ("auto", "mps", "stylize", False),
    ("auto", "cpu", "stylize", True), ("auto", "cpu", "detect", True),
    ("auto", "cpu", "classify", False), ("auto", "cpu", None, False),
])
def test_channels_last_auto_follows_the_device_and_the_family_table(setting, device, family, want):
    assert placement.channels_last_for(setting, torch.device(device), family) is want


def test_a_run_records_and_announces_its_choices(cli, tmp_path, tiny_hotdog, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    code, out, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1",
                         "--set", "train.threads=1", "--out", tmp_path / "run")
    assert code == 0, err
    precision = "bfloat16" if runtime.cpu_has_native_bf16() else "fp32"  # train.amp: auto
    assert f"({precision}, NCHW, 1 of" in out and "train.threads, fixed) threads" in out
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["threads"]["threads"] == 1 and env["threads"]["source"] == "train.threads"
    assert env["threads"]["wait_source"] and env["channels_last"] is False and env["precision"] == precision


def neighbour_policy() -> Policy:
    """An adaptive policy whose first reading finds one core taken by another process."""
    reader = ScriptedReader([Sample(0, 0, 0, 0), Sample(400, 400, 200, 0)])
    return Policy(Choice(2, "auto", cpus=2, adaptive=True), reader=reader, interval=0.0)


def test_env_json_keeps_the_thread_changes_made_during_training(cli, tmp_path, tiny_hotdog, monkeypatch):
    from cvtool.engine import run

    monkeypatch.setattr(run, "thread_policy", lambda cfg, procs: neighbour_policy())
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "2",
                       "--out", tmp_path / "run")
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "env.json").read_text())["threads"]
    assert record["threads"] == 2 and [c[1] for c in record["changes"]] == [1]
