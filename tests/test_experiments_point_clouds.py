"""04_point_clouds: profiles, arms, and the structure score of position tables."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from hipcore.config import variant
from hipcore.data.registry import for_notebook
from hipcore.experiments import common, image_arms, orderings, point_clouds, shortcuts
from hipcore.experiments.image_arms import flop_budget
from hipcore.notebook import PROFILES


def test_profiles():
    assert set(point_clouds.TABLE) == {*PROFILES, "converged"}     # converged: the queue's (hipcore.converge)
    smoke, quick = point_clouds.TABLE["smoke"], point_clouds.TABLE["quick"]
    assert smoke["num_points"] <= 256 and smoke["train_per_class"] <= 20 and len(smoke["seeds"]) == 1
    assert quick["num_points"] == 1024 and quick["train_per_class"] == 200 and len(quick["seeds"]) >= 3
    for row in point_clouds.TABLE.values():
        assert variant(row["variant"]).blocks[0].groups <= row["num_points"]


def test_data_options_follow_the_dataset():
    quick = point_clouds.TABLE["quick"]
    assert for_notebook("04_point_clouds") == ("parts3d", "shapes3d", "modelnet40")     # parts3d: the default
    for name in ("parts3d", "shapes3d"):
        assert point_clouds.data_options(name, quick) == {"num_points": 1024, "train_per_class": 200,
                                                          "test_per_class": 50}
    assert point_clouds.data_options("modelnet40", quick) == {"num_points": 1024}


def test_plan_and_configs():
    runs = point_clouds.plan((0, 1, 2))
    assert len(runs) == 12 and {a.ordering for a, _ in runs} == {"stored", "shuffled"}
    assert sum(a.mae for a, _ in runs) == 6
    with_perceiver = point_clouds.plan((0,), perceiver=True)
    assert with_perceiver[-1][0].variant == "perceiver_small"
    stored = point_clouds.plan((0, 1), order_names=point_clouds.TABLE["quick"]["orderings"])
    assert {(a.label, s) for a, s in stored} == {(point_clouds.label("stored", m), s)
                                                 for m in (True, False) for s in (0, 1)}
    for name, settings in point_clouds.TABLE.items():    # every profile runs F6's arms
        assert set(point_clouds.VERDICT_ORDERINGS) <= set(settings["orderings"]) <= set(point_clouds.ORDERINGS), name
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
    rows = [{**r, "test_accuracy": r["test_accuracy"] - 8 * r["arm"].startswith("shuffled")} for r in rows]
    image_arms.record_findings(tmp_path / "c.csv", rows, point_clouds.FINDINGS)
    f6, order = report.findings(report.read_comparisons(tmp_path / "c.csv"))
    assert f6.finding == point_clouds.F6 and f6.paper_key == "effect.F6_mae_point_clouds" and f6.effect == 5
    assert order.finding == point_clouds.ORDER and order.paper_key == "" and order.effect == -8
    stored_only = [r for r in rows if r["arm"].startswith("stored")]          # quick runs no shuffled arms
    image_arms.record_findings(tmp_path / "stored.csv", stored_only, point_clouds.FINDINGS)
    assert [f.finding for f in report.findings(report.read_comparisons(tmp_path / "stored.csv"))] == [point_clouds.F6]
    assert report.describe_paper(order) == "not in the paper" and order.claim == "lower"
    assert "HiP + MAE minus Perceiver, stored" not in point_clouds.contrasts(rows)

    labels = torch.tensor([0, 0, 1, 2, 2])
    assert point_clouds.example_indices(labels) == [0, 2, 3]
    tables = {"stored + MAE": (torch.randn(16, 4), None), "shuffled, no MAE": (torch.randn(16, 4), None)}
    clouds = {"stored": torch.randn(5, 16, 3), "shuffled": torch.randn(5, 16, 3)}
    fig = point_clouds.draw_clouds(tables, clouds, [0, 3], ["a", "b", "c"], labels)
    assert len(fig.axes) == 4
    assert [r["table"] for r in point_clouds.structure_rows(tables, clouds)] == list(tables)


def test_shortcut_rows_per_seed_and_scored_once_per_data(monkeypatch):
    options = {"num_points": 64, "train_per_class": 4, "test_per_class": 2}
    rows = point_clouds.shortcut_rows((0, 1), dataset="parts3d", data_options=options)
    assert [r["seed"] for r in rows] == [0] * 3 + [1] * 3
    assert {r["arm"] for r in rows} == set(shortcuts.BASELINES) | {point_clouds.CHANCE}
    assert all(r["test_accuracy"] == 10.0 for r in rows if r["arm"] == point_clouds.CHANCE)
    # a set read from files is the same for every seed: scored once, its rows repeated
    same = orderings.load_splits("parts3d", "stored", 0, data_options=options)
    monkeypatch.setattr(orderings, "load_splits", lambda *a, **k: same)
    calls = []
    monkeypatch.setattr(shortcuts, "shortcut_scores",
                        lambda *a: calls.append(1) or {n: 20.0 for n in shortcuts.BASELINES})
    rows = point_clouds.shortcut_rows((0, 1, 2), dataset="modelnet40")
    assert len(calls) == 1 and len(rows) == 9


def test_margin_lines_say_whether_hip_is_above_the_baselines():
    names = list(shortcuts.BASELINES)
    baselines = [{"arm": n, "seed": s, "test_accuracy": 10.0 + i} for i, n in enumerate(names) for s in (0, 1, 2)]
    rows = ([{"arm": "stored, no MAE", "seed": s, "test_accuracy": 50.0 + s} for s in (0, 1, 2)]
            + [{"arm": "shuffled, no MAE", "seed": s, "test_accuracy": 11.0 + (-1) ** s} for s in (0, 1, 2)]
            + [{"arm": "stored + MAE", "seed": 0, "test_accuracy": 30.0}])
    above, level, single = point_clouds.margin_lines(rows, baselines)
    assert above.startswith("stored, no MAE: 51.0% top-1, the better shortcut baseline 11.0%")
    assert "margin +40.0 points" in above and above.endswith("above the shortcut baselines.")
    assert level.endswith("not shown to be above them.")
    assert single.endswith("(one seed: no interval).")
    assert point_clouds.reference_levels(baselines) == {names[0]: 10.0, names[1]: 11.0}
    with pytest.raises(ValueError, match="no shortcut baseline"):
        point_clouds.margin_lines(rows, [])
    fig = orderings.draw_accuracy_bars(rows, ["stored"], ["no MAE"], lambda o, s: f"{o}, {s}",
                                       references=point_clouds.reference_levels(baselines))
    assert len(fig.axes[0].lines) >= 2


@pytest.mark.parametrize("profile", ["smoke", "binder"])
def test_the_flop_matched_arm_is_within_one_percent_of_the_mae_arm(profile):
    settings = point_clouds.TABLE[profile]
    data = dict(dataset="parts3d", data_options=point_clouds.data_options("parts3d", settings))
    steps = point_clouds.matched_steps(settings, **data)
    train, _ = orderings.load_splits("parts3d", "stored", 0, data_options=data["data_options"])
    budget = flop_budget(settings, train_data=train, arm=point_clouds.arm("stored", True), **data)
    # the loader's steps on the clouds left after the validation split (180 of 200 at smoke)
    _, sup = common.train_configs(point_clouds.arm("stored", True), 0, settings, **data)
    assert budget.supervised_steps == len(common.training_part(sup, train)) // settings["batch_size"]
    assert steps == budget.control_steps and abs(budget.control_flops / budget.mae_arm_flops - 1) <= 0.01
    assert point_clouds.matched_arm(steps).matches == point_clouds.label("stored", True)
