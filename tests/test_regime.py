"""The regime of a notebook's arms: early-training labels, runs and curves read back, F6's control."""

import json

import pytest

from hipcore.experiments import common, image_arms, point_clouds, regime


def row(arm, seed, converged=None, epochs=2, **extra):
    out = {"arm": arm, "seed": seed, "test_accuracy": 50.0 + seed, **extra}
    if converged is not None:
        out.update(converged=converged, epochs_run=epochs)
    return out


def test_early_training_names_the_epochs_unless_every_stage_reached_its_plateau():
    assert regime.early_training([row("a", 0, True, 16), row("b", 0, True, 27)]) == ""
    assert regime.early_training([row("a", 0, False, 2), row("b", 0, True, 20)]) == \
        "early training (not at the validation plateau after 2 epochs)"
    mae = row("m", 0, True, 10, mae=True, pretrain_converged=False, pretrain_epochs_run=8)
    assert "after 8 epochs" in regime.early_training([mae])
    assert regime.early_training([row("a", 0)]) == "early training (no validation curve shows a plateau)"
    assert regime.titled("F1", [row("a", 0, False, 2)]).startswith("Early training (not at")
    assert regime.titled("F1", [row("a", 0, True, 9)]) == "F1"


def test_reference_levels_and_lines_count_the_arms_below_each_baseline():
    refs = [{"model": "logistic regression", "seed": s, "test_accuracy": 80.0 + s} for s in (0, 1)]
    assert regime.reference_levels(refs) == {"logistic regression": 80.5}
    (line,) = regime.baseline_lines(refs, [{"arm": "HiP", "accuracy": 75.0}, {"arm": "CNN-ish", "accuracy": 85.0}])
    assert line.startswith("logistic regression: 80.5%") and "1 of 2 arms below it (HiP)" in line


def test_runs_curves_and_baselines_round_trip_through_a_results_folder(tmp_path):
    rows = [row("a", 0, False, 2, run_dir="runs/x"), row("a", 1, False, 2)]
    refs = [{"model": "MLP (256 hidden)", "seed": 0, "test_accuracy": 84.0, "train_accuracy": 99.0,
             "seconds": 3.0, "train_size": 5400, "test_size": 2000}]
    curves = [{"arm": "a", "seed": 0, "stage": "classification", "epoch": e, "split": "val", "metric": "accuracy",
               "value": 0.5 + e / 10} for e in (1, 2)]
    regime.write(tmp_path, rows, refs, curves)
    got_rows, got_refs, got_curves = regime.read(tmp_path)
    assert got_rows == rows and got_refs[0]["test_accuracy"] == 84.0 and got_curves == curves
    (tmp_path / common.RUNS).write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="runs.json: not a list of runs"):
        common.read_runs(tmp_path)


def test_a_folder_written_before_runs_json_is_read_from_its_metrics_and_arms(tmp_path):
    (tmp_path / "arms.csv").write_text("arm,ordering,position,mae,transfer,mask_ratio,steps,variant\n"
                                       "HiP,raster,learned,True,all,0.85,,small3\n")
    (tmp_path / "metrics.csv").write_text(
        "run_id,seed,epoch,step,split,metric,value\n"
        "HiP,0,,,test,test_accuracy,71.5\nHiP,1,,,test,test_accuracy,70.5\n"
        "HiP,,,,model,parameters,1000\nHiP,,,,model,classifier_parameters,800\n")
    rows = common.read_runs(tmp_path)
    assert [(r["seed"], r["test_accuracy"]) for r in rows] == [(0, 71.5), (1, 70.5)]
    assert rows[0]["mae"] is True and rows[0]["mask_ratio"] == 0.85 and rows[0]["steps"] is None
    assert common.arm_parameters(rows) == {"HiP": {"parameters": 1000, "classifier_parameters": 800}}
    assert regime.read(tmp_path)[1:] == ([], [])                     # no baselines or curves recorded then


def test_f6_gets_a_flop_matched_no_mae_control_and_its_own_row(tmp_path):
    plan = point_clouds.plan((0, 1), order_names=("stored",), matched_steps=123)
    labels = [(a.label, s) for a, s in plan]
    assert (point_clouds.MATCHED, 1) in labels and len(plan) == 6
    assert next(a for a, _ in plan if a.label == point_clouds.MATCHED).steps == 123
    assert all(a.label != point_clouds.MATCHED for a, _ in point_clouds.plan((0,), order_names=("stored",)))
    rows = [row(point_clouds.label("stored", m), s, False, 2) for m in (True, False) for s in (0, 1)]
    rows += [row(point_clouds.MATCHED, s, False, 4, steps=123) for s in (0, 1)]
    image_arms.record_findings(tmp_path / "c.csv", rows, point_clouds.FINDINGS)
    text = (tmp_path / "c.csv").read_text()
    assert point_clouds.F6 in text and point_clouds.F6_MATCHED in text


def test_tables_of_arms_short_of_their_plateau_open_with_the_early_training_line():
    from hipcore.experiments import scaling

    assert regime.caption([row("a", 0, False, 2)]) == \
        "**Early training (not at the validation plateau after 2 epochs).**\n\n"
    assert regime.caption([row("a", 0, True, 12)]) == ""
    assert scaling.caption({"epochs": 2}).startswith("**Early training: each classification run trains 2 epochs")
    assert scaling.caption({"epochs": 60, "plateau": True}) == ""


def test_a_notebook_writes_its_results_only_when_it_trained(tmp_path, monkeypatch):
    from hipcore import notebook

    monkeypatch.delenv("HIPCORE_PROFILE", raising=False)
    monkeypatch.delenv("HIPCORE_TRAIN", raising=False)
    table = {p: {"seeds": (0,)} for p in notebook.PROFILES}
    S = notebook.setup("99_test", profile="quick", table=table, results_dir=tmp_path, train=True)
    rows = [row("a", 0, True, 3, **{k: None for k in common.ARM_SETTINGS}, test_loss=0.5, total_seconds=1.0,
                train_examples_per_s=2.0)]
    regime.write_results(S, metrics=common.metric_rows(rows), rows=rows, regime=regime.label(rows))
    record = json.loads((S.out / "summary.json").read_text())
    assert record == {"notebook": "99_test", "profile": "quick", "regime": "every arm at its validation plateau"}
    assert (S.out / "metrics.csv").is_file() and (S.out / "arms.csv").is_file()
    assert (S.out / "provenance.json").is_file()
    written = {p.name: p.read_bytes() for p in S.out.iterdir()}
    reading = notebook.setup("99_test", profile="quick", table=table, results_dir=tmp_path, train=False)
    assert reading.reading
    regime.write_results(reading, metrics=[], rows=[], regime="changed")
    assert {p.name: p.read_bytes() for p in S.out.iterdir()} == written       # a reading notebook writes nothing


def test_a_figure_from_checkpoints_is_drawn_when_trained_and_shown_as_committed_when_read(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hipcore.notebook import Setup

    trained = Setup("99_test", "quick", {}, tmp_path)
    trained.figure("maps", lambda: plt.figure())
    assert (tmp_path / "maps.png").is_file()
    (tmp_path / "maps.png").unlink()
    Setup("99_test", "quick", {}, tmp_path, reading=True).figure("maps", None)
    assert "the committed results hold no maps.png" in capsys.readouterr().out


def test_the_summary_finds_every_numbered_notebook_from_its_module():
    from pathlib import Path

    from hipcore.summary import notebook_modules

    stems = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    modules = notebook_modules()
    assert [m.NOTEBOOK for m in modules] == stems
    # results: read or train (the tour trains nothing); write: after it (05 writes as it measures)
    assert all(callable(getattr(m, "results", None)) for m in modules if m.NOTEBOOK != "00_tour")
    assert all(callable(getattr(m, "write", None)) for m in modules if m.NOTEBOOK != "05_efficiency")
