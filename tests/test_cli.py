import json
import re
from importlib.metadata import EntryPoint

from cvtool.tasks import registry

SIX = ["finetune-hotdog", "train-ssd", "train-fcn", "stylize", "train-cifar", "train-dog"]


def test_help_lists_every_command(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for name in SIX:
        assert name in out


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("cvtool ")


def test_a_command_not_built_yet_says_so(cli, monkeypatch):
    """An installed plugin's entry point whose module is not there: listed, and says so."""
    registry.discover()
    monkeypatch.delitem(registry._SPECS, "train-ssd")
    monkeypatch.setattr(registry, "entry_points",
                        lambda: [EntryPoint("train-ssd", "cvtool.tasks.not_there", registry.GROUP)])
    code, out, err = cli("train-ssd")
    assert code == 2
    assert "train-ssd is not built yet" in err and "Traceback" not in err


def test_usage_errors_are_one_line(cli):
    code, _, err = cli("finetune-hotdog", "--bogus")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_missing_device_is_an_error_not_a_fallback(cli, tiny_hotdog):
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--device", "cuda:7")
    assert code == 2 and "cuda:7" in err


def test_missing_data_exits_3_with_the_layout(cli):
    code, _, err = cli("finetune-hotdog", "--set", "data.root=nowhere/hotdog", "--set", "data.download=false")
    assert code == 3
    assert "hotdog/{train,test}" in err and "cvtool data fetch hotdog" in err
    assert "`cvtool data synth hotdog --out nowhere/hotdog`" in err  # the way to try it offline


def test_a_hotdog_folder_of_the_wrong_shape_shows_the_layout(cli, tmp_path):
    (tmp_path / "flat" / "train").mkdir(parents=True)
    code, _, err = cli("finetune-hotdog", "--set", f"data.root={tmp_path / 'flat'}", "--set", "data.download=false")
    assert code == 2 and "expected layout: hotdog/{train,test}/{hotdog,not-hotdog}/*.png" in err


def test_help_shows_no_types_for_flags_and_key_value_for_set(cli):
    for command in ("train-ssd", "predict", "eval", "stylize"):
        code, out, _ = cli(command, "--help")
        assert code == 0 and "<bool>" not in out and "list[str]" not in out, command
    code, out, _ = cli("train-ssd", "--help")
    assert "KEY=VALUE" in out


def test_data_synth_help_names_every_kind_and_each_default(cli):
    code, out, _ = cli("data", "synth", "--help")
    text = " ".join(out.replace("│", " ").split())
    assert code == 0 and "KIND" in text and "{kind}" not in text
    for kind in registry.synth_writers():
        assert kind in text
    squeezed = "".join(text.split())  # rich may wrap a kind's name across lines
    n_train = re.search(r"\(default:((?:[a-z-]+\d+,?)+)\)", squeezed).group(1)  # order: the tasks' import order
    assert set(n_train.split(",")) == {"cifar1000", "dogs600", "voc300", "seg-folders300", "voc-detection200",
                                       "bananas1000"} and "--n-train N" in text


def test_version_answers_without_importing_the_tasks():
    import subprocess
    import sys

    code = "import sys; from cvtool.cli import main; main(['--version']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["cvtool", out.split()[1], "False"]


def test_a_terminal_hears_when_torch_loads(monkeypatch):
    """Help answers at once and silently; a command that loads torch says so while it does."""
    import io
    import subprocess
    import sys

    from cvtool import cli as cli_module

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    assert cli_module.main(["--help"]) == 0
    assert err.getvalue() == ""
    code = ("import io, sys\nclass Terminal(io.StringIO):\n    def isatty(self): return True\n"
            "sys.stderr = Terminal()\nfrom cvtool.commands.common import load_torch\nload_torch()\n"
            "print(repr(sys.stderr.getvalue()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == repr("cvtool: loading torch...\r\r\x1b[K")  # the line is cleared once it has loaded


def test_missing_weights_exit_3_with_the_cache_path(cli, tiny_hotdog, tmp_path):
    code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--set", "model.weights=IMAGENET1K_V1")
    assert code == 3
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in err
    assert "none" in err


def test_weights_from_a_local_file(cli, tiny_hotdog, tmp_path):
    import torch
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    code, out, err = cli("finetune-hotdog", *tiny_hotdog, "--set", f"model.weights={path}",
                         "--epochs", "1", "--max-steps", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"


def test_synth_rejects_options_that_do_not_apply(cli, tmp_path):
    code, _, err = cli("data", "synth", "hotdog", "--out", tmp_path / "x", "--classes", "3")
    assert code == 2 and "--classes does not apply to hotdog" in err


def test_a_bad_image_in_a_worker_is_one_line(cli, tmp_path):
    from cvtool.data.hotdog import synthesize

    root = synthesize(tmp_path / "hotdog", n=4, size=32)
    (root / "train" / "hotdog" / "0.png").write_bytes(b"\x89PNG truncated")
    code, _, err = cli("finetune-hotdog", "--set", f"data.root={root}", "--set", "model.weights=none",
                       "--set", "data.image_size=32", "--set", "data.num_workers=1", "--device", "cpu",
                       "--epochs", "1")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"cvtool: error: cannot read image {root / 'train' / 'hotdog' / '0.png'}: ")


def test_errors_on_other_torchrun_ranks_name_their_rank(cli, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    code, _, err = cli("train-ssd", "--set", "optim.lrr=1")
    assert code == 2 and err.startswith("cvtool[rank 1]: error: ") and "optim.lr" in err
    monkeypatch.setenv("RANK", "0")
    assert cli("train-ssd", "--set", "optim.lrr=1")[2].startswith("cvtool: error: ")
