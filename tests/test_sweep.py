"""A papermill sweep runs one notebook per grid point and aggregates the metrics."""

import csv

import pytest

from hipcore.cli import main
from hipcore.sweep import find_notebook, parse_value, point_name


def test_values_parse_as_literals_or_strings():
    assert parse_value("3") == 3 and parse_value("0.75") == 0.75
    assert parse_value("[0, 1]") == [0, 1] and parse_value("hilbert") == "hilbert"
    assert point_name({"ordering": "raster", "seed": 1}) == "ordering-raster_seed-1"


def test_unknown_notebook_lists_the_ones_there_are():
    with pytest.raises(FileNotFoundError, match="00_tour"):
        find_notebook("99")


def test_sweep_runs_each_point_and_aggregates(tmp_path):
    rc = main(["sweep", "00", "-p", "ordering", "raster", "hilbert", "--seeds", "0",
               "--profile", "smoke", "--out", str(tmp_path)])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == \
        ["ordering-hilbert_seed-0.ipynb", "ordering-raster_seed-0.ipynb"]
    with open(tmp_path / "sweep_metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["param_ordering"] for r in rows} == {'"raster"', '"hilbert"'}
    assert {"metric", "value", "param_seed"} <= set(rows[0])


def test_reproduce_writes_only_its_profiles_files_with_times_and_provenance(tmp_path, monkeypatch):
    """reproduce at 'smoke' (the notebooks replaced by a stand-in that records a comparison)."""
    import json

    from hipcore import report, sweep

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("01_a", "02_b"):
        (notebooks / f"{name}.ipynb").write_text("{}")
    results = tmp_path / "results"
    (results / "SUMMARY.md").parent.mkdir()
    (results / "SUMMARY.md").write_text("quick summary\n")
    seen = []

    def run(nb, output, parameters, **_):
        seen.append(parameters)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("{}")
        report.append_comparison(results / nb.stem / parameters["profile"] / "comparisons.csv", finding=f"x {nb.stem}",
                                 claim="higher", paper_key="", metric="top-1 %", seed=0, baseline=1.0, treatment=2.0)
        return 3.0

    monkeypatch.setattr(sweep, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(sweep, "run_notebook", run)
    readme = tmp_path / "README.md"
    readme.write_text("unchanged\n")
    out = sweep.reproduce("smoke", results_dir=results, readme=readme)
    assert out == results / "SUMMARY_smoke.md" and "x 01_a" in out.read_text()
    assert (results / "SUMMARY.md").read_text() == "quick summary\n" and readme.read_text() == "unchanged\n"
    assert sorted(p.name for p in (results / "executed" / "smoke").glob("*.ipynb")) == ["01_a.ipynb", "02_b.ipynb"]
    record = json.loads((results / "executed" / "smoke" / "provenance.json").read_text())
    assert record["notebook_seconds"] == {"01_a": 3.0, "02_b": 3.0} and record["total_seconds"] == 6.0
    assert all(not p["results_dir"].startswith("/") for p in seen)   # relative: no machine path recorded
