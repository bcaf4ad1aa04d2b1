"""Reporter: rich bars on a terminal, nothing but plain lines in a log or under CI."""

from __future__ import annotations

import io

from cvtool.engine.progress import Reporter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_carries_its_label_and_status_on_a_terminal(monkeypatch):
    monkeypatch.delenv("CI")
    stream = Terminal()
    reporter = Reporter(stream)
    reporter.start_epoch(2, 5, steps=3)
    reporter.step()
    reporter.stop_bar()
    reporter.start_bar("stylize 4x6", 2, bar_width=20)
    reporter.step("loss 1.5")
    reporter.step("loss 1.5")
    reporter.stop_bar()
    shown = stream.getvalue()
    assert "epoch 2/5" in shown and "stylize 4x6" in shown and "2/2" in shown and "loss 1.5" in shown
    assert reporter.progress is None


def test_no_bar_when_plain_or_quiet(monkeypatch):
    plain, quiet = io.StringIO(), Terminal()
    monkeypatch.delenv("CI")
    for reporter in (Reporter(plain), Reporter(quiet, quiet=True)):
        reporter.start_bar("stylize 4x6", 2)
        assert reporter.progress is None
        reporter.step("loss 1.5")
        reporter.stop_bar()
    assert plain.getvalue() == quiet.getvalue() == ""
