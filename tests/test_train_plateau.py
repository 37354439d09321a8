"""The plateau rule on synthetic curves, the validation split, and runs that stop at their plateau."""

import pytest
import torch
from test_train_engine import config, run

from hipcore.train import ConfigMismatchError, NonFiniteLossError, TrainConfig, plateau, read_metrics
from hipcore.train.validation import split_digest, validation_indices

# ---- the rule ----

def test_a_curve_that_has_flattened_has_reached_its_plateau():
    curve = [0.50, 0.70, 0.78, 0.80, 0.801, 0.802, 0.801, 0.804]        # +0.2 points in the last 2 of 8
    assert plateau.window(len(curve)) == 2
    assert plateau.gain(curve, "accuracy") == pytest.approx(0.2)
    assert plateau.reached(curve)


def test_a_curve_still_improving_has_not():
    curve = [0.50, 0.60, 0.66, 0.70, 0.72, 0.74, 0.75, 0.76]           # +2 points in the last 2
    assert not plateau.reached(curve)
    assert not plateau.reached(curve[:3], min_epochs=4)                 # too early to judge
    assert plateau.reached([0.5, 0.6, 0.6, 0.6], min_epochs=4, points=0.3)
    assert not plateau.reached([0.5, 0.6, 0.6, 0.6], min_epochs=5)


def test_noise_around_a_flat_level_is_a_plateau_and_noise_on_a_rise_is_not():
    g = torch.Generator().manual_seed(0)
    noise = (0.01 * torch.randn(40, generator=g)).tolist()               # +-1 point per epoch
    flat = [0.8 + n for n in noise]
    rising = [0.5 + 0.01 * e + n for e, n in enumerate(noise)]           # +1 point per epoch
    assert plateau.reached(flat)
    assert not plateau.reached(rising)


def test_the_loss_rule_is_relative():
    assert plateau.reached([1.0, 0.5, 0.4, 0.399, 0.398, 0.398, 0.398, 0.397], "loss", relative=0.01)
    assert not plateau.reached([1.0, 0.5, 0.4, 0.35, 0.3, 0.27, 0.25, 0.2], "loss", relative=0.01)
    assert plateau.gain([2.0, 1.0, 1.0, 0.9], "loss") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="mode"):
        plateau.gain([1, 2], "top5")


# ---- the split ----

def test_the_validation_split_is_seeded_disjoint_and_never_empty():
    keep, held = validation_indices(100, 0.1, seed=0)
    assert len(held) == 10 and len(keep) == 90
    assert set(keep.tolist()).isdisjoint(held.tolist()) and len(set(keep.tolist()) | set(held.tolist())) == 100
    assert torch.equal(held, validation_indices(100, 0.1, seed=0)[1])
    assert not torch.equal(held, validation_indices(100, 0.1, seed=1)[1])
    assert len(validation_indices(10, 0.01, seed=0)[1]) == 1
    assert split_digest(held, 100) != split_digest(validation_indices(100, 0.1, seed=1)[1], 100)
    with pytest.raises(ValueError, match="leaves none"):
        validation_indices(1, 0.5, 0)


def test_validation_and_plateau_are_opt_in_and_checked():
    off = TrainConfig()
    assert off.run_id == TrainConfig(min_epochs=9, plateau_points=1.0).run_id   # rule unused: same run
    assert TrainConfig(val_fraction=0.1).run_id != off.run_id
    on = TrainConfig(val_fraction=0.1, plateau=True)
    assert on.run_id != TrainConfig(val_fraction=0.1, plateau=True, min_epochs=5).run_id
    assert TrainConfig.from_dict({k: v for k, v in on.to_dict().items()}).run_id == on.run_id
    with pytest.raises(ValueError, match="val_fraction > 0"):
        TrainConfig(plateau=True)
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig(val_fraction=0.1, plateau=True, max_steps=5)
    with pytest.raises(ValueError, match="min_epochs"):
        TrainConfig(val_fraction=0.1, plateau=True, epochs=3, min_epochs=4)
    with pytest.raises(ValueError, match="val_fraction must be"):
        TrainConfig(val_fraction=1.0)


# ---- runs ----

def test_a_validation_run_logs_curves_and_reports_the_best_validation_epoch(tmp_path):
    result = run(config(tmp_path, epochs=3, val_fraction=0.25), n=80)
    rows = read_metrics(result.run_dir)
    val = {(r["epoch"], r["metric"]) for r in rows if r["split"] == "val"}
    assert val == {(e, m) for e in (1, 2, 3) for m in ("accuracy", "loss")}
    val_acc = {r["epoch"]: r["value"] for r in rows if r["split"] == "val" and r["metric"] == "accuracy"}
    test_acc = {r["epoch"]: r["value"] for r in rows if r["split"] == "test" and r["metric"] == "accuracy"}
    best = max(val_acc, key=lambda e: (val_acc[e], -e))                  # the first best epoch
    assert result.selected_epoch == best and result.metrics["test_accuracy"] == test_acc[best]
    # Three epochs are fewer than min_epochs (4): judged not at the plateau, though the rule stopped nothing.
    assert result.best == val_acc[best] and result.epochs_run == 3 and result.converged is False
    assert result.steps == 3 * (60 // 16)                                # 20 of the 80 held out
    with pytest.raises(ConfigMismatchError, match="val_fraction: 0.25 -> 0.5"):
        run(config(tmp_path, epochs=3, val_fraction=0.5), n=80)


def test_a_plateau_run_stops_early_and_a_finished_one_stays_finished(tmp_path):
    cfg = config(tmp_path, epochs=30, val_fraction=0.25, plateau=True, min_epochs=3)
    result = run(cfg, n=80)
    assert result.converged is True and 3 <= result.epochs_run < 30
    rows = read_metrics(result.run_dir)
    flags = [r["value"] for r in rows if r["split"] == "plateau"]
    assert len(flags) == result.epochs_run and flags[-1] == 1.0 and set(flags[:-1]) <= {0.0}
    again = run(cfg, n=80)
    assert again.steps == result.steps and again.metrics == result.metrics and again.converged


def test_a_plateau_run_resumed_after_a_crash_ends_as_an_uninterrupted_one(tmp_path):
    kw = dict(epochs=30, val_fraction=0.25, plateau=True, min_epochs=3, checkpoint_every=1, clip_grad=None)
    whole = run(config(tmp_path, "whole", **kw), n=80)
    with pytest.raises(NonFiniteLossError):
        run(config(tmp_path, "cut", **kw), n=80, nan_after=5)          # stops in epoch 2
    resumed = run(config(tmp_path, "cut", **kw), n=80)
    assert resumed.steps == whole.steps and resumed.metrics == whole.metrics
    assert resumed.converged == whole.converged and resumed.selected_epoch == whole.selected_epoch
    strip = lambda p: [(r["epoch"], r["step"], r["split"], r["metric"], r["value"]) for r in read_metrics(p)]  # noqa: E731
    assert strip(resumed.run_dir) == strip(whole.run_dir)


def test_mae_pretraining_logs_its_validation_loss_and_stops_on_its_relative_plateau(tmp_path):
    cfg = config(tmp_path, task="pretrain", epochs=12, mask_ratio=0.75, val_fraction=0.25, plateau=True,
                 min_epochs=2, plateau_relative=0.5)                    # a loose rule: stops early
    result = run(cfg, n=80)
    rows = read_metrics(result.run_dir)
    val = {r["epoch"]: r["value"] for r in rows if r["split"] == "val" and r["metric"] == "loss"}
    assert sorted(val) == list(range(1, result.epochs_run + 1))
    assert result.converged and result.epochs_run < 12
    assert result.best == min(val.values()) and result.metrics["val_loss"] == result.best
    assert plateau.reached([val[e] for e in sorted(val)], "loss", min_epochs=2, relative=0.5)


def test_learning_curves_figure_draws_validation_and_test_per_arm(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from hipcore.plots import draw_learning_curves

    result = run(config(tmp_path, epochs=2, val_fraction=0.25), n=80)
    rows = read_metrics(result.run_dir)
    fig = draw_learning_curves({"toy HiP": rows}, "toy")
    acc, loss = fig.axes
    assert [line.get_label() for line in acc.get_lines()] == ["toy HiP, validation", "toy HiP, test, selected epoch"]
    assert [len(line.get_xdata()) for line in loss.get_lines()] == [2, 1]        # the test set once
    assert list(loss.get_lines()[1].get_xdata()) == [result.selected_epoch]
    per_epoch = rows + [{**r, "epoch": 3 - r["epoch"]} for r in rows if r["split"] == "test"]   # as before
    old = draw_learning_curves({"toy HiP": per_epoch}, "toy").axes[0]
    assert [line.get_label() for line in old.get_lines()] == ["toy HiP, validation", "toy HiP, test"]


def test_a_profile_switches_validation_and_the_plateau_on_by_its_settings(tmp_path):
    from hipcore.experiments.common import IMAGE_TABLE, Arm, train_configs

    smoke = IMAGE_TABLE["smoke"]
    held_out = train_configs(Arm("a", mae=True), 0, smoke, dataset="fashion_mnist", runs_dir=tmp_path)
    assert all(not c.plateau and c.val_fraction == 0.1 for c in held_out)   # every profile validates
    plain = train_configs(Arm("a", mae=True), 0, dict(smoke, val_fraction=0.0), dataset="fashion_mnist",
                          runs_dir=tmp_path)
    assert all(not c.plateau and c.val_fraction == 0 for c in plain)
    on = dict(smoke, val_fraction=0.1, plateau=True, min_epochs=1)
    pre, sup = train_configs(Arm("a", mae=True), 0, on, dataset="fashion_mnist", runs_dir=tmp_path)
    assert (pre.plateau, sup.plateau, pre.val_fraction, sup.min_epochs) == (True, True, 0.1, 1)
    _, matched = train_configs(Arm("m", steps=7), 0, on, dataset="fashion_mnist", runs_dir=tmp_path)
    assert not matched.plateau and matched.max_steps == 7 and matched.val_fraction == 0.1


def test_the_train_command_takes_validation_and_the_plateau(capsys):
    from hipcore.cli import build_parser
    from hipcore.cli import main as hipcore_main
    from hipcore.train.cli import config_from_args

    args = build_parser().parse_args(["train", "--val-fraction", "0.1", "--plateau", "--min-epochs", "3",
                                      "--plateau-points", "0.5", "--epochs", "40"])
    cfg = config_from_args(args, "supervised")
    assert (cfg.val_fraction, cfg.plateau, cfg.min_epochs, cfg.plateau_points, cfg.epochs) == (0.1, True, 3, 0.5, 40)
    plain = config_from_args(build_parser().parse_args(["train"]), "supervised")
    assert plain.run_id == TrainConfig(task="supervised").run_id
    assert hipcore_main(["train", "--plateau"]) == 2
    assert "plateau stops on the validation set" in capsys.readouterr().err


def test_patience_keeps_a_short_stall_from_ending_a_rising_curve():
    stall = [0.50, 0.60, 0.67, 0.672, 0.673, 0.674]               # two flat epochs after a rise
    assert plateau.reached(stall, min_epochs=4)                    # patience 1: the last 2 epochs judge
    assert not plateau.reached(stall, min_epochs=4, patience=5)    # the last 5 still rose 7 points
    flat = stall + [0.674, 0.675, 0.674, 0.675, 0.675]
    assert plateau.reached(flat, min_epochs=4, patience=5)         # five epochs gained < 0.3 points
    assert plateau.window(8, patience=5) == 5 and plateau.window(40, patience=5) == 10
    with pytest.raises(ValueError, match="leave none"):
        plateau.gain([0.5, 0.6, 0.7], "accuracy", patience=3)
