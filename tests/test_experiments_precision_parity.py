"""Precision parity: the runs it trains, its tidy files, its verdict, and where it does not apply."""

import pandas as pd
import pytest

from hipcore import cli
from hipcore.experiments import common
from hipcore.experiments import precision_parity as parity
from hipcore.experiments.image_arms import HIP_MAE
from hipcore.report import read_comparisons


def fake_rows(tmp_path, accuracies):
    """Rows as `run` returns them, with MAE metrics.csv files a few steps long."""
    rows = []
    for precision, per_seed in accuracies.items():
        for seed, accuracy in enumerate(per_seed):
            run = tmp_path / f"pre-{precision}-{seed}"
            run.mkdir()
            steps = [2, 4, 6]
            pd.DataFrame({"run_id": "x", "seed": seed, "epoch": 1, "step": steps + [6],
                          "split": ["train"] * 3 + ["test"], "metric": "loss",
                          "value": [0.9, 0.7, 0.6, 0.55]}).to_csv(run / "metrics.csv", index=False)
            rows.append({"precision": precision, "seed": seed, "test_accuracy": accuracy, "test_loss": 0.5,
                         "pretrain_test_loss": 0.55, "train_examples_per_s": 100.0, "total_seconds": 3.0,
                         "pretrain_run_dir": str(run)})
    return pd.DataFrame(rows)


def test_settings_are_the_image_settings_with_a_dense_log():
    assert parity.settings_for("quick", "bf16")["precision"] == "bf16"
    settings = parity.settings_for("quick", "fp32")          # bf16 may not exist on this CPU
    assert settings["log_every"] == parity.LOG_EVERY
    pre, sup = common.train_configs(HIP_MAE, 0, settings, dataset="fashion_mnist")
    assert pre.log_every == sup.log_every == parity.LOG_EVERY
    assert pre.epochs == common.IMAGE_TABLE["quick"]["pretrain_epochs"]
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        parity.settings_for("fast", "bf16")


def test_write_gives_tidy_files_curves_and_an_equivalence_row_per_seed(tmp_path):
    rows = fake_rows(tmp_path, {"fp32": [70.0, 71.0, 72.0], "bf16": [70.1, 70.9, 72.2]})
    out = tmp_path / "parity"
    paths = parity.write(out, rows)
    assert {p.name for p in paths} == {"parity.csv", "curves.csv", "comparisons.csv", "parity.png", "parity.svg"}
    tidy = pd.read_csv(out / "parity.csv")
    assert list(tidy.columns) == ["precision", "seed", "metric", "value"] and len(tidy) == 6 * 5
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.columns) == ["precision", "seed", "step", "loss"] and len(curves) == 6 * 3
    pairs = read_comparisons(out / "comparisons.csv")
    assert [(p["claim"], p["paper_key"], float(p["margin"])) for p in pairs] == [("same", "", 1.0)] * 3
    table = parity.verdict_table(out / "comparisons.csv")
    assert table.loc[0, "seeds"] == 3 and table.loc[0, "verdict"] == "reproduced"


def test_a_real_gap_is_not_called_parity(tmp_path):
    rows = fake_rows(tmp_path, {"fp32": [70.0, 71.0, 72.0], "bf16": [66.0, 67.5, 68.0]})
    parity.write(tmp_path / "parity", rows)
    assert parity.verdict_table(tmp_path / "parity" / "comparisons.csv").loc[0, "verdict"] != "reproduced"


def test_record_needs_a_second_precision(tmp_path):
    rows = fake_rows(tmp_path, {"fp32": [70.0, 71.0]})
    with pytest.raises(ValueError, match="other than fp32"):
        parity.record(tmp_path, rows)


def test_run_trains_the_mae_arm_once_per_precision_and_seed(tmp_path):
    rows = parity.run("smoke", seeds=(0,), against="fp32", runs_dir=tmp_path / "runs")
    assert list(rows["precision"]) == ["fp32"] and rows.loc[0, "seed"] == 0
    curves = parity.mae_curves(rows)
    assert len(curves) >= 1 and curves["loss"].notna().all()


def test_command_says_when_fp32_is_already_the_fastest(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(parity, "fastest_precision", lambda device="auto": "fp32")
    assert cli.main(["parity", "--profile", "smoke", "--out", str(tmp_path / "p")]) == 0
    assert "does not apply here" in capsys.readouterr().out and not (tmp_path / "p").exists()
