"""06_scaling: the grid's tables, verdicts, merge, parameters and its lines in SUMMARY."""

import json

import numpy as np
import pandas as pd
import pytest

from hipcore import plots, results, summary
from hipcore.experiments import common, regime, scaling
from hipcore.experiments import position_tables as pt
from hipcore.notebook import ParameterError


def fake_curve(effect_by_epochs, sides=(28,), seeds=(0, 1, 2), control_gap=-3.0, noise=0.5, raw=False):
    """A curve as run_grid returns it: MAE arm = classification + effect (+ noise per seed); each
    table's partial score 0.03 per MAE epoch (+ noise) beside a content-only control at 0.15, or
    with `raw` the raw structure metrics of curves written before the partial score."""
    rng = np.random.default_rng(0)
    rows = []

    def add(side, epochs, arm, seed, **values):
        rows.extend({"side": side, "positions": side * side, "pretrain_epochs": epochs, "arm": arm, "seed": seed,
                     "metric": m, "value": v} for m, v in values.items())

    for side in sides:
        for seed in seeds:
            base = 60.0 + seed
            add(side, 0, "classification", seed, test_accuracy=base, total_seconds=10.0, tflops=1.0,
                **tables(0, rng, raw))
            for epochs, effect in effect_by_epochs.items():
                mae = base + effect + rng.normal(0, noise)
                add(side, epochs, "mae", seed, test_accuracy=mae, total_seconds=20.0, tflops=2.0 * epochs,
                    **tables(epochs, rng, raw))
                add(side, epochs, "control", seed, test_accuracy=mae - control_gap, total_seconds=20.0,
                    tflops=2.0 * epochs)
    return pd.DataFrame(rows)


def tables(epochs, rng, raw=False):
    """A position table's curve metrics after `epochs` MAE epochs (0: classification-learned)."""
    if raw:
        return dict(structure=0.03 + 0.002 * epochs, structure_chance=0.0, structure_chance_sd=0.003)
    return dict(geometry=0.03 * epochs + rng.normal(0, 0.01), geometry_control=0.15 + rng.normal(0, 0.01))


def test_effects_are_paired_per_seed_with_intervals_and_verdicts():
    table = scaling.effects(fake_curve({1: -2.0, 4: 0.0, 8: 5.0}))
    f1 = table[table["comparison"].str.startswith("F1")].set_index("pretrain_epochs")
    assert list(f1.index) == [1, 4, 8] and (f1["seeds"] == 3).all()
    assert f1.loc[8, "effect"] == pytest.approx(5.0, abs=1.0) and f1.loc[8, "low"] > 0
    assert f1.loc[8, "verdict"] == "reproduced" and f1.loc[1, "verdict"].startswith("opposite")
    control = table[table["comparison"] == "MAE minus FLOP-matched control"]
    assert np.allclose(control["effect"], -3.0) and (control["mae_tflops"] == 2.0 * control["pretrain_epochs"]).all()


def test_first_reproduced_needs_every_longer_length_to_hold():
    table = scaling.effects(fake_curve({1: 5.0, 2: -5.0, 4: 5.0, 8: 6.0}))
    assert scaling.first_reproduced(table) == {28: 4}
    assert scaling.first_reproduced(scaling.effects(fake_curve({1: -5.0, 2: -4.0}))) == {28: None}
    lines = scaling.scale_sentences(table)
    assert lines[0].startswith("28 x 28 (784 positions): F1 is reproduced from 4 MAE epochs on")
    assert "the MAE arm at 8 epochs is -3.00 points" in lines[0]


def test_a_table_holds_geometry_only_by_beating_its_content_control_over_seeds():
    table = scaling.structure_table(fake_curve({1: 0.0, 8: 0.0}))
    assert list(table.columns) == ["side", "arm", "pretrain_epochs", "seeds", "partial_score", "best_control",
                                   "holds_geometry"]
    mae = table[table["arm"] == "mae"].set_index("pretrain_epochs")
    assert mae.loc[8, "partial_score"] == pytest.approx(0.24, abs=0.03) and mae.loc[8, "seeds"] == 3
    assert mae.loc[1, "best_control"] == pytest.approx(0.15, abs=0.03)
    assert mae.loc[8, "holds_geometry"] == pt.HOLDS and mae.loc[1, "holds_geometry"] == pt.LACKS
    assert table.set_index("arm").loc["classification", "holds_geometry"] == pt.LACKS
    lines = scaling.structure_sentences(table)
    assert any(line.startswith("28 x 28, MAE-learned after 8 MAE epochs: partial score +0.2") and
               "holds grid geometry beyond content" in line for line in lines)
    half = fake_curve({8: 0.0})
    half = half[~((half["metric"] == scaling.CONTROL) & (half["seed"] == 1) & (half["arm"] == "mae"))]
    with pytest.raises(ValueError, match="mae table at side 28, 8 MAE epochs, seed 1 lacks geometry_control"):
        scaling.structure_table(half)
    one = scaling.structure_table(fake_curve({8: 0.0}, seeds=(0,)))
    assert set(one["holds_geometry"]) == {pt.UNDECIDED}
    assert "cannot be decided from one seed" in scaling.structure_sentences(one)[-1]


def test_a_curve_written_before_the_partial_score_reads_as_superseded(tmp_path):
    old = fake_curve({2: 0.0, 8: 1.0}, raw=True)
    table = scaling.structure_table(old)
    assert scaling.is_superseded(table) and pt.SUPERSEDED in table.columns
    assert "partial_score" not in table.columns and set(table["seeds"]) == {3}
    assert table.set_index("pretrain_epochs").loc[8, pt.SUPERSEDED] == pytest.approx(0.046)
    assert scaling.structure_sentences(table) == [pt.RERUN] and "rerun the profile" in pt.RERUN
    assert "| raw score (superseded) |" in scaling.structure_markdown(table)
    fig = scaling.draw(scaling.effects(old), table)
    assert "predate the partial score" in fig.axes[2].texts[0].get_text() and not fig.axes[2].lines
    written = scaling.write_figures(tmp_path, old)
    assert pt.SUPERSEDED in pd.read_csv(tmp_path / "structure.csv").columns and len(written.paths) == 5


def test_merge_refuses_a_row_twice_and_keeps_parts_apart():
    a, b = fake_curve({1: 1.0}, seeds=(0,)), fake_curve({1: 1.0}, seeds=(1,))
    assert sorted(scaling.merge([a, b])["seed"].unique()) == [0, 1]
    with pytest.raises(ValueError, match="more than one part"):
        scaling.merge([a, a])


def test_write_gives_tables_and_figures(tmp_path):
    curve = fake_curve({1: 0.0, 2: 3.0}, sides=(28, 56))
    written = scaling.write_figures(tmp_path, curve)
    paths = written.paths
    assert {p.name for p in paths} == {"curve.csv", "effects.csv", "structure.csv", "scaling.png", "scaling.svg"}
    assert set(pd.read_csv(tmp_path / "effects.csv")["side"]) == set(written.effects["side"]) == {28, 56}
    assert set(pd.read_csv(tmp_path / "curve.csv")["metric"]) >= {scaling.GEOMETRY, scaling.CONTROL}
    assert "structure" not in set(curve["metric"])
    assert list(pd.read_csv(tmp_path / "structure.csv").columns) == list(written.structure.columns)
    assert "| partial score (mean over seeds) |" in scaling.structure_markdown(written.structure)
    panel = scaling.draw(written.effects, written.structure).axes[2]
    labels = {line.get_label() for line in panel.lines}
    assert {"28x28 MAE", "28x28 best content-only control", "56x56 best content-only control",
            "56x56 classification-learned"} <= labels
    assert any(list(line.get_ydata()) == [0, 0] for line in panel.lines)             # 0 marked
    dashed = next(line for line in panel.lines if line.get_label() == "28x28 best content-only control")
    assert dashed.get_linestyle() == "--"


def test_parameters_and_sides():
    assert scaling.check_grid(None, [8, 2]) == (None, (2, 8))
    assert scaling.check_grid([56, 28], None) == ((28, 56), None)
    for bad in ([14], [28, 28], "28", [], [28.0]):
        with pytest.raises(ParameterError, match="sides="):
            scaling.check_grid(bad, None)
    with pytest.raises(ParameterError, match="pretrain_grid="):
        scaling.check_grid(None, [0, 2])
    assert scaling.data_options(28) == {} and scaling.data_options(56) == {"resolution": 56}
    with pytest.raises(ValueError, match="side"):
        scaling.data_options(20)


def test_quick_shares_its_own_point_with_the_image_notebooks():
    quick = scaling.TABLE["quick"]
    own = common.IMAGE_TABLE["quick"]["pretrain_epochs"]
    assert own in quick["pretrain_grid"] and own in quick["controls"] and quick["sides"] == (28,)
    point = scaling.point_settings(quick, own)
    from hipcore.experiments.image_arms import HIP_MAE
    mine = common.train_configs(HIP_MAE, 0, point, dataset="fashion_mnist", data_options=scaling.data_options(28))
    theirs = common.train_configs(HIP_MAE, 0, common.IMAGE_TABLE["quick"], dataset="fashion_mnist")
    assert [c.run_id for c in mine] == [c.run_id for c in theirs]
    for profile, settings in scaling.TABLE.items():
        assert set(settings["controls"]) <= set(settings["pretrain_grid"]), profile


def test_summary_and_results_read_the_grid(tmp_path):
    folder = tmp_path / "06_scaling" / "full"
    scaling.write_tables(folder, fake_curve({2: 0.0, 8: 5.0}))
    (folder / "provenance.json").write_text(json.dumps({"machine": {"cpu": "X", "cores": 2, "gpu": "G"}}))
    lines = summary.scale_section(tmp_path, "quick")            # no quick grid: the full one, named
    assert "06_scaling/full/effects.csv" in lines[2] and "on G" in lines[2]
    assert any("reproduced from 8 MAE epochs" in line for line in lines)
    frame = results.load_folder(folder)
    assert set(frame["arm"]) >= {"classification, 28x28", "mae, 28x28, 8 MAE epochs", "control, 28x28, 2 MAE epochs"}
    assert frame.loc[frame["metric"] == "tflops", "unit"].unique().tolist() == ["TFLOP"]
    assert summary.scale_section(tmp_path / "nothing", "quick") == []


def test_each_point_of_the_grid_is_an_arm_beside_the_baselines(tmp_path):
    curve = fake_curve({8: 5.0, 2: 1.0}, seeds=(0, 1))
    points = scaling.point_accuracies(curve)
    assert list(points) == ["classification, 28x28", "mae, 28x28, 2 MAE epochs", "control, 28x28, 2 MAE epochs",
                            "mae, 28x28, 8 MAE epochs", "control, 28x28, 8 MAE epochs"]
    assert points["classification, 28x28"] == [60.0, 61.0]
    assert set(points) == set(results.load_folder(scaling.write_tables(tmp_path, curve).paths[0].parent)["arm"])
    refs = [{"model": "logistic regression", "seed": s, "test_accuracy": 80.0 + s} for s in (0, 1)]
    fig = plots.draw_baselines(points, refs, "toy")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["logistic regression (80.5)"]


def test_the_caption_follows_the_runs_plateaus_when_they_are_known():
    assert scaling.caption({"epochs": 2}).startswith("**Early training: each classification run trains 2")
    assert scaling.caption({"epochs": 2, "plateau": True}) == ""
    runs = [{"arm": "mae, 28x28, 8 MAE epochs", "seed": 0, "mae": True, "converged": True, "epochs_run": 20,
             "pretrain_converged": False, "pretrain_epochs_run": 8}]
    assert "after 8 epochs" in scaling.caption({"epochs": 2, "plateau": True}, runs)
    runs[0]["pretrain_converged"] = True
    assert scaling.caption({"epochs": 2}, runs) == ""


def test_a_grid_folder_written_before_the_regime_reads_without_baselines_or_curves(tmp_path, capsys):
    scaling.write_tables(tmp_path, fake_curve({1: 0.0}))
    assert scaling.read_regime(tmp_path) == ([], [], [])
    assert "no runs.json" in capsys.readouterr().out
    runs = [{"arm": "classification, 28x28", "seed": 0}]
    refs = [{"model": "MLP (256 hidden)", "seed": 0, "test_accuracy": 84.0, "train_accuracy": 90.0, "seconds": 1.0,
             "train_size": 10, "test_size": 5}]
    regime.write(tmp_path, runs, refs, [])
    got_runs, got_refs, got_curves = scaling.read_regime(tmp_path)
    assert got_runs == runs and got_refs[0]["model"] == "MLP (256 hidden)" and got_curves == []
