"""Quality gates: parsing METRIC=VALUE, direction by metric name, unknown names."""

import math

import pytest

from cvtool.errors import InputError
from cvtool.metrics import failures, lower_is_better, parse, require_known


def test_direction_follows_the_metric_family():
    assert lower_is_better("val_loss") and lower_is_better("val_class_err") and lower_is_better("val_bbox_mae")
    assert not lower_is_better("val_acc") and not lower_is_better("val_map50") and not lower_is_better("val_miou")


def test_bounds_and_drops_fail_in_the_metrics_own_direction():
    under, over = parse(["val_acc=0.9"], "under") + parse(["val_loss=0.5"], "over")
    drop_score, drop_loss = parse(["val_acc=0.02", "val_loss=0.1"], "drop")
    records = failures([under, over], {"val_acc": 0.85, "val_loss": 0.4})
    assert [r["passed"] for r in records] == [False, True]
    assert "0.85" in records[0]["message"] and "--fail-under" in records[0]["message"]
    assert not drop_score.failed(0.89, baseline=0.9) and drop_score.failed(0.87, baseline=0.9)
    assert not drop_loss.failed(0.35, baseline=0.3) and drop_loss.failed(0.45, baseline=0.3)
    assert under.failed(math.nan) and over.failed(math.inf)


@pytest.mark.parametrize("text", ["val_acc", "=0.9", "val_acc=high", "val_acc=nan"])
def test_a_malformed_gate_is_a_usage_error(text):
    with pytest.raises(InputError, match="METRIC=VALUE"):
        parse([text], "under")


def test_a_negative_drop_is_refused_and_an_unknown_metric_gets_a_suggestion():
    with pytest.raises(InputError, match=">= 0"):
        parse(["val_acc=-0.1"], "drop")
    with pytest.raises(InputError, match="did you mean val_acc"):
        require_known(parse(["val_accc=0.9"], "under"), ["val_acc", "val_loss"], "finetune-hotdog")
