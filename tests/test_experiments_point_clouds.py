"""04_point_clouds: profiles, arms, and the structure score of position tables."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from hipcore.config import variant
from hipcore.experiments import common, orderings, point_clouds
from hipcore.notebook import PROFILES


def test_profiles():
    assert set(point_clouds.TABLE) == set(PROFILES)
    smoke, quick = point_clouds.TABLE["smoke"], point_clouds.TABLE["quick"]
    assert smoke["num_points"] <= 256 and smoke["train_per_class"] <= 20 and len(smoke["seeds"]) == 1
    assert quick["num_points"] == 1024 and quick["train_per_class"] == 200 and len(quick["seeds"]) >= 3
    for row in point_clouds.TABLE.values():
        assert variant(row["variant"]).blocks[0].groups <= row["num_points"]


def test_data_options_follow_the_dataset():
    quick = point_clouds.TABLE["quick"]
    assert point_clouds.data_options("shapes3d", quick) == {"num_points": 1024, "train_per_class": 200,
                                                           "test_per_class": 50}
    assert point_clouds.data_options("modelnet40", quick) == {"num_points": 1024}


def test_plan_and_configs():
    runs = point_clouds.plan((0, 1, 2))
    assert len(runs) == 12 and {a.ordering for a, _ in runs} == {"stored", "shuffled"}
    assert sum(a.mae for a, _ in runs) == 6
    with_perceiver = point_clouds.plan((0,), perceiver=True)
    assert with_perceiver[-1][0].variant == "perceiver_small"
    pre, sup = common.train_configs(point_clouds.arm("shuffled", True), 1, point_clouds.TABLE["smoke"],
                                    dataset="shapes3d", data_options={"num_points": 256})
    assert pre.task == "pretrain" and pre.ordering == sup.ordering == "shuffled"
    assert sup.init_from.startswith(pre.run_dir) and sup.data_options == {"num_points": 256}


def test_structure_score_finds_geometry_and_not_noise():
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(300, 3, generator=gen)
    distances = torch.cdist(points, points)
    smooth = torch.cat([torch.sin(points @ torch.randn(3, 16, generator=gen) * 2),
                        torch.cos(points @ torch.randn(3, 16, generator=gen) * 2)], -1)
    score, chance = orderings.structure_score(smooth, distances)
    assert score > 0.3 and score > 10 * chance
    noise_score, noise_chance = orderings.structure_score(torch.randn(300, 32, generator=gen), distances)
    assert abs(noise_score) < 4 * noise_chance


def test_distances():
    clouds = torch.randn(5, 7, 3)
    explicit = torch.stack([torch.cdist(c, c) for c in clouds]).mean(0)
    assert torch.allclose(orderings.mean_cloud_distances(clouds), explicit, atol=1e-5)
    assert orderings.index_distances(torch.tensor([0, 2, 5]))[0, 2] == 5
    assert orderings.grid_distances(torch.tensor([0, 3, 1]), width=2)[0, 1] == pytest.approx(2 ** 0.5)
    assert torch.equal(orderings.subset(10), torch.arange(10))
    assert len(orderings.subset(5000)) == 2048 and torch.equal(orderings.subset(5000), orderings.subset(5000))


def test_findings_and_figure(tmp_path):
    from hipcore import report

    rows = [{"arm": point_clouds.label(o, m), "seed": s, "test_accuracy": 70 + 5 * m + s}
            for o in point_clouds.ORDERINGS for m in (True, False) for s in (0, 1)]
    point_clouds.record_findings(tmp_path / "c.csv", rows)
    (f,) = report.findings(report.read_comparisons(tmp_path / "c.csv"))
    assert f.paper_key == "effect.F6_mae_point_clouds" and f.effect == 5
    assert "HiP + MAE minus Perceiver, stored" not in point_clouds.contrasts(rows)

    labels = torch.tensor([0, 0, 1, 2, 2])
    assert point_clouds.example_indices(labels) == [0, 2, 3]
    tables = {"stored + MAE": (torch.randn(16, 4), None), "shuffled, no MAE": (torch.randn(16, 4), None)}
    clouds = {"stored": torch.randn(5, 16, 3), "shuffled": torch.randn(5, 16, 3)}
    fig = point_clouds.draw_clouds(tables, clouds, [0, 3], ["a", "b", "c"], labels)
    assert len(fig.axes) == 4
    assert [r["table"] for r in point_clouds.structure_rows(tables, clouds)] == list(tables)
