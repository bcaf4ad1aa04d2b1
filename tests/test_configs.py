"""Every shipped config validates, and each book config is exactly its task's defaults."""

from pathlib import Path

import pytest

from cvtool import config as c
from cvtool import tasks

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TASK_OF = {"hotdog": "finetune-hotdog", "hotdog-scratch": "finetune-hotdog", "ssd": "train-ssd",
           "fcn": "train-fcn", "stylize": "stylize", "cifar": "train-cifar", "cifar-fast": "train-cifar",
           "dog": "train-dog"}
BOOK = ["hotdog", "ssd", "fcn", "stylize", "cifar", "dog"]


def test_every_config_has_a_task():
    files = sorted(CONFIGS.rglob("*.yaml"))
    assert files
    assert {f.stem for f in files} <= set(TASK_OF)


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_validates(path):
    c.load(tasks.module(TASK_OF[path.stem]).Config, path)


@pytest.mark.parametrize("name", BOOK)
def test_book_config_is_the_default(name):
    path = CONFIGS / f"{name}.yaml"
    schema = tasks.module(TASK_OF[name]).Config
    assert c.load(schema, path) == schema()
