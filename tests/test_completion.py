"""Shell completion (Typer's): the scripts for bash, zsh and fish, and the answers they ask cvtool for."""

from __future__ import annotations

import pytest

from cvtool.cli import main


def answer(monkeypatch, capsys, **env: str) -> str:
    """What cvtool prints when a completion script calls it with ``env``."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code in (0, None)
    return capsys.readouterr().out


def test_bash_completes_commands_and_options(monkeypatch, capsys):
    commands = answer(monkeypatch, capsys, _CVTOOL_COMPLETE="complete_bash", COMP_WORDS="cvtool train-",
                      COMP_CWORD="1").split()
    assert {"train-ssd", "train-fcn", "train-dog"} <= set(commands) and "eval" not in commands
    options = answer(monkeypatch, capsys, _CVTOOL_COMPLETE="complete_bash", COMP_WORDS="cvtool eval --c",
                     COMP_CWORD="2").split()
    assert options == ["--checkpoint", "--counts"]


def test_zsh_and_fish_complete_with_help(monkeypatch, capsys):
    zsh = answer(monkeypatch, capsys, _CVTOOL_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="cvtool eval --cou")
    assert '"--counts":"Write counts' in zsh
    fish = answer(monkeypatch, capsys, _CVTOOL_COMPLETE="complete_fish", _TYPER_COMPLETE_ARGS="cvtool train-ss",
                  _TYPER_COMPLETE_FISH_ACTION="get-args")
    assert fish.startswith("train-ssd\tTrain TinySSD")


@pytest.mark.parametrize("shell, mark", [("bash", "complete -o default -F _cvtool_completion cvtool"),
                                         ("zsh", "compdef _cvtool_completion cvtool"),
                                         ("fish", "complete --command cvtool")])
def test_show_completion_prints_each_shell_script(monkeypatch, capsys, shell, mark):
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    with pytest.raises(SystemExit) as stop:
        main(["--show-completion", shell])
    assert stop.value.code == 0
    script = capsys.readouterr().out
    assert mark in script and "_CVTOOL_COMPLETE" in script
