"""Verdicts, findings tables and SUMMARY.md come from the comparisons CSVs alone."""

import math

import pytest

from hipcore.report import (append_comparison, findings, markdown_table, paper_reference,
                            read_comparisons, verdict, write_summary)


def test_paper_reference_holds_the_papers_numbers():
    ref = paper_reference()
    assert ref["imagenet.hip16"].value == 81.0
    assert ref["effect.F4_shuffle_with_mae"].value == -4.7
    assert ref["speed.perceiver_io.1024"].value is None           # out of memory in the paper


@pytest.mark.parametrize("claim, diffs, expected", [
    ("higher", [2.0, 2.2, 1.8], "reproduced"),
    ("higher", [-2.0, -2.2, -1.8], "not reproduced at this scale"),   # wrong direction
    ("higher", [2.0, -1.0, 3.0], "not reproduced at this scale"),     # within the noise
    ("lower", [-1.0, -1.1, -0.9], "reproduced"),
    ("same", [0.1, -0.2, 0.05], "reproduced"),
    ("same", [3.0, 3.1, 2.9], "not reproduced at this scale"),
])
def test_verdict_rule(claim, diffs, expected):
    assert verdict(claim, diffs) == expected


def test_verdict_needs_two_seeds_and_finite_values():
    assert verdict("higher", [5.0]).startswith("no verdict")
    assert verdict("higher", [1.0, math.nan]).startswith("no verdict")
    with pytest.raises(ValueError, match="claim"):
        verdict("bigger", [1.0, 2.0])


def test_summary_is_generated_from_the_csvs(tmp_path):
    path = tmp_path / "02_flattening_ablation" / "quick" / "comparisons.csv"
    for seed, (base, treat) in enumerate([(80.0, 76.0), (81.0, 76.5), (80.5, 75.5)]):
        append_comparison(path, finding="F4 shuffled pixels, with MAE", claim="lower",
                          paper_key="effect.F4_shuffle_with_mae", metric="top-1 %",
                          seed=seed, baseline=base, treatment=treat)
    (found,) = findings(read_comparisons(path))
    assert found.seeds == 3 and found.paper == -4.7 and found.reproduced
    assert found.effect == pytest.approx(-4.5)
    table = markdown_table([found])
    assert "| F4 shuffled pixels, with MAE | top-1 % | -4.7 | -4.50 ± 0.50 | 3 | reproduced |" in table
    summary = write_summary(tmp_path, "quick").read_text()
    assert "## 02_flattening_ablation" in summary and "reproduced" in summary


def test_a_comparisons_file_without_its_columns_is_refused(tmp_path):
    bad = tmp_path / "c.csv"
    bad.write_text("finding,seed\nx,0\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_comparisons(bad)
