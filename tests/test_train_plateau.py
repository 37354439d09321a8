"""The plateau rule on synthetic curves, the validation split, and runs that stop at their plateau."""

import math

import numpy as np
import pytest
import torch
from test_train_engine import config, run

from hipcore.train import ConfigMismatchError, NonFiniteLossError, TrainConfig, plateau, read_metrics
from hipcore.train.config import PLATEAU_DEFAULTS
from hipcore.train.validation import split_digest, validation_indices

# ---- the rule ----

RULE = plateau.Rule.of(TrainConfig())                    # the defaults: TrainConfig's alone


def old_rule(mode: str, patience: int = 5, points: float = 0.3, relative: float = 0.01, min_epochs: int = 4):
    """The rule before the trend test, on rows of scores [runs, epochs]: the last quarter of the
    epochs (at least `patience`) gained less than `points` top-1 points over the best before
    (less than `relative` of the lowest loss before)."""
    def decide(scores):
        e = scores.shape[-1]
        w = max(patience, math.ceil(e / 4))
        if e < max(2, min_epochs, patience + 1) or w >= e:
            return np.zeros(len(scores), dtype=bool)
        before, last = scores[:, :-w], scores[:, -w:]
        if mode == "accuracy":
            return 100 * (last.max(1) - before.max(1)) < points
        return (before.min(1) - last.min(1)) / before.min(1) < relative
    return decide


def test_the_trend_is_a_least_squares_slope_with_the_binomial_or_relative_noise():
    line = 0.80 + 0.004 * np.arange(12)                                   # +0.4 points per epoch
    gain, se = plateau.trend(line, "accuracy", 6000, RULE.loss_cv)
    spread = math.sqrt(sum((x - 5.5) ** 2 for x in range(12)))
    assert gain == pytest.approx(0.4)
    assert se == pytest.approx(100 * math.sqrt(line.mean() * (1 - line.mean()) / 6000) / spread)
    falling = 0.3 * 0.99 ** np.arange(12)                                   # 1% less each epoch
    gain, se = plateau.trend(falling, "loss", 6000, 0.42)
    assert gain == pytest.approx(0.01, rel=0.05) and se == pytest.approx(0.42 / math.sqrt(6000) / spread)
    with pytest.raises(ValueError, match="mode"):
        plateau.trend(line, "top5", 600, 0.42)
    with pytest.raises(ValueError, match="window of 3"):
        plateau.trend(line[:2], "accuracy", 600, 0.42)


def test_a_flat_curve_has_reached_its_plateau_and_a_rising_one_has_not():
    flat = [0.5, 0.7] + [0.80, 0.801, 0.799, 0.800, 0.802, 0.800, 0.801, 0.799, 0.800, 0.801, 0.800, 0.800]
    rising = [0.5 + 0.004 * e for e in range(14)]                           # +0.4 points per epoch
    assert plateau.reached(flat, "accuracy", 6000, RULE)
    assert not plateau.reached(rising, "accuracy", 6000, RULE)
    assert not plateau.reached(flat[:11], "accuracy", 6000, RULE)          # less than a window: too early
    assert not plateau.reached(flat, "accuracy", 60, RULE)                # 60 images cannot tell flat from +0.2
    assert plateau.reached([1.0, 0.5] + [0.2] * 12, "loss", 6000, RULE)
    assert not plateau.reached([0.3 * 0.99 ** e for e in range(14)], "loss", 6000, RULE)


@pytest.mark.parametrize("mode", ["accuracy", "loss"])
def test_the_rule_has_the_error_rates_it_states_at_the_profiles_settings(mode):
    from hipcore.experiments.plateau_budget import rate_setting

    quick, full = rate_setting("quick", 60_000), rate_setting("full", 60_000)
    assert (quick.source, quick.examples, full.source, full.examples) == ("spare", 6000, "carved", 6000)
    assert (quick.caps["accuracy"], full.caps["accuracy"], full.caps["loss"]) == (60, 60, 100)
    for at in (quick, full, rate_setting("quick", 60_000, max_epochs=40)):   # 40: results/plateau_check's cap
        assert at.rule == RULE
        r = plateau.rates(at.rule, mode, at.examples, at.caps[mode], runs=300, seed=11)
        assert r["rising stopped"] <= 0.05, (at, r)                          # still rising: not stopped
        assert r["flat stopped in time"] >= 0.90, (at, r)                    # flat: stopped within 10 epochs


@pytest.mark.parametrize("mode", ["accuracy", "loss"])
def test_the_earlier_rule_fails_the_same_rates(mode):
    # Patience 5, the last quarter's gain, 600 validation images (10% of quick's 6,000): it mostly measures noise.
    r = plateau.rates(RULE, mode, 600, 40, runs=300, seed=11, decide=old_rule(mode))
    assert r["rising stopped"] > 0.05 or r["flat stopped in time"] < 0.90, r
    if mode == "accuracy":
        assert r["rising stopped"] > 0.9                                     # the 94.5% at +0.3 per epoch
    # The new rule needs the larger validation set: on 600 images it cannot see a flat curve in time.
    assert plateau.rates(RULE, mode, 600, 40, runs=300, seed=11)["flat stopped in time"] < 0.90


def test_the_simulated_curves_are_what_the_rates_say():
    up = plateau.rising(60, 0.2, "accuracy", 0.8, 30.0)
    assert np.all(np.diff(100 * up) >= 0.2 - 1e-9) and up[-1] == pytest.approx(0.8)
    curve, flat = plateau.flattening(60, 30.0, 4.0, 0.05, "accuracy", 0.8)
    gains = 100 * np.diff(curve)
    assert gains[flat - 2] < 0.05 <= gains[flat - 3] and curve[0] < 0.6
    down = plateau.rising(60, 0.0025, "loss", 0.2, None)
    assert np.allclose(down[:-1] / down[1:], math.exp(0.0025)) and down[-1] == pytest.approx(0.2)


def test_the_rates_command_prints_them_for_a_profile(capsys):
    from hipcore.cli import main as hipcore_main

    assert hipcore_main(["plateau-rates", "--profile", "quick", "--runs", "100"]) == 0
    out = capsys.readouterr().out
    assert "validation on 6,000 images (spare)" in out and out.count("is stopped before its cap in") == 2
    with pytest.raises(SystemExit):
        hipcore_main(["plateau-rates", "--profile", "nope"])


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
    assert off.run_id == TrainConfig(min_epochs=9, plateau_slope=1.0, val_size=10).run_id   # unused: same run
    assert TrainConfig(val_fraction=0.1).run_id != off.run_id
    assert TrainConfig(val_fraction=0.1, val_size=10).run_id != TrainConfig(val_fraction=0.1).run_id
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
    for bad, match in (({"val_size": 0}, "val_size"), ({"plateau_window": 2}, "plateau_window"),
                       ({"plateau_confidence": 1.0}, "plateau_confidence"),
                       ({"plateau_loss_cv": 0}, "plateau_loss_cv")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)


def test_a_run_saved_under_the_earlier_rule_resumes_only_where_the_rule_did_not_matter():
    plain = {k: v for k, v in TrainConfig().to_dict().items() if k not in PLATEAU_DEFAULTS and k != "val_size"}
    old = {**plain, "plateau_points": 0.3, "plateau_relative": 0.01, "plateau_patience": 1}
    assert TrainConfig().differences(old) == []                              # plateau off: nothing changed
    ruled = TrainConfig(val_fraction=0.1, plateau=True)
    saved = {**old, "val_fraction": 0.1, "plateau": True, "plateau_patience": 5}
    assert "plateau_patience: 5 -> None" in ruled.differences(saved)         # the rule changed: refused


# ---- runs ----

# 20 validation images cannot show a trend of 0.2 points per epoch: a loose rule (any trend under
# 50 points or 50% per epoch, no confidence margin, three epochs) stops these toy runs early.
LOOSE = dict(min_epochs=3, plateau_window=3, plateau_slope=50.0, plateau_loss_slope=0.5, plateau_confidence=0.5)

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
    cfg = config(tmp_path, epochs=30, val_fraction=0.25, plateau=True, **LOOSE)
    result = run(cfg, n=80)
    assert result.converged is True and 3 <= result.epochs_run < 30
    rows = read_metrics(result.run_dir)
    flags = [r["value"] for r in rows if r["split"] == "plateau"]
    assert len(flags) == result.epochs_run and flags[-1] == 1.0 and set(flags[:-1]) <= {0.0}
    again = run(cfg, n=80)
    assert again.steps == result.steps and again.metrics == result.metrics and again.converged


def test_a_plateau_run_resumed_after_a_crash_ends_as_an_uninterrupted_one(tmp_path):
    kw = dict(epochs=30, val_fraction=0.25, plateau=True, checkpoint_every=1, clip_grad=None, **LOOSE)
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
                 **LOOSE)
    result = run(cfg, n=80)
    rows = read_metrics(result.run_dir)
    val = {r["epoch"]: r["value"] for r in rows if r["split"] == "val" and r["metric"] == "loss"}
    assert sorted(val) == list(range(1, result.epochs_run + 1))
    assert result.converged and result.epochs_run < 12
    assert result.best == min(val.values()) and result.metrics["val_loss"] == result.best
    assert plateau.reached([val[e] for e in sorted(val)], "loss", 20, plateau.Rule.of(cfg))


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
                                      "--plateau-slope", "0.5", "--plateau-window", "8", "--val-size", "3000",
                                      "--epochs", "40"])
    cfg = config_from_args(args, "supervised")
    assert (cfg.val_fraction, cfg.plateau, cfg.min_epochs, cfg.plateau_slope, cfg.epochs) == (0.1, True, 3, 0.5, 40)
    assert (cfg.plateau_window, cfg.val_size) == (8, 3000)
    plain = config_from_args(build_parser().parse_args(["train"]), "supervised")
    assert plain.run_id == TrainConfig(task="supervised").run_id
    assert hipcore_main(["train", "--plateau"]) == 2
    assert "plateau stops on the validation set" in capsys.readouterr().err
