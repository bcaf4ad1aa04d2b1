"""Repeated seeds: --seeds runs, seeds.json and its statistics, gates on the group, runs DIR --seeds."""

import json
import math
import shutil

import pytest
import yaml

from conftest import strict_json
from cvtool.seeds import spread, t_quantile

pytestmark = pytest.mark.slow


def test_the_t_interval():
    assert [round(t_quantile(0.975, df), 3) for df in (1, 2, 4, 10, 30)] == [12.706, 4.303, 2.776, 2.228, 2.042]
    s = spread([0.5, 0.7, 0.6])
    assert s["n"] == 3 and math.isclose(s["mean"], 0.6) and math.isclose(s["std"], 0.1)
    assert math.isclose(s["ci95"][1] - s["mean"], 4.3027 * 0.1 / math.sqrt(3), rel_tol=1e-4)
    assert spread([0.5])["std"] is None and spread([0.5])["ci95"] is None


def test_seeds_run_resume_gate_and_list_as_one_group(cli, tiny_hotdog, tmp_path):
    out = tmp_path / "group"
    args = ["finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1", "--out", out]
    code, stdout, err = cli(*args, "--seeds", "0,1", "--json", "--fail-under", "val_acc=-1", "--gate-on", "min")
    assert code == 0, err
    record = strict_json(stdout)
    assert record == strict_json((out / "seeds.json").read_text())
    assert [s["seed"] for s in record["seeds"]] == [0, 1] and record["completed"] == 2
    for seed in (0, 1):
        assert yaml.safe_load((out / f"seed-{seed}" / "config.yaml").read_text())["train"]["seed"] == seed
    accs = [s["best"]["val_acc"] for s in record["seeds"]]
    assert math.isclose(record["best"]["val_acc"]["mean"], sum(accs) / 2)
    assert record["best"]["val_acc"]["min"] == min(accs) and record["final"]["val_loss"]["n"] == 2
    assert record["gates"][0]["passed"] and record["gates"][0]["value"] == min(accs)

    kept = (out / "seed-0" / "summary.json").stat().st_mtime_ns
    code, stdout, err = cli(*args, "--seeds", "0,1,2", "--resume", "--fail-under", "val_acc=1.5")
    assert code == 4 and "gate failed: val_acc" in err and "(--fail-under)" in err
    assert (out / "seed-0" / "summary.json").stat().st_mtime_ns == kept  # completed seeds are kept
    assert "3 of 3 seeds completed" in stdout and "best val_acc" in stdout
    record = json.loads((out / "seeds.json").read_text())
    assert record["completed"] == 3 and not record["gates"][0]["passed"]
    assert math.isclose(record["gates"][0]["value"], record["best"]["val_acc"]["mean"])

    code, stdout, _ = cli("runs", tmp_path, "--json")
    (row,) = json.loads(stdout)
    assert code == 0 and row["run_dir"] == str(out) and row["seeds"] == 3 and row["status"] == "completed"
    assert math.isclose(row["best_value"], record["best"]["val_acc"]["mean"])


def test_runs_summarises_seeds_run_elsewhere(cli, tiny_hotdog, tmp_path):
    group = tmp_path / "array-job"
    for seed in (3, 7):  # as one scheduler job per seed would run them
        code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--epochs", "1", "--max-steps", "1", "--seed", seed,
                           "--out", group / f"seed-{seed}")
        assert code == 0, err
    (group / "notes").mkdir()
    code, stdout, err = cli("runs", group, "--seeds", "--json")
    record = strict_json(stdout)
    assert code == 0 and [s["seed"] for s in record["seeds"]] == [3, 7]
    assert record == strict_json((group / "seeds.json").read_text())
    code, stdout, _ = cli("runs", group, "--seeds")
    assert code == 0 and "2 of 2 seeds completed" in stdout and f"wrote {group / 'seeds.json'}" in stdout
    shutil.rmtree(group / "seed-3")
    shutil.rmtree(group / "seed-7")
    code, _, err = cli("runs", group, "--seeds")
    assert code == 2 and "holds no seed folders" in err


def test_bad_seed_options_are_exit_2(cli, tiny_hotdog, tmp_path):
    for extra, message in ((["--seeds", "0,x"], "expected distinct seeds"), (["--seeds", "1,1"], "distinct"),
                           (["--seeds", "0,1", "--seed", "3"], "--seed and --seeds exclude each other"),
                           (["--seeds", "0", "--gate-on", "max"], "expected mean or min")):
        code, _, err = cli("finetune-hotdog", *tiny_hotdog, "--out", tmp_path / "x", *extra)
        assert code == 2 and message in err, err
