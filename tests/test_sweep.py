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
