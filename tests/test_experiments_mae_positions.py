"""03_mae_positional_embeddings: arms, seeds per arm, contrasts, and the geometry score."""

import pytest

from hipcore import report
from hipcore.experiments import common, image_arms, scaling
from hipcore.experiments import mae_positions as mp
from hipcore.experiments import position_tables as pt
from hipcore.notebook import ParameterError
from hipcore.report import paper_reference

DATA = dict(dataset="fashion_mnist")


def test_table_has_every_profile_and_smoke_keeps_each_kind_of_arm():
    for row in mp.TABLE.values():
        assert set(row["arms"]) <= set(mp.ALL_ARMS)
    smoke = mp.arms(mp.TABLE["smoke"])
    assert any(a.mae for a in smoke.values()) and any(a.position == "fourier" for a in smoke.values())
    # quick: every arm a verdict rests on; the others move to full
    assert set(mp.TABLE["quick"]["arms"]) == set(mp.ALL_ARMS) - {"mask_ratio", "positions_only"}
    assert mp.TABLE["full"]["arms"] == mp.ALL_ARMS and len(mp.TABLE["quick"]["seeds"]) >= 3


def test_arms_shared_with_01_are_the_same_runs():
    settings = mp.TABLE["full"]
    arms = mp.arms(settings)
    for key, arm in (("hip_mae", image_arms.HIP_MAE), ("hip_classification", image_arms.HIP_CLASSIFICATION),
                     ("hip_fourier", image_arms.HIP_FOURIER)):
        assert arms[key] == arm
        mine, theirs = (common.train_configs(a, 2, settings, **DATA) for a in (arms[key], arm))
        assert [c and c.run_id for c in mine] == [c and c.run_id for c in theirs]


def test_controls_and_transfer_arms():
    settings = mp.TABLE["full"]
    assert "compute_matched" not in mp.arms(settings)               # its steps come from the FLOP budget
    arms = mp.arms(settings, mask_ratio=0.85, compare_mask_ratio=0.75, control_steps=321)
    pre, sup = common.train_configs(arms["compute_matched"], 0, settings, **DATA)
    assert pre is None and sup.max_steps == 321
    mae_pre, mae_sup = common.train_configs(arms["hip_mae"], 0, settings, **DATA)
    pos_pre, pos_sup = common.train_configs(arms["positions_only"], 0, settings, **DATA)
    assert pos_pre.run_id == mae_pre.run_id                     # one pretraining, two fine-tunings
    assert (pos_sup.transfer, mae_sup.transfer) == ("positions", "all") and pos_sup.run_id != mae_sup.run_id
    other_pre, _ = common.train_configs(arms["mask_ratio"], 0, settings, **DATA)
    assert other_pre.mask_ratio == 0.75 and other_pre.run_id != mae_pre.run_id
    fm_pre, fm_sup = common.train_configs(arms["hip_fourier_mae"], 0, settings, **DATA)
    assert fm_pre.model["position"] == fm_sup.model["position"] == "fourier"


def test_plan_gives_other_arms_fewer_seeds():
    arms = mp.arms(mp.TABLE["full"])
    runs = dict((a.label, s) for a, s in mp.plan(arms, (0, 1, 2), 1))
    assert runs[arms["mask_ratio"].label] == (0,) and runs[arms["hip_mae"].label] == (0, 1, 2)


def test_mask_ratios_are_checked():
    assert mp.check_mask_ratios(0.85, 0.75) == (0.85, 0.75)
    for args in ((0.85, 0.85), (1.0, 0.75), (0.85, "0.75"), (True, 0.5)):
        with pytest.raises(ParameterError):
            mp.check_mask_ratios(*args)


def test_findings_point_at_the_papers_numbers():
    ref = paper_reference()
    assert all(key in ref for _, _, key, _, _ in mp.FINDINGS if key)
    assert [key for name, _, key, *_ in mp.FINDINGS if "FLOP-matched" in name] == [""]   # not in the paper
    assert {claim for name, claim, *_ in mp.FINDINGS if name.startswith("F3")} == {"same"}


def test_contrasts_use_paired_seeds():
    arms = mp.arms(mp.TABLE["full"])
    acc = {image_arms.HIP_CLASSIFICATION.label: (70.0, 71.0), mp.POSITIONS_ONLY: (72.0, 74.0),
           image_arms.HIP_MAE.label: (75.0, 75.0),
           arms["mask_ratio"].label: (76.0,)}
    rows = [{"arm": arm, "seed": s, "test_accuracy": a} for arm, accs in acc.items() for s, a in enumerate(accs)]
    pairs = mp.contrasts(rows, arms)
    assert len(pairs) == 3
    table = mp.contrast_table(rows, pairs)
    assert "| +2.50 ± 0.71 | 2 |" in table and "| +1.00 | 1 |" in table
    assert mp.contrasts(rows[:2], arms) == {}                  # arms that did not run are left out


def test_the_structure_table_shows_partial_scores_and_reads_old_rows_as_superseded():
    new = [{"table": mp.MAE_PRETRAINED, "seeds": 3, "partial_score": 0.21, "best_control": 0.17,
            "holds_geometry": pt.HOLDS},
           {"table": pt.FOURIER, "seeds": 1, "partial_score": 0.48, "best_control": 0.02,
            "holds_geometry": pt.UNDECIDED}]
    assert not mp.superseded(new)
    table = mp.structure_table(new)
    assert "| MAE-learned (pretrained) | 3 | +0.210 | +0.170 | yes |" in table and "raw" not in table
    lines = mp.structure_sentences(new)
    assert lines[0].startswith("MAE-learned (pretrained) table: partial score +0.210 against +0.170")
    assert "cannot be decided from one seed" in lines[1]
    old = [{"table": mp.MAE_PRETRAINED, "structure": 0.1216, "chance_sd": 0.0013}]      # a folder before the score
    assert mp.superseded(old) and mp.structure_sentences(old) == [pt.RERUN]
    assert "| MAE-learned (pretrained) | +0.122 | 0.001 |" in mp.structure_table(old)
    assert mp.structure_table(old).startswith("| table | raw score (superseded) | chance sd |")


def test_metrics_hold_each_seeds_partial_scores_beside_the_best_control():
    scores = [{"table": mp.MAE_PRETRAINED, "kind": pt.LEARNED, "of": "", "score": 0.2},
              {"table": "pixel statistics", "kind": pt.CONTENT, "of": "", "score": 0.15},
              {"table": pt.permuted_name(mp.MAE_PRETRAINED), "kind": pt.CONTENT, "of": mp.MAE_PRETRAINED,
               "score": 0.01},
              {"table": pt.FOURIER, "kind": pt.GEOMETRIC, "of": "", "score": 0.5},
              {"table": pt.permuted_name(pt.FOURIER), "kind": pt.CONTENT, "of": pt.FOURIER, "score": 0.3}]
    rows = mp.position_metrics({4: scores})
    got = {(r["run_id"], r["metric"]): r["value"] for r in rows}
    assert got == {(mp.MAE_PRETRAINED, "geometry"): 0.2, (mp.MAE_PRETRAINED, "geometry_control"): 0.15,
                   (pt.FOURIER, "geometry"): 0.5, (pt.FOURIER, "geometry_control"): 0.3}
    assert {r["seed"] for r in rows} == {4} and {r["split"] for r in rows} == {"positions"}


def test_chosen_pixels_lie_on_the_grid():
    for h, w in ((28, 28), (224, 160)):
        assert all(0 <= r < h and 0 <= c < w for r, c in image_arms.chosen_pixels(h, w))


def test_the_control_is_matched_in_flops_not_epochs():
    budget = image_arms.FlopBudget(pretrain_step_flops=55, supervised_step_flops=36, pretrain_steps=92,
                                   supervised_steps=92)
    assert budget.mae_arm_flops == 92 * (55 + 36)
    assert budget.control_steps == round(92 * 91 / 36) and abs(budget.control_flops - budget.mae_arm_flops) <= 18
    rows = [{"arm": image_arms.HIP_MAE.label, "total_seconds": 100.0, "flops": 3e12},
            {"arm": image_arms.COMPUTE_MATCHED, "total_seconds": 90.0}]
    table = mp.budget_table(budget, rows)
    assert "| 92 steps x 0.0 GFLOP |" in table and "100 s" in table and "90 s" in table
    assert "| 3.00 |" in table and "| not recorded |" in table


def test_step_flops_are_counted_and_an_mae_step_costs_more(tmp_path):
    from hipcore.data import BatchLoader, load_dataset

    settings = {**mp.TABLE["smoke"], "limit_train": 32, "batch_size": 8}
    train = load_dataset("fashion_mnist", "train")
    budget = image_arms.flop_budget(settings, train_data=train, **DATA)
    # the steps of the examples the run trains on (validation from the spare images here, all 32
    # kept; a carve-out leaves 29), as the training loop's loader has them
    _, sup = common.train_configs(image_arms.HIP_MAE, 0, settings, **DATA)
    for cfg, size, steps in ((sup, 32, 4), (sup.replace(val_size=60_000), 29, 3)):
        part = common.training_part(cfg, train)
        assert len(part) == size and len(BatchLoader(part, 8, shuffle=True, drop_last=True)) == steps
        assert common.steps_per_epoch(cfg, part) == steps
    assert budget.pretrain_steps == budget.supervised_steps == 4
    assert budget.pretrain_step_flops > budget.supervised_step_flops > 0
    assert budget.control_steps > budget.supervised_steps
    with pytest.raises(ValueError, match="batch 64 is larger than the 32 examples"):
        image_arms.flop_budget({**settings, "batch_size": 64}, train_data=train, **DATA)


def test_runs_record_their_flops_and_the_smoke_control_is_matched_within_one_percent(tmp_path):
    # the smoke profile's own control, trained: its recorded FLOPs against the MAE arm's
    from hipcore.data import load_dataset

    settings, runs = {**mp.TABLE["smoke"], "limit_test": 32}, tmp_path / "runs"   # no training FLOPs in tests
    train = load_dataset("fashion_mnist", "train", ordering="raster")
    budget = image_arms.flop_budget(settings, train_data=train, **DATA)
    arms = mp.arms({**settings, "arms": ("hip_mae", "compute_matched")}, control_steps=budget.control_steps)
    rows = [common.run_arm(arm, 0, settings, runs_dir=runs, train_data=train, **DATA) for arm in arms.values()]
    mae, control = rows
    assert (mae["pretrain_steps_taken"], mae["train_steps_taken"]) == (budget.pretrain_steps, budget.supervised_steps)
    assert mae["flops"] == budget.mae_arm_flops == mae["pretrain_flops"] + mae["train_flops"]
    assert control["train_steps_taken"] == budget.control_steps and control["matches"] == mae["arm"]
    assert abs(control["flops"] / mae["flops"] - 1) <= common.FLOP_TOLERANCE
    # sized from the MAE arm's record, the control takes the same steps; had the arm stopped
    # early (its plateau), the whole steps nearest what it used
    assert common.sized_from_record(arms["compute_matched"], 0, settings, mae, train, **DATA).steps == control["steps"]
    early = {**mae, "flops": mae["flops"] // 3}
    fewer = common.sized_from_record(arms["compute_matched"], 0, settings, early, train, **DATA)
    per_step = control["train_step_flops"]
    assert abs(fewer.steps * per_step - early["flops"]) <= per_step / 2          # the nearest whole steps
    with pytest.raises(ValueError, match="records no FLOPs, so 'HiP, classification-learned, compute-matched'"):
        common.sized_from_record(arms["compute_matched"], 0, settings, {"arm": mae["arm"]}, train, **DATA)
    assert common.write_runs(tmp_path, rows).is_file()
    assert common.read_runs(tmp_path)[1]["flops"] == control["flops"]
    longer = {**control, "flops": control["flops"] * 1.05}
    with pytest.raises(ValueError, match=r"compute-matched' is labelled FLOP-matched to 'HiP, MAE-learned "
                                         r"positions', but seed 0 recorded 1\.0[45]\d+ times its FLOPs"):
        common.write_runs(tmp_path, [mae, longer])
    with pytest.raises(ValueError, match="'HiP, MAE-learned positions' \\(seed 0\\) records no FLOPs"):
        common.write_runs(tmp_path, [{**mae, "flops": None}, control])
    with pytest.raises(ValueError, match="has no run for seed 0"):
        common.write_runs(tmp_path, [control])


def test_f7_records_only_seeds_both_tables_exist_for(tmp_path):
    # no run in this cache: no seed has both the MAE-pretrained and the classification-learned
    # table, so nothing is recorded (rows are paired per seed, never half a pair)
    settings = mp.TABLE["smoke"]
    arms = mp.arms(settings)
    path = tmp_path / "comparisons.csv"
    assert mp.record_structure_finding(path, arms["hip_mae"], (0, 1), settings, [], runs_dir=tmp_path / "runs",
                                       **DATA) == 0
    assert not path.exists()
    assert mp.F7[1] == mp.F7_LEVEL[1] == "effect.F7_mae_positions_structure"


def test_f7_rows_carry_whether_the_runs_behind_their_tables_converged(tmp_path):
    # Two MAE and two classification steps: no run reaches its plateau, and each F7 row says so
    # with the epochs of the runs its tables come from (both arms' for F7, the MAE arm's for the level).
    settings = {**mp.TABLE["smoke"], "limit_train": 64, "limit_test": 64, "batch_size": 32}
    arms = mp.arms(settings)
    runs = tmp_path / "runs"
    rows = [common.run_arm(arm, 0, settings, runs_dir=runs, **DATA)
            for arm in (arms["hip_mae"], arms["hip_classification"])]
    path = tmp_path / "comparisons.csv"
    assert mp.record_structure_finding(path, arms["hip_mae"], (0,), settings, rows, runs_dir=runs, **DATA) == 1
    recorded = {r["finding"]: r for r in report.read_comparisons(path)}
    assert recorded[mp.F7[0]]["converged"] == recorded[mp.F7_LEVEL[0]]["converged"] == "no"
    assert recorded[mp.F7[0]]["epochs"] == "1/1/1" and recorded[mp.F7_LEVEL[0]]["epochs"] == "1/1"
    found = {f.finding: f for f in report.findings(report.read_comparisons(path))}
    assert report.regime(found[mp.F7[0]]).startswith("not converged at 1/1/1 epochs")
    # the level row's baseline is the best content-only control of the seed, scored like the tables
    trained = {k: arms[k] for k in ("hip_mae", "hip_classification")}
    tables, spec = image_arms.position_tables(trained, 0, settings, runs_dir=runs, **DATA)
    scores = mp.seed_geometry(tables, spec, 0, settings, runs_dir=runs, **DATA)
    kinds = {r["table"]: r["kind"] for r in scores}
    assert sorted(set(kinds.values())) == sorted({pt.CONTENT, pt.GEOMETRIC, pt.LEARNED})
    assert f"{mp.MAE_PRETRAINED}, its rows permuted" in kinds and len(scores) == 3 + 3 + 4 + 1   # 3 learned
    best = max(r["score"] for r in scores if r["kind"] == pt.CONTENT and r["of"] in ("", mp.MAE_PRETRAINED))
    mae = next(r["score"] for r in scores if r["table"] == mp.MAE_PRETRAINED)
    assert float(recorded[mp.F7_LEVEL[0]]["baseline"]) == pytest.approx(best)
    assert float(recorded[mp.F7_LEVEL[0]]["treatment"]) == pytest.approx(mae)
    assert "| 2-D Fourier table | geometry (positive control) |" in mp.geometry_table(scores)
    extra = mp.structure_extra(mp.seed_tables(trained, (0,), settings, None, runs_dir=runs, **DATA))
    assert [(r["table"], r["kind"], r["of"]) for r in extra["geometry"]] == [(r["table"], r["kind"], r["of"])
                                                                              for r in scores]
    assert [r["score"] for r in extra["per_seed"][0]] == pytest.approx([r["score"] for r in scores])
    assert [r["table"] for r in extra["structure"]] == [*tables, pt.FOURIER]
    assert {r["holds_geometry"] for r in extra["structure"]} == {pt.UNDECIDED}    # one seed: nothing is decided
    # notebook 06 scores the same table the same way: its curve's two metrics per table
    point = scaling.structure(arms["hip_mae"], 0, settings, 0, runs_dir=runs, **DATA)
    assert point == {scaling.GEOMETRY: pytest.approx(mae), scaling.CONTROL: pytest.approx(best)}
    train_data = image_arms.load_splits("fashion_mnist", None, {})[0]          # the loaded set: the same images
    assert scaling.structure(arms["hip_mae"], 0, settings, 0, train_data, runs_dir=runs, **DATA) == pytest.approx(point)
