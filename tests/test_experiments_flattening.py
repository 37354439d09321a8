"""02_flattening_ablation: profiles, arms that hit the shared cache, plans, contrasts, tables on the grid."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from hipcore.data import image_order
from hipcore.experiments import common, flattening, image_arms, orderings
from hipcore.notebook import PROFILES, ParameterError


def test_every_profile_extends_the_shared_image_settings():
    for row in flattening.TABLE.values():
        assert set(flattening.VERDICT_ORDERINGS) <= set(row["orderings"])
    smoke = flattening.TABLE["smoke"]
    assert smoke["limit_train"] <= 256 and smoke["epochs"] == 1 and len(smoke["seeds"]) == 1
    assert len(flattening.TABLE["quick"]["seeds"]) >= 3


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mae", [True, False])
def test_raster_arms_are_the_runs_other_notebooks_cache(profile, mae):
    """The cache key is the TrainConfig: a raster arm labelled differently elsewhere is the same run."""
    mine = common.train_configs(flattening.arm("raster", mae), 0, flattening.TABLE[profile], dataset="fashion_mnist")
    theirs = common.train_configs(common.Arm("HiP elsewhere", mae=mae, ordering="raster"), 0,
                                  common.IMAGE_TABLE[profile], dataset="fashion_mnist")
    assert [c and c.run_id for c in mine] == [c and c.run_id for c in theirs]
    assert mine[1].model == {"position": "learned"} and mine[1].transfer == "all"
    assert mine[0] is None or mine[0].mask_ratio == 0.85


def test_data_options():
    from hipcore.notebook import ParameterError

    assert image_arms.data_options("fashion_mnist", 224) == {}
    assert image_arms.data_options("imagefolder", 64) == {"resolution": 64}
    with pytest.raises(ParameterError, match="resolution"):
        image_arms.data_options("imagefolder", "big")


def test_orderings_parameter_is_checked():
    assert flattening.check_orderings(["shuffled", "raster", "hilbert"]) == ("shuffled", "raster", "hilbert")
    assert flattening.TABLE["quick"]["orderings"] == ("raster", "shuffled")
    with pytest.raises(ParameterError, match="include raster and shuffled"):
        flattening.check_orderings(["raster", "column"])
    with pytest.raises(ParameterError, match="'zigzag' is not allowed"):
        flattening.check_orderings(["raster", "shuffled", "zigzag"])
    with pytest.raises(ParameterError, match="give a list"):
        flattening.check_orderings("raster")


def test_plan_gives_every_seed_to_the_verdict_orders_only():
    runs = flattening.plan(("raster", "column", "hilbert", "shuffled"), (0, 1, 2), other_seeds=1)
    seeds = {}
    for arm, seed in runs:
        seeds.setdefault(arm.label, []).append(seed)
    assert seeds["raster + MAE"] == seeds["shuffled, no MAE"] == [0, 1, 2]
    assert seeds["hilbert + MAE"] == seeds["column, no MAE"] == [0]
    assert len(seeds) == 8


def rows_from(acc):
    return [{"arm": a, "seed": s, "test_accuracy": v} for a, by_seed in acc.items() for s, v in by_seed.items()]


def test_contrasts():
    rows = rows_from({"raster + MAE": {0: 80, 1: 82}, "raster, no MAE": {0: 70, 1: 70},
                      "shuffled + MAE": {0: 75, 1: 76}, "shuffled, no MAE": {0: 69, 1: 68, 2: 50}})
    found = flattening.contrasts(rows)
    assert "column minus raster, with MAE" not in found            # column never ran
    weights, paper = found["MAE gain, shuffled"]
    assert orderings.contrast(rows, weights) == [75 - 69, 76 - 68]
    table = orderings.contrast_table(rows, found)
    assert "| MAE gain, shuffled | +7.5 | +7.00 ± 1.41 | 2 |" in table
    assert not any("interaction" in name for name in found)         # a verdict row of its own


def test_findings_are_recorded_per_seed(tmp_path):
    from hipcore import report

    rows = rows_from({"raster + MAE": {0: 80, 1: 82}, "raster, no MAE": {0: 70, 1: 71},
                      "shuffled + MAE": {0: 75, 1: 76}, "shuffled, no MAE": {0: 69, 1: 70}})
    image_arms.record_findings(tmp_path / "c.csv", rows, flattening.FINDINGS)
    found = {f.paper_key: f for f in report.findings(report.read_comparisons(tmp_path / "c.csv"))}
    assert found["effect.F4_shuffle_with_mae"].effect == pytest.approx(-5.5)
    assert found["effect.F4_shuffle_without_mae"].effect == pytest.approx(-1.0)
    interaction = found["effect.F4_interaction"]              # the paper's -4.7 - (-1.3) = -3.4
    assert interaction.kind == "interaction" and interaction.effect == pytest.approx(-5.5 - -1.0)
    assert interaction.paper == pytest.approx(-3.4) and interaction.finding == flattening.INTERACTION


def test_raster_table_undoes_the_order():
    h, w = 4, 6
    raster = torch.arange(h * w, dtype=torch.float32)[:, None]       # row p belongs to pixel p
    order = image_order("shuffled", h, w, seed=3)
    assert torch.equal(flattening.raster_table(raster[order], order, h, w), raster)


def test_group_figure_has_one_panel_per_order():
    orders = {o: image_order(o, 8, 8) for o in ("raster", "column", "hilbert", "shuffled")}
    fig = flattening.draw_orderings(torch.rand(8, 8).numpy(), orders, num_groups=4)
    assert len(fig.axes) == 4
