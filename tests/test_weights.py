"""Pretrained-weight files are read without running their code, and the refusal says why without torch's advice."""

from __future__ import annotations

import os

import pytest
import torch

from cvtool.errors import InputError
from cvtool.models.weights import read_state_file


class RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("content", ["pickle", "garbage"])
def test_unsafe_or_broken_weights_are_refused_without_torch_advice(tmp_path, content):
    path = tmp_path / "evil.pth"
    if content == "pickle":
        torch.save({"conv1.weight": RunsCode(tmp_path / "pwned")}, path)
    else:
        path.write_bytes(b"\x80\x02garbage that is no pickle")
    with pytest.raises(InputError) as info:
        read_state_file(path)
    message = str(info.value)
    assert message.startswith(f"weights file {path} cannot be read safely: ") and "\n" not in message
    for advice in ("can still be loaded", "weights_only", "will likely succeed", "PyTorch 2.6"):
        assert advice not in message
    assert not (tmp_path / "pwned").exists()
    if content == "pickle":
        assert "os.mkdir" in message or "posix.mkdir" in message, message
