"""01_imagenet_comparison: profile table, arms, parameter counts, per-arm summaries, findings."""

import pytest

from hipcore.config import variant
from hipcore.data import load_dataset
from hipcore.experiments import common, image_arms
from hipcore.experiments import imagenet_comparison as ic
from hipcore.notebook import ParameterError
from hipcore.report import paper_reference, read_comparisons

DATA = dict(dataset="fashion_mnist")


def test_table_has_every_profile_on_the_image_settings():
    for row in ic.TABLE.values():
        assert set(row["arms"]) <= set(ic.ALL_ARMS)
    assert ic.TABLE["paper"]["flat_variant"] == "perceiver_io_imagenet"
    smoke = ic.TABLE["smoke"]
    assert smoke["limit_train"] <= 256 and smoke["epochs"] == 1 and len(smoke["seeds"]) == 1
    labels = [a.label for a in ic.arms(smoke)]
    assert image_arms.HIP_MAE.label in labels and any("Fourier" in label for label in labels)
    assert len(ic.TABLE["quick"]["seeds"]) >= 3 and ic.TABLE["quick"]["arms"] == ic.ALL_ARMS


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_flat_baseline_is_one_block_one_group(profile):
    settings = ic.TABLE[profile]
    fourier, learned = [a for a in ic.arms({**settings, "arms": ic.ALL_ARMS}) if a.variant]
    blocks = variant(settings["flat_variant"]).blocks
    assert len(blocks) == 1 and blocks[0].groups == 1
    assert (fourier.position, learned.position) == ("fourier", "learned")
    _, sup = common.train_configs(learned, 0, settings, **DATA)
    assert sup.variant == settings["flat_variant"] and sup.model["position"] == "learned"


def test_shared_hip_arms_are_label_independent_runs():
    settings = ic.TABLE["quick"]
    mine = common.train_configs(image_arms.HIP_MAE, 1, settings, **DATA)
    other = common.train_configs(common.Arm("raster + MAE", mae=True, ordering="raster"), 1, settings, **DATA)
    assert [c.run_id for c in mine] == [c.run_id for c in other]
    assert mine[0].task == "pretrain" and mine[0].mask_ratio == 0.85 and mine[1].transfer == "all"


def test_parameter_counts_leave_out_what_classification_never_runs():
    modalities = load_dataset("fashion_mnist", "test").modalities
    settings = {**ic.TABLE["smoke"], "arms": ic.ALL_ARMS}
    counts = {a.label: ic.parameter_counts(a, settings, modalities, 10, **DATA) for a in ic.arms(settings)}
    hip, flat = counts[image_arms.HIP_MAE.label], counts[ic.PERCEIVER_FOURIER]
    assert 0 < hip["classifier_parameters"] < hip["parameters"]
    assert 0 < flat["classifier_parameters"] < flat["parameters"]
    # Learned tables are [784, 32]; Fourier features are fixed, only their projection learns.
    assert counts[image_arms.HIP_MAE.label]["parameters"] > counts[image_arms.HIP_FOURIER.label]["parameters"]


def _rows():
    accuracies = {image_arms.HIP_MAE.label: (80.0, 82.0, 81.0), ic.PERCEIVER_FOURIER: (78.0, 79.0, 79.5),
                  image_arms.HIP_FOURIER.label: (77.0, 78.0, 79.0)}
    return [{"arm": arm, "seed": s, "test_accuracy": acc, "train_examples_per_s": 100.0 + s,
             "total_seconds": 10.0} for arm, accs in accuracies.items() for s, acc in enumerate(accs)]


def test_findings_are_recorded_only_for_arms_that_ran(tmp_path):
    path = tmp_path / "comparisons.csv"
    assert image_arms.record_findings(path, _rows(), ic.FINDINGS) == ["HiP (MAE-learned) vs Perceiver IO (Fourier)"]
    rows = read_comparisons(path)
    assert [float(r["treatment"]) - float(r["baseline"]) for r in rows] == [2.0, 3.0, 1.5]
    assert {r["paper_key"] for r in rows} == {"effect.hip16_vs_perceiver_io_fourier"}


def test_summary_and_table_put_the_papers_number_beside_ours():
    params = {image_arms.HIP_MAE.label: {"parameters": 10, "classifier_parameters": 7}}
    summary = image_arms.arm_summary(_rows(), ic.PAPER_KEYS, params)
    hip = summary[0]
    assert (hip["arm"], hip["paper"], hip["accuracy"], hip["seeds"]) == (image_arms.HIP_MAE.label, 81.0, 81.0, 3)
    assert hip["accuracy_sd"] == pytest.approx(1.0) and hip["examples_per_s"] == pytest.approx(101.0)
    table = image_arms.markdown_arms(summary, "fashion_mnist")
    assert "| 81.0 | 81.00 ± 1.00 | 3 | 7 / 10 |" in table and "| 78.8 |" in table


def test_derived_paper_rows_are_differences_of_the_papers_numbers():
    ref = paper_reference()

    def value(key):
        return ref[key].value

    assert value("effect.hip16_vs_perceiver_io_fourier") == pytest.approx(
        value("imagenet.hip16") - value("imagenet.perceiver_io_fourier"))
    assert value("effect.perceiver_io_fourier_vs_learned") == pytest.approx(
        value("imagenet.perceiver_io_fourier") - value("imagenet.perceiver_io_learned"))
    assert all(key in ref for _, _, key, _, _ in ic.FINDINGS if key)          # "": not in the paper
    assert all(key in ref for key in ic.PAPER_KEYS.values())


def test_data_options_check_the_resolution():
    assert image_arms.data_options("fashion_mnist", "ignored") == {}
    assert image_arms.data_options("imagefolder", 64) == {"resolution": 64}
    for bad in (None, 2, 64.0, True):
        with pytest.raises(ParameterError, match="resolution"):
            image_arms.data_options("imagefolder", bad)


@pytest.mark.parametrize("profile", ["smoke", "binder"])
def test_the_flop_matched_perceiver_trains_the_mae_arms_flops(profile):
    settings = ic.TABLE[profile]
    train = load_dataset("fashion_mnist", "train", ordering="raster")
    steps = ic.matched_steps(settings, train, **DATA)
    budget = image_arms.flop_budget(settings, train_data=train, **DATA)
    fourier, _ = ic.perceiver_arms(settings["flat_variant"])
    _, sup = common.train_configs(fourier, 0, settings, **DATA)
    # what the matched run records (steps x its step's FLOPs) within 1% of the MAE arm's record
    per_step = common.step_flops(sup, common.training_part(sup, train))
    assert abs(steps * per_step / budget.mae_arm_flops - 1) <= common.FLOP_TOLERANCE
    assert steps > budget.supervised_steps
    matched = [a for a in ic.arms(settings, matched_steps=steps) if a.label == ic.PERCEIVER_MATCHED]
    assert len(matched) == 1 and matched[0].steps == steps and matched[0].position == "fourier"
    assert matched[0].matches == image_arms.HIP_MAE.label
    assert ic.PERCEIVER_MATCHED not in [a.label for a in ic.arms(settings)]    # no steps: left out
    assert common.train_configs(matched[0], 0, settings, **DATA)[1].max_steps == steps


def test_comparisons_record_whether_both_arms_reached_their_plateau(tmp_path):
    def row(arm, seed, acc, **extra):
        return {"arm": arm, "seed": seed, "test_accuracy": acc, "steps": None, **extra}

    rows = [row("a", 0, 70.0, converged=True, epochs_run=12),
            row("b", 0, 75.0, converged=True, epochs_run=9, pretrain_converged=True, pretrain_epochs_run=20),
            row("a", 1, 71.0, converged=False, epochs_run=30), row("b", 1, 76.0, converged=True, epochs_run=8),
            row("a", 2, 72.0), row("b", 2, 74.0)]
    path = tmp_path / "c.csv"
    assert common.record_pairs(path, rows, finding="x", claim="higher", paper_key="", baseline="a",
                               treatment="b") == 3
    recorded = {int(r["seed"]): (r["converged"], r["epochs"]) for r in read_comparisons(path)}
    assert recorded == {0: ("yes", "12/20/9"), 1: ("no", "30/8"), 2: ("", "")}
    matched = [row("a", 0, 70.0, converged=True, epochs_run=5), {**row("m", 0, 69.0), "steps": 400}]
    assert common.convergence(matched) == ("yes", "5")          # a FLOP-matched arm runs to its budget
