"""The plateau-budget measurement: configs under the rule, and one arm measured end to end."""

import json

import pytest
from test_baselines import Images
from test_train_engine import TINY

from hipcore.cli import build_parser
from hipcore.config import BlockConfig, variant
from hipcore.experiments import plateau_budget
from hipcore.experiments.common import IMAGE_TABLE, train_configs


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
        assert cfg.run_id != plain.run_id and cfg.run_dir.split("/")[-1].startswith(cfg.run_id)
        assert cfg.run_dir.split("/")[-1][len(cfg.run_id):] == plain.run_dir.split("/")[-1][len(plain.run_id):]
    assert sup.init_from == f"{pre.run_dir}/last.pt"
    args = build_parser().parse_args(["plateau-budget", "--arm", "hip-learned", "--profile", "smoke"])
    assert (args.arm, args.max_epochs, args.val_fraction) == ("hip-learned", 60, 0.1)
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
