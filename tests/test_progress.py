"""Reporter: rich bars on a terminal, nothing but plain lines in a log or under CI."""

from __future__ import annotations

import io
import re

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


def test_the_epoch_table_puts_splits_in_rows_and_fits_80_columns(monkeypatch):
    monkeypatch.delenv("CI")
    monkeypatch.setenv("COLUMNS", "80")
    stream = Terminal()
    row = {"epoch": 3, "train_loss": 0.3961, "train_class_err": 0.2012, "train_bbox_mae": 0.005729,
           "val_loss": 0.3561, "val_class_err": 0.004754, "val_bbox_mae": 0.006857, "val_map50": 0.9612,
           "val_map": 0.5102, "lr": 6.4, "epoch_seconds": 12.48, "images_per_second": 386.8}
    Reporter(stream).end_epoch(3, 10, row)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in stream.getvalue().splitlines()]
    assert max(map(len, lines)) <= 80
    text = "\n".join(lines)
    assert "epoch 3/10" in text and "map50" in text and "0.9612" in text and "…" not in text
    train = next(line for line in lines if "train" in line)
    assert "0.3961" in train and "0.9612" not in train
    assert "lr 6.4  12.48 s  386.8 images/s" in text  # the footer on one line


def test_per_class_figures_wrap_below_the_table_at_80_columns(monkeypatch):
    monkeypatch.delenv("CI")
    monkeypatch.setenv("COLUMNS", "80")
    stream = Terminal()
    row = {"train_loss": 0.5, "val_loss": 0.6, "val_miou": 0.4, "val_miou_background_only": 0.03,
           **{f"val_iou/class{k}": 0.25 for k in range(21)}, "lr": 0.1, "epoch_seconds": 3.0,
           "images_per_second": 1234.6}
    Reporter(stream).end_epoch(1, 1, row)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in stream.getvalue().splitlines()]
    assert max(map(len, lines)) <= 80
    text = "\n".join(lines)
    assert "…" not in text and "miou_background_only" in text and "val iou: class0 0.25" in text
    assert "class20 0.25" in text and "1235 images/s" in text


def test_the_running_loss_stays_on_the_bar_between_updates(monkeypatch):
    monkeypatch.delenv("CI")
    reporter = Reporter(Terminal())
    reporter.start_epoch(1, 1, steps=20)
    reporter.step("loss 0.7311")
    reporter.step()
    assert reporter.progress.tasks[0].fields["status"] == "loss 0.7311"
    reporter.stop_bar()
