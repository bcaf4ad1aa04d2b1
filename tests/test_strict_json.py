"""Strict JSON everywhere: a non-finite number is written as null, and one function writes all JSON."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import strict_json
from cvtool.files import json_text

REPO = Path(__file__).resolve().parents[1]


def test_non_finite_numbers_at_any_depth_become_null():
    data = {"a": math.nan, "b": [1.5, math.inf, (-math.inf, 2)], "c": {"d": np.float32("nan"), "e": torch.tensor(3.0)},
            "f": np.float64(0.25), "g": Path("x"), "h": True, "i": 7}
    parsed = strict_json(json_text(data, indent=2))
    assert parsed == {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": None, "e": 3.0}, "f": 0.25, "g": "x",
                      "h": True, "i": 7}


def test_the_strict_parser_of_the_suite_refuses_what_python_writes_by_default():
    with pytest.raises(ValueError, match="NaN is not JSON"):
        strict_json('{"val_loss": NaN}')
    with pytest.raises(ValueError, match="Infinity is not JSON"):
        strict_json("[Infinity]")


@pytest.mark.parametrize("folder", ["cvtool", "benchmarks"])
def test_no_other_json_writer(folder):
    """Every JSON file or stream goes through cvtool.files.json_text (benchmarks' children that time
    the book's code print plain numbers and may not import cvtool; gpu_check runs before it is installed)."""
    allowed = {"cvtool/files.py", "benchmarks/cifar.py", "benchmarks/ssd.py", "benchmarks/wait.py",
               "benchmarks/book_ssd.py", "benchmarks/book_tinyssd.py", "benchmarks/gpu_check.py"}
    writers = [f"{path.relative_to(REPO)}:{n}" for path in sorted((REPO / folder).rglob("*.py"))
               if str(path.relative_to(REPO)) not in allowed
               for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
               if re.search(r"\bjson\.dumps?\(", line)]
    assert not writers, writers
