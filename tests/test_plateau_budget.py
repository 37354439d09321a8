"""The plateau-budget measurement: configs under the rule, and one arm measured end to end."""

import json

import pytest
from test_baselines import Images
from test_train_engine import TINY

from hipcore.cli import build_parser
from hipcore.config import BlockConfig, variant
from hipcore.experiments import plateau_budget
from hipcore.experiments.common import IMAGE_TABLE, train_configs
from hipcore.results import read_csv


def tiny_variant(tmp_path):
    config = variant("small3").replace(blocks=tuple(BlockConfig(**b) for b in TINY["blocks"]),
                                       embed_channels=TINY["embed_channels"])
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(config.to_dict()))
    return str(path)


def test_plateau_configs_turn_the_rule_on_in_their_own_run_folders(tmp_path):
    settings = IMAGE_TABLE["smoke"]
    pre, sup = plateau_budget.plateau_configs(plateau_budget.ARMS["hip-mae"], 1, settings, max_epochs=9,
                                              min_epochs=3, val_fraction=0.2, runs_dir=tmp_path)
    plain_pre, plain_sup = train_configs(plateau_budget.ARMS["hip-mae"], 1, settings, dataset="fashion_mnist",
                                         runs_dir=tmp_path)
    for cfg, plain in ((pre, plain_pre), (sup, plain_sup)):
        assert (cfg.plateau, cfg.val_fraction, cfg.min_epochs, cfg.epochs, cfg.seed) == (True, 0.2, 3, 9, 1)
        assert cfg.schedule == "constant" and plain.schedule == "cosine"     # the cap does not shape the curve
        assert cfg.run_id != plain.run_id and cfg.run_dir.split("/")[-1].startswith(cfg.run_id)
        assert cfg.run_dir.split("/")[-1][len(cfg.run_id):] == plain.run_dir.split("/")[-1][len(plain.run_id):]
    assert sup.init_from == f"{pre.run_dir}/last.pt"
    args = build_parser().parse_args(["plateau-budget", "--arm", "hip-learned", "--profile", "smoke"])
    assert (args.arm, args.max_epochs, args.val_fraction, args.lr) == (["hip-learned"], 60, 0.1, None)
    args = build_parser().parse_args(["plateau-budget", "--arm", "hip-learned", "perceiver-fourier", "--lr", "1e-3",
                                      "2e-3", "--warmup-epochs", "0.5", "2"])
    assert (args.arm, args.lr, args.warmup_epochs) == (["hip-learned", "perceiver-fourier"], [1e-3, 2e-3], [0.5, 2.0])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["plateau-budget", "--arm", "hip-learned", "--lr", "0"])
    with pytest.raises(ValueError, match="unknown arm"):
        plateau_budget.measure("resnet", settings)


def test_one_arm_is_measured_to_its_plateau_beside_the_baselines(tmp_path):
    settings = dict(IMAGE_TABLE["smoke"], variant=tiny_variant(tmp_path), limit_train=None, limit_test=None,
                    batch_size=16, lr=3e-3, precision="fp32", quiet=True)
    measured = plateau_budget.measure("hip-learned", settings, max_epochs=12, min_epochs=2, val_fraction=0.25,
                                      with_baselines=True, runs_dir=tmp_path / "runs",
                                      train_data=Images(96), test_data=Images(40, seed=1))
    (stage,) = measured["stages"]
    assert stage["cap"] == 12 and 2 <= stage["epochs_run"] <= 12
    assert stage["converged"] or stage["epochs_run"] == 12                 # the rule, or the cap
    assert 0 <= stage["test"] <= 100 and stage["seconds_per_epoch"] > 0
    assert {r["model"] for r in measured["baselines"]} >= {"logistic regression", "small CNN"}
    assert all(r["train_size"] == 72 for r in measured["baselines"] if "train_size" in r)
    lines = plateau_budget.report_lines(measured)
    assert lines[0] == "HiP, classification-learned positions:" and "epochs of at most 12" in lines[1]


def test_a_recipe_check_measures_every_arm_at_every_lr_and_warmup(tmp_path):
    settings = dict(IMAGE_TABLE["smoke"], variant=tiny_variant(tmp_path), limit_train=None, limit_test=None,
                    batch_size=16, precision="fp32", quiet=True)
    rows = plateau_budget.recipe_rows(["hip-learned"], settings, lrs=[1e-3, 3e-3], warmups=[0.5], max_epochs=3,
                                      min_epochs=2, val_fraction=0.25, runs_dir=tmp_path / "runs",
                                      train_data=Images(64), test_data=Images(32, seed=1))
    assert [(r["lr"], r["warmup_epochs"]) for r in rows] == [(1e-3, 0.5), (3e-3, 0.5)]
    assert rows[0]["best_val"] != rows[1]["best_val"] or rows[0]["test"] != rows[1]["test"]   # the lr applied
    path = plateau_budget.write_recipe(tmp_path / "recipe.csv", rows)
    assert path.read_text().splitlines()[0] == ",".join(plateau_budget.RECIPE_FIELDS)
    curves = read_csv(tmp_path / plateau_budget.CURVES_FILE, plateau_budget.CURVE_FIELDS)
    assert len(curves) == sum(r["epochs_run"] for r in rows)                 # every epoch of every run


def test_every_epoch_of_a_plateau_run_is_written_with_why_it_stopped(tmp_path):
    settings = dict(IMAGE_TABLE["smoke"], variant=tiny_variant(tmp_path), limit_train=None, limit_test=None,
                    batch_size=16, lr=3e-3, precision="fp32", quiet=True, plateau_window=3, plateau_slope=20.0,
                    plateau_confidence=0.6)                 # 24 validation images: a loose rule, so it stops
    measured = plateau_budget.measure("hip-learned", settings, max_epochs=12, min_epochs=2, val_fraction=0.25,
                                      runs_dir=tmp_path / "runs", train_data=Images(96), test_data=Images(40, seed=1))
    (stage,) = measured["stages"]
    curve = stage["curve"]
    assert [p["epoch"] for p in curve] == list(range(1, stage["epochs_run"] + 1))
    assert all(p["train_loss"] > 0 and p["lr"] > 0 and p["seconds"] > 0 and 0 <= p["val"] <= 100 for p in curve)
    assert max(p["val"] for p in curve) == pytest.approx(stage["best_val"])
    judged = [p for p in curve if "trend" in p]                             # from the window's third epoch on
    assert [p["epoch"] for p in judged] == list(range(3, stage["epochs_run"] + 1))
    stopped = [p["trend_bound"] < p["threshold"] for p in judged]           # the rule's reason, epoch by epoch
    assert stopped == [p["converged"] for p in judged]
    assert stopped[-1] == stage["converged"] and not any(stopped[:-1])
    path = plateau_budget.write_recipe(tmp_path / "out" / "plateau.csv",
                                       [{"arm": measured["arm"], "lr": 3e-3, "warmup_epochs": 0.5, **stage}])
    written = read_csv(path.with_name("curves.csv"), plateau_budget.CURVE_FIELDS)
    assert len(written) == stage["epochs_run"] and set(written["val_metric"]) == {"top-1 %"}
    assert written["lr"].astype(float).tolist() == pytest.approx([p["lr"] for p in curve])
