"""The GPU session's prepared command, dry-run on the CPU at the smoke profile: it stops before
its budget with nothing lost, goes on from its folder, and writes results with provenance once
every job is done."""

import csv
import json

import pytest

from hipcore import cli, gpu_reproduce
from hipcore.train import TrainConfig


def test_it_stops_before_the_budget_then_goes_on_and_writes_results(tmp_path, capsys):
    out = tmp_path / "gpu"
    first = gpu_reproduce.run("smoke", out=out, budget_seconds=gpu_reproduce.STOP_MARGIN_S + 1, device="cpu",
                              seeds=(0,), parallel=3, log=lambda line: None)
    assert first["done"] == [] and len(first["left"]) == 3 and first["written"] == []
    assert not (out / "results").exists()                       # nothing is written half-done

    second = gpu_reproduce.run("smoke", out=out, budget_seconds=600, device="cpu", seeds=(0,), parallel=3,
                               log=lambda line: None)
    assert second["left"] == [] and len(second["done"]) == 3
    for notebook in gpu_reproduce.NOTEBOOKS:
        folder = out / "results" / notebook / "smoke"
        with open(folder / "comparisons.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        found = {r["finding"] for r in rows}
        assert "F1 MAE-learned vs classification-learned positions" in found
        assert all(r["converged"] in ("yes", "no") and r["epochs"] for r in rows)   # the plateau rule ran
        record = json.loads((folder / "provenance.json").read_text())
        assert "verified" in record and "reproduce-gpu --profile smoke" in record["command"]
    assert "HiP (MAE-learned) vs Perceiver IO (Fourier)" in {
        r["finding"] for r in csv.DictReader(open(out / "results" / "01_imagenet_comparison" / "smoke" /
                                                   "comparisons.csv"))}

    third = gpu_reproduce.run("smoke", out=out, budget_seconds=60, device="cpu", seeds=(0,),
                              log=lambda line: None)                               # all done: nothing trains
    assert third["left"] == [] and len(third["written"]) == 6


def test_bad_budgets_and_profiles_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ValueError, match="must be a finite number of seconds above the 20 s"):
        gpu_reproduce.run("smoke", out=tmp_path, budget_seconds=5, device="cpu")
    with pytest.raises(ValueError, match="parallel"):
        gpu_reproduce.run("smoke", out=tmp_path, budget_seconds=60, device="cpu", parallel=0)
    with pytest.raises(SystemExit):
        cli.main(["reproduce-gpu", "--profile", "nightly", "--out", str(tmp_path), "--budget-seconds", "60"])
    assert "invalid choice: 'nightly'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["reproduce-gpu", "--out", str(tmp_path)])                      # no budget
    assert "--budget-seconds" in capsys.readouterr().err


def test_the_large_batch_recipe_scales_learning_rates_by_the_square_root():
    row = {"batch_size": 128, "lr": 1e-3, "pretrain_lr": 1.5e-3, "warmup_epochs": 2, "epochs": 30}
    big = gpu_reproduce.large_batch(row, 1024)
    assert big["batch_size"] == 1024 and big["lr"] == pytest.approx(1e-3 * 8 ** 0.5)
    assert big["pretrain_lr"] == pytest.approx(1.5e-3 * 8 ** 0.5) and big["warmup_epochs"] == 2
    assert gpu_reproduce.large_batch(row, 128) == row
    settings = gpu_reproduce.settings_for("full", "cuda", 200, batch=512)
    assert settings["batch_size"] == 512 and settings["plateau"]
    assert settings.get("plateau_window", TrainConfig.plateau_window) == TrainConfig.plateau_window   # TrainConfig's
