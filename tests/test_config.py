from pathlib import Path

import pytest

from cvtool import config as c
from cvtool.tasks import hotdog

REPO = Path(__file__).resolve().parents[1]


def load(*sets, path=None):
    return c.load(hotdog.Config, path, list(sets))


def test_defaults_match_the_book_config_file():
    """Apart from the decay on norms and biases, which the book applies and cvtool's default does not."""
    assert load(path=REPO / "configs" / "hotdog.yaml") == load("optim.decay_norm_and_bias=true")


def test_section_defaults_come_from_the_task():
    cfg = load()
    assert cfg.optim.lr == pytest.approx(0.0064) and cfg.optim.weight_decay == pytest.approx(1e-3 / 128)
    assert load("optim.momentum=0.9").optim.lr == pytest.approx(0.0064)


def test_set_parses_yaml_values():
    cfg = load("data.mean=[0.1, 0.2, 0.3]", "train.compile=true", "train.grad_clip=null", "optim.lr=1e-3")
    assert cfg.data.mean == [0.1, 0.2, 0.3]
    assert cfg.train.compile is True and cfg.train.grad_clip is None
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert load("model.weights=none").model.weights == "none"


def test_an_unquoted_off_is_the_choice_not_a_boolean(tmp_path):
    """YAML reads off/no/on/yes as booleans; where a choice is spelled so, it is meant."""
    assert load("train.amp=off").train.amp == "off"
    written = tmp_path / "amp.yaml"
    written.write_text("train:\n  amp: off\n")
    assert load(path=written).train.amp == "off"
    with pytest.raises(c.ConfigError, match="train.amp must be one of auto"):
        load("train.amp=true")


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", "unknown config key optim.lrr; did you mean optim.lr?"),
    ("trian.epochs=3", "unknown config key trian.epochs; did you mean train.epochs?"),
    ("optim.lr=0", "optim.lr must be > 0"),
    ("optim.lr=.nan", "optim.lr must be a finite number"),
    ("data.batch_size=-4", "data.batch_size must be >= 1"),
    ("train.epochs=2.5", "train.epochs must be an integer"),
    ("train.compile=yes please", "train.compile must be true or false"),
    ("train.amp=fp8", "train.amp must be one of auto | off | bf16 | fp16"),
    ("data.mean=0.5", "data.mean must be a list"),
    ("optim=3", "optim must be a mapping"),
    ("noequals", "--set expects KEY=VALUE"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(c.ConfigError, match=message.replace("?", r"\?").replace("|", r"\|").replace(".", r"\.")):
        load(override)


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  root: [unclosed\n")
    with pytest.raises(c.ConfigError, match="bad.yaml line"):
        load(path=bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(c.ConfigError, match="must hold a mapping"):
        load(path=listing)
    with pytest.raises(c.ConfigError, match="does not exist"):
        load(path=tmp_path / "missing.yaml")
    with pytest.raises(c.ConfigError, match="is not a file"):
        load(path=tmp_path)


def test_render_is_commented_yaml_that_loads_back():
    import yaml

    text = c.render(hotdog.Config())
    assert "lr: 0.0064  # learning rate at reference_batch" in text
    data = yaml.safe_load(text)
    assert c.from_dict(hotdog.Config, data) == hotdog.Config()


def test_config_commands(cli, tmp_path):
    code, out, _ = cli("config", "show", "finetune-hotdog")
    assert code == 0 and "head_lr_mult: 10.0" in out
    good = tmp_path / "good.yaml"
    good.write_text("optim:\n  lr: 0.5\n")
    code, out, _ = cli("config", "validate", good, "--task", "finetune-hotdog")
    assert code == 0 and "valid config for finetune-hotdog" in out
    bad = tmp_path / "hotdog.yaml"
    bad.write_text("optim:\n  lrr: 0.5\n")
    code, out, err = cli("config", "validate", bad)
    assert code == 2 and "did you mean optim.lr?" in err and "Traceback" not in err
