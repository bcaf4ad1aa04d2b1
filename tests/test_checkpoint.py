import os
import pickle

import pytest
import torch

from cvtool.engine import checkpoint
from cvtool.errors import CvtoolError, InputError


def state(value):
    return {"format": checkpoint.FORMAT, "task": "finetune-hotdog", "model": {"w": torch.full((3,), value)},
            "rng": checkpoint.rng_state()}


def test_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    checkpoint.save(state(1.0), path)
    loaded = checkpoint.load(path)
    assert torch.equal(loaded["model"]["w"], torch.ones(3))
    checkpoint.set_rng_state(loaded["rng"])
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_a_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(state(1.0), path)

    def disk_full(obj, fh):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CvtoolError, match="No space left on device.*previous checkpoint is intact"):
        checkpoint.save(state(2.0), path)
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": checkpoint.FORMAT, "model": Boom()}, fh)
    with pytest.raises(InputError, match="cannot be read safely"):
        checkpoint.load(path)
    assert not (tmp_path / "pwned.txt").exists()


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save(state(1.0), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot be read safely"):
        checkpoint.load(path)
    other = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(1)}, other)
    with pytest.raises(InputError, match="not a cvtool checkpoint"):
        checkpoint.load(other)


def test_cli_refuses_bad_checkpoints(cli, tmp_path):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"format": checkpoint.FORMAT, "model": Boom()}, fh)
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    code, _, err = cli("predict", "--checkpoint", evil, image)
    assert code == 2 and "cannot be read safely" in err and "Traceback" not in err
    code, _, err = cli("finetune-hotdog", "--resume", evil)
    assert code == 2 and "cannot be read safely" in err
