"""Training recipes (issue 17): lr scaled to the batch, no decay on norms and biases, EMA of the
weights, gradient accumulation, class counts from the data, and the book configs unchanged."""

import json
import os
import signal
import shutil
import socket
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cvtool import config as c
from cvtool.engine import checkpoint, runtime
from cvtool.engine.optim import decay_groups, effective_lr, lr_factor, optimizer_for, recipe
from cvtool.engine.progress import Reporter
from cvtool.engine.task import Task
from cvtool.engine.trainer import Run, Trainer
from cvtool.errors import Interrupted
from cvtool.tasks import classify, registry

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Cfg:
    data: c.DataConfig = field(default_factory=lambda: c.DataConfig(num_workers=0))
    optim: c.OptimConfig = field(default_factory=c.OptimConfig)
    sched: c.SchedConfig = field(default_factory=c.SchedConfig)
    # fp32 on every CPU: the recipes' sums are compared to 1e-6, which bf16 autocast (train.amp
    # auto on a CPU with native bf16) does not hold across batch splits
    train: c.TrainConfig = field(default_factory=lambda: c.TrainConfig(device="cpu", epochs=1, amp="off"))


def tiny_cfg(*sets: str) -> Cfg:
    return c.load(Cfg, None, list(sets))


def tiny_task(cfg: Cfg, n: int = 64, bn: bool = True, step=None) -> Task:
    """Three classes of 6-d points and an MLP (with BatchNorm unless ``bn`` is false)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), *([nn.BatchNorm1d(16)] if bn else []), nn.ReLU(), nn.Linear(16, 3))
    return Task(name="tiny", config=cfg, model=model, train_data=TensorDataset(x, y),
                val_data=TensorDataset(x[:16], y[:16]), train_step=step or classify.train_step,
                evaluate=classify.evaluate, columns=classify.COLUMNS, best_metric="val_acc")


def trainer(task: Task, run_dir: Path, resume: Path | None = None, procs=runtime.Processes()) -> Trainer:
    run = Run(run_dir=run_dir, device=torch.device("cpu"), argv=[], procs=procs, resume_path=resume,
              resume_from=checkpoint.load(resume) if resume else None)
    return Trainer(task, run, Reporter(quiet=True))


# --------------------------------------------------------------------------- lr scaling


@pytest.mark.parametrize("name, scaling, batch, factor", [
    ("sgd", "auto", 32, 1.0), ("sgd", "auto", 128, 4.0), ("sgd", "linear", 128, 4.0), ("sgd", "sqrt", 128, 2.0),
    ("adam", "auto", 32, 1.0), ("adam", "auto", 128, 2.0), ("adamw", "linear", 128, 4.0),
    ("sgd", "none", 128, 1.0), ("adam", "none", 8, 1.0),
])
def test_effective_lr_follows_the_batch(name, scaling, batch, factor):
    optim = c.OptimConfig(name=name, lr=0.1, reference_batch=32, lr_scaling=scaling)
    assert effective_lr(optim, batch) == pytest.approx(0.1 * factor)


def test_accumulation_counts_in_the_effective_batch():
    r = recipe(tiny_cfg("data.batch_size=32", "train.accumulate_steps=4", "optim.lr=0.1"))
    assert (r["effective_batch"], r["lr_scaling"], r["effective_lr"]) == (128, "linear", pytest.approx(0.4))


def test_a_run_trains_at_the_effective_lr_and_records_it(tmp_path):
    cfg = tiny_cfg("data.batch_size=16", "optim.lr=0.2", "optim.momentum=0.9")
    fit = trainer(tiny_task(cfg), tmp_path / "run")
    assert [g["lr"] for g in fit.optimizer.param_groups] == pytest.approx([0.1, 0.1])
    fit.fit()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["optim"]["effective_lr"] == pytest.approx(0.1) and summary["optim"]["effective_batch"] == 16
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert text.startswith("# this run trained at lr 0.1 at batch 16 (optim.lr 0.2 at reference_batch 32, linear")
    assert c.load(Cfg, tmp_path / "run" / "config.yaml") == cfg


def test_resume_refuses_a_batch_that_changes_the_effective_lr(cli, tiny_hotdog, tmp_path):
    run = tmp_path / "run"
    assert cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1", "--out", run)[0] == 0
    code, _, err = cli("finetune-hotdog", "--resume", "--out", run, "--epochs", "2", "--set", "data.batch_size=8")
    assert code == 2 and "effective lr cannot change" in err
    code, _, err = cli("finetune-hotdog", "--resume", "--out", run, "--epochs", "2",
                       "--set", "train.accumulate_steps=2")
    assert code == 2 and "train.accumulate_steps" in err


def test_a_checkpoint_from_before_lr_scaling_trained_at_optim_lr(tmp_path):
    from cvtool.engine.run import check_effective_lr
    from cvtool.errors import InputError

    old = {"config": {"data": {"batch_size": 8}, "optim": {"name": "adam", "lr": 0.001}}}
    cfg = tiny_cfg("data.batch_size=8", "optim.name=adam", "optim.lr=0.001")
    with pytest.raises(InputError, match="predates optim.lr_scaling: --set optim.lr_scaling=none"):
        check_effective_lr(cfg, old, tmp_path / "last.pt")
    check_effective_lr(tiny_cfg("data.batch_size=8", "optim.name=adam", "optim.lr=0.001", "optim.lr_scaling=none"),
                       old, tmp_path / "last.pt")
    new = {"config": c.to_dict(cfg)}  # written by this version, without its recipe
    check_effective_lr(cfg, new, tmp_path / "last.pt")
    with pytest.raises(InputError, match="keep data.batch_size"):
        check_effective_lr(tiny_cfg("data.batch_size=16", "optim.name=adam", "optim.lr=0.001"), new, tmp_path)


# --------------------------------------------------------------------------- weight decay


def test_norms_and_biases_get_no_decay_only_when_asked():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4), nn.Linear(4, 2))
    head = list(model[4].parameters())
    groups = [{"params": [p for p in model.parameters() if all(p is not h for h in head)], "lr_mult": 1.0},
              {"params": head, "lr_mult": 10.0}]
    cfg = tiny_cfg("optim.weight_decay=0.01", "optim.lr=0.1", "data.batch_size=32")
    decayed = {id(model[0].weight), id(model[4].weight)}
    opt = optimizer_for(model, groups, cfg)
    for g in opt.param_groups:
        assert g["weight_decay"] == (0.01 if {id(p) for p in g["params"]} <= decayed else 0.0)
        assert all((id(p) in decayed) == (g["weight_decay"] > 0) for p in g["params"])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.1, 1.0, 1.0])
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0, 0.01, 0.0]
    assert [g["decay"] for g in decay_groups(model, groups)] == [True, False, True, False]
    book = optimizer_for(model, groups, tiny_cfg("optim.weight_decay=0.01", "optim.decay_norm_and_bias=true"))
    assert [g["weight_decay"] for g in book.param_groups] == [0.01, 0.01]


# --------------------------------------------------------------------------- the book configs


def old_optimizer(groups, optim):
    """cvtool's optimizer before issue 17, verbatim: every parameter decayed, lr = optim.lr."""
    params = [{"params": [p for p in g["params"] if p.requires_grad], "lr": optim.lr * g.get("lr_mult", 1.0)}
              for g in groups]
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov,
                               weight_decay=optim.weight_decay)
    return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)


def three_steps(cfg, make_optimizer, lr):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3))
    groups = [{"params": list(model[:2].parameters()), "lr_mult": 1.0},
              {"params": list(model[4].parameters()), "lr_mult": 10.0}]
    opt = make_optimizer(model, groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg.sched, lr, 2, cfg.train.epochs))
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
        sched.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["hotdog", "hotdog-scratch", "cifar", "dog", "ssd", "fcn"])
def test_book_configs_take_their_old_first_steps(name):
    spec = next(s for s in registry.specs() if s.command.split("-")[-1] == name.split("-")[0])
    cfg = c.load(spec.config, CONFIGS / f"{name}.yaml")
    assert recipe(cfg)["effective_lr"] == cfg.optim.lr
    assert (cfg.train.accumulate_steps, cfg.train.ema_decay) == (1, 0.0)
    old = three_steps(cfg, lambda m, g: old_optimizer(g, cfg.optim), cfg.optim.lr)
    new = three_steps(cfg, lambda m, g: optimizer_for(m, g, cfg), recipe(cfg)["effective_lr"])
    assert all(torch.equal(a, b) for a, b in zip(old, new))
    default = c.load(spec.config, CONFIGS / f"{name}.yaml", ["optim.decay_norm_and_bias=false"])
    changed = three_steps(default, lambda m, g: optimizer_for(m, g, default), default.optim.lr)
    assert not all(torch.equal(a, b) for a, b in zip(old, changed))  # the test can tell them apart


# --------------------------------------------------------------------------- EMA


def test_ema_is_the_hand_computed_average_after_its_warmup(tmp_path):
    cfg = tiny_cfg("data.batch_size=8", "optim.lr=0.5", "train.ema_decay=0.9", "train.ema_warmup=2")
    fit = trainer(tiny_task(cfg), tmp_path / "run")
    fit.model.train()
    expected = {}
    for i, batch in enumerate(islice(DataLoader(fit.task.train_data, batch_size=8), 5)):
        fit.train_step(batch, 0, 1)
        now = {k: v.detach().clone() for k, v in fit.model.state_dict().items() if v.is_floating_point()}
        expected = now if i < 2 else {k: 0.9 * expected[k] + 0.1 * now[k] for k in now}
    averaged = fit.ema.module.state_dict()
    assert "1.running_mean" in expected  # BatchNorm statistics are averaged too
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key], value)
    assert not torch.equal(averaged["0.weight"], fit.model.state_dict()["0.weight"])


def run_to_the_end(tmp_path: Path, name: str, *sets: str, interrupt_at: int | None = None) -> Path:
    """Three epochs; with ``interrupt_at``, a SIGINT during that micro-step, then --resume."""
    calls = {"n": 0}

    def step(model, batch):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        return classify.train_step(model, batch)

    cfg = tiny_cfg("data.batch_size=8", "optim.lr=0.2", "optim.momentum=0.9", "optim.weight_decay=0.01",
                   "train.epochs=3", "train.deterministic=true", *sets)
    run_dir = tmp_path / name
    runtime.seed_everything(0)
    if interrupt_at is None:
        trainer(tiny_task(cfg), run_dir).fit()
        return run_dir
    with pytest.raises(Interrupted):
        trainer(tiny_task(cfg, step=step), run_dir).fit()
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["step"]) == (1, 4)  # the end of the accumulation group it was in
    trainer(tiny_task(cfg), run_dir, resume=run_dir / "checkpoints" / "last.pt").fit()
    return run_dir


def test_ema_and_accumulation_survive_an_interrupt_bitwise(tmp_path):
    sets = ("train.ema_decay=0.8", "train.ema_warmup=3", "train.accumulate_steps=2")
    full = run_to_the_end(tmp_path, "full", *sets)
    part = run_to_the_end(tmp_path, "part", *sets, interrupt_at=11)  # epoch 2, micro-step 3 of 8
    a, b = (checkpoint.load(d / "checkpoints" / "last.pt") for d in (full, part))
    assert a["ema"] == b["ema"] == {"n_averaged": 10}  # 12 updates, the first 3 copies
    for key in ("model", "raw_model"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert not torch.equal(a["model"]["0.weight"], a["raw_model"]["0.weight"])
    assert json.loads((part / "summary.json").read_text())["status"] == "completed"


def test_best_checkpoint_holds_the_averaged_weights_and_predict_uses_them(cli, tiny_hotdog, tmp_path):
    from cvtool.tasks import hotdog

    out = tmp_path / "run"
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--set", "train.ema_decay=0.5", "--epochs", "1",
                       "--out", out)
    assert code == 0, err
    best = checkpoint.load(out / "checkpoints" / "best.pt")
    assert not torch.equal(best["model"]["fc.weight"], best["raw_model"]["fc.weight"])
    image = next((Path(tiny_hotdog[1].split("=", 1)[1]) / "test" / "hotdog").glob("*.png"))
    code, stdout, err = cli("predict", "--checkpoint", out / "checkpoints" / "best.pt", image, "--json")
    assert code == 0, err
    cfg = c.from_dict(hotdog.Config, best["config"])
    model = hotdog.build_model(cfg, None)
    model.load_state_dict(best["model"])
    [expected] = classify.predict_images(model, hotdog.eval_transform(cfg), best["metadata"]["classes"], [image],
                                         torch.device("cpu"))
    assert json.loads(stdout)[0]["probability"] == pytest.approx(expected["probability"], abs=1e-6)


# --------------------------------------------------------------------------- accumulation


def one_epoch(tmp_path: Path, name: str, *sets: str) -> dict:
    cfg = tiny_cfg("optim.lr=0.5", "optim.momentum=0.9", *sets)
    runtime.seed_everything(0)
    trainer(tiny_task(cfg, n=32, bn=False), tmp_path / name).fit()
    return checkpoint.load(tmp_path / name / "checkpoints" / "last.pt")["model"]


def test_four_micro_batches_of_8_take_one_step_of_32(tmp_path):
    big = one_epoch(tmp_path, "big", "data.batch_size=32")
    accumulated = one_epoch(tmp_path, "acc", "data.batch_size=8", "train.accumulate_steps=4")
    small = one_epoch(tmp_path, "small", "data.batch_size=8", "optim.lr_scaling=none")
    for key in big:
        torch.testing.assert_close(accumulated[key], big[key], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(small["0.weight"], big["0.weight"])  # four updates are not one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accumulating_rank(rank: int, port: int, out: Path) -> None:
    """One of two gloo processes: 4 micro-batches of 8 (4 a rank), counting DDP's gradient all-reduces."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    procs = runtime.processes_from_env()
    runtime.init_processes(procs, torch.device("cpu"))
    try:
        runtime.seed_everything(0)
        cfg = tiny_cfg("optim.lr=0.5", "optim.momentum=0.9", "data.batch_size=8", "train.accumulate_steps=4")
        fit = trainer(tiny_task(cfg, n=32, bn=False), out / "two", procs=procs)
        calls = []

        def counting(state, bucket):
            calls.append(bucket.index())
            return allreduce_hook(state, bucket)

        fit.net.register_comm_hook(None, counting)
        fit.fit()
        (out / f"allreduces{rank}.json").write_text(json.dumps(calls))
    finally:
        runtime.close_processes()


@pytest.mark.slow
def test_accumulation_syncs_once_under_two_gloo_processes(tmp_path):
    mp.spawn(accumulating_rank, args=(free_port(), tmp_path), nprocs=2)
    for rank in (0, 1):
        assert json.loads((tmp_path / f"allreduces{rank}.json").read_text()) == [0]  # one bucket, once
    one = one_epoch(tmp_path, "one", "data.batch_size=32")
    two = checkpoint.load(tmp_path / "two" / "checkpoints" / "last.pt")["model"]
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- classes and smoothing


def test_num_classes_auto_on_class_folders_and_the_disagreement_error(hotdog_root, tmp_path):
    from cvtool.tasks import hotdog

    root = Path(shutil.copytree(hotdog_root, tmp_path / "three"))
    for split in ("train", "test"):
        shutil.copytree(root / split / "hotdog", root / split / "pizza")
    sets = [f"data.root={root}", "model.weights=none", "data.image_size=32", "data.resize=36"]
    task = hotdog.build(c.load(hotdog.Config, None, sets))
    assert task.config.model.num_classes == 3 and task.model.fc.out_features == 3
    with pytest.raises(c.ConfigError, match=r"model.num_classes is 2 but .*train holds 3 classes"):
        hotdog.build(c.load(hotdog.Config, None, [*sets, "model.num_classes=2"]))


def test_num_classes_auto_on_cifar_labels(tmp_path):
    from cvtool.data.kaggle_synth import synthesize_cifar
    from cvtool.tasks import cifar

    root = synthesize_cifar(tmp_path / "cifar", n_train=40, n_test=2)
    sets = [f"data.root={root}", "data.tiny=false", "model.width=4", "train.device=cpu"]
    assert cifar.build(c.load(cifar.Config, None, sets)).config.model.num_classes == 10
    with pytest.raises(c.ConfigError, match="model.num_classes is 12 but .* holds 10 classes"):
        cifar.build(c.load(cifar.Config, None, [*sets, "model.num_classes=12"]))


def test_num_classes_auto_on_dog_labels_csv(tmp_path):
    from cvtool.data.kaggle_synth import synthesize_dogs
    from cvtool.tasks import dog

    root = synthesize_dogs(tmp_path / "dogs", n_train=12, n_test=2, classes=3, seed=5)
    sets = [f"data.root={root}", "data.tiny=false", "model.weights=none", "model.hidden=8", "data.num_workers=0"]
    task = dog.build(c.load(dog.Config, None, sets))
    assert task.config.model.num_classes == 3 and task.model.head[-1].out_features == 3
    with pytest.raises(c.ConfigError, match="model.num_classes is 120 but .*labels.csv holds 3 classes"):
        dog.build(c.load(dog.Config, None, [*sets, "model.num_classes=120"]))


def test_num_classes_auto_on_the_detection_classes(tmp_path):
    from cvtool.data import bananas
    from cvtool.tasks import ssd

    root = bananas.synthesize(tmp_path / "bananas", n_train=4, n_val=2, size=64)
    sets = [f"data.root={root}", "data.download=false", "data.image_size=64", "model.width=0.25"]
    assert ssd.build(c.load(ssd.Config, None, sets)).config.model.num_classes == 1
    two = ssd.build(c.load(ssd.Config, None, [*sets, "data.classes=[banana, apple]"]))
    assert two.config.model.num_classes == 2
    with pytest.raises(c.ConfigError, match=r"model.num_classes is 2 but .*bananas .*holds 1 classes"):
        ssd.build(c.load(ssd.Config, None, [*sets, "model.num_classes=2"]))


@pytest.mark.parametrize("command", ["finetune-hotdog", "train-cifar", "train-dog"])
def test_every_classifier_has_label_smoothing(command):
    spec = registry.get(command)
    cfg = c.load(spec.config, None, ["loss.label_smoothing=0.1"])
    assert cfg.loss.label_smoothing == 0.1
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    plain = classify.smoothed_step(0.0)(nn.Identity(), (x, y)).loss
    smooth = classify.smoothed_step(0.1)(nn.Identity(), (x, y)).loss
    assert smooth.item() == pytest.approx(torch.nn.functional.cross_entropy(x, y, label_smoothing=0.1).item())
    assert smooth.item() != plain.item()
    if command == "train-dog":
        from cvtool.tasks import dog

        class Head(nn.Module):
            def forward(self, x, from_features=False):
                return x

        assert dog.make_train_step(False, 0.1)(Head(), (x, y)).loss.item() == pytest.approx(smooth.item())
