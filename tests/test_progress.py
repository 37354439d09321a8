"""One console line per finished training run, from inside a kernel to the console."""

import io

from hipcore.experiments import common
from hipcore.progress import RunLines, run_line


def test_only_complete_run_lines_reach_the_console():
    console = io.StringIO()
    lines = RunLines(console, indent="  ")
    lines.write("loading data\nrun 1/2: HiP, seed 0: 50.00% (3 s)\nrun 2/2: Hi")
    assert console.getvalue() == "  run 1/2: HiP, seed 0: 50.00% (3 s)\n"
    lines.write("P + MAE, seed 0: 61.25% (9 s)\nepoch 3 of 4\n")
    assert console.getvalue().splitlines()[1:] == ["  run 2/2: HiP + MAE, seed 0: 61.25% (9 s)"]


def test_a_plan_counts_its_runs_and_prints_one_line_each(monkeypatch, capsys):
    ran = []

    def run_arm(arm, seed, settings, **kwargs):
        ran.append((arm.label, seed, kwargs.get("train_data")))
        return {"arm": arm.label, "seed": seed, "test_accuracy": 40.0 + seed, "total_seconds": 2.0}

    monkeypatch.setattr(common, "run_arm", run_arm)
    monkeypatch.setattr(common, "estimate_line", lambda plan, *a, **k: f"training {len(plan)} runs: about 1 min")
    rows = common.run_arms([common.Arm("a"), common.Arm("b")], (0, 1), {})
    assert [(r["arm"], r["seed"]) for r in rows] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert capsys.readouterr().out.splitlines() == [
        "training 4 runs: about 1 min",                                  # the estimate, before anything trains
        run_line(1, 4, "a", 0, 40.0, 2.0), run_line(2, 4, "a", 1, 41.0, 2.0),
        run_line(3, 4, "b", 0, 40.0, 2.0), run_line(4, 4, "b", 1, 41.0, 2.0)]
    common.run_plan([(common.Arm("c"), 3)], {}, splits=lambda arm, seed: (f"{arm.label}{seed}", None))
    assert ran[-1] == ("c", 3, "c3")
    assert capsys.readouterr().out == "training 1 runs: about 1 min\n" + run_line(1, 1, "c", 3, 43.0, 2.0) + "\n"
