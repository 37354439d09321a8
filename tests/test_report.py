"""Verdict rules, their simulated error rates, findings tables and SUMMARY files per profile."""

import hashlib
import json
import math
import random

import pytest

from hipcore import provenance, report, summary
from hipcore.report import (
    append_comparison,
    describe_ours,
    equivalence_verdict,
    findings,
    markdown_table,
    paper_reference,
    power,
    read_comparisons,
    verdict,
)
from hipcore.stats import t_cdf, t_interval, t_quantile
from hipcore.summary import write_summary

TRIALS = 8000
# A simulated rate of a true 5% is within 2 Monte Carlo standard errors of it:
ALLOWANCE = 2 * math.sqrt(0.05 * 0.95 / TRIALS)


def rate(claim, true_effect, sd, n, margin=None, trials=TRIALS, seed=1, paper=None):
    """How often the rule says 'reproduced' for simulated seeds with a known true effect (with
    `paper`, the paper's effect the size check compares against)."""
    rng = random.Random(seed)
    return sum(verdict(claim, [rng.gauss(true_effect, sd) for _ in range(n)], margin, paper=paper) == "reproduced"
               for _ in range(trials)) / trials


def test_t_quantiles_match_the_tables():
    for df, q975, q95 in ((1, 12.7062, 6.3138), (2, 4.3027, 2.9200), (4, 2.7764, 2.1318),
                          (10, 2.2281, 1.8125), (30, 2.0423, 1.6973)):
        assert t_quantile(0.975, df) == pytest.approx(q975, abs=1e-4)
        assert t_quantile(0.95, df) == pytest.approx(q95, abs=1e-4)
    assert t_cdf(0.0, 3) == 0.5 and t_quantile(0.025, 4) == pytest.approx(-2.7764, abs=1e-4)
    ci = t_interval([1.0, 2.0, 3.0])
    assert (ci.mean, ci.sd) == (2.0, 1.0) and ci.half_width == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    with pytest.raises(ValueError):
        t_interval([1.0])


def test_paper_reference_holds_the_papers_numbers():
    ref = paper_reference()
    assert ref["imagenet.hip16"].value == 81.0
    assert ref["effect.F4_shuffle_with_mae"].value == -4.7
    assert ref["effect.F4_interaction"].value == pytest.approx(-4.7 - -1.3)
    assert ref["effect.F5_speedup_hip16_vs_perceiver_io_224"].unit == "ratio"
    assert ref["speed.perceiver_io.1024"].value is None           # out of memory in the paper
    assert not any("compute_matched" in key for key in ref)       # the paper ran no such control


@pytest.mark.parametrize("claim, diffs, expected", [
    ("higher", [2.0, 2.2, 1.8], "reproduced"),
    ("higher", [2.0, -1.0, 3.0], "same direction, not significant"),
    ("higher", [-2.0, -2.2, -1.8], "opposite direction, significant"),
    ("higher", [-2.0, 1.0, -3.0], "opposite direction, not significant"),
    ("lower", [-1.0, -1.1, -0.9], "reproduced"),
])
def test_directional_levels(claim, diffs, expected):
    assert verdict(claim, diffs) == expected


def test_equivalence_levels():
    assert equivalence_verdict([0.1, -0.2, 0.05], 1.0) == "reproduced"
    # F3 as committed: a mean near 0 with an sd of about 0.94 cannot be shown within +-1 with 3 seeds
    assert equivalence_verdict([-0.57 - 0.94, -0.57, -0.57 + 0.94], 1.0).startswith("not shown (the interval")
    assert "cannot fit" in equivalence_verdict([-1.51, -0.57, 0.37], 1.0)
    assert equivalence_verdict([0.6, 0.9, 0.75], 1.0) == "not shown (the interval reaches beyond ±1)"
    assert equivalence_verdict([3.0, 3.1, 2.9], 1.0).startswith("not reproduced (a difference")
    with pytest.raises(ValueError, match="margin"):
        verdict("same", [0.0, 0.1])
    with pytest.raises(ValueError, match="margin"):
        equivalence_verdict([0.0, 0.1], -1.0)


def test_rules_need_two_replicates_and_finite_values():
    assert verdict("higher", [5.0]).startswith("no verdict")
    assert verdict("same", [0.0], 1.0).startswith("no verdict")
    assert verdict("higher", [1.0, math.nan]).startswith("no verdict")
    with pytest.raises(ValueError, match="claim"):
        verdict("bigger", [1.0, 2.0])


@pytest.mark.parametrize("n", [3, 5, 10])
def test_directional_rule_false_positives_at_a_true_effect_of_zero(n):
    for claim in ("higher", "lower"):
        assert rate(claim, 0.0, 1.0, n) <= 0.05                   # the rule is built for 2.5%


@pytest.mark.parametrize("n, sd", [(3, 0.2), (5, 0.3), (10, 0.5), (3, 1.0)])
def test_equivalence_false_same_at_a_true_effect_equal_to_the_margin(n, sd):
    for true in (1.0, -1.0):
        assert rate("same", true, sd, n, margin=1.0) <= 0.05 + ALLOWANCE


def test_noise_makes_equivalence_harder_not_easier():
    rates = [rate("same", 0.0, sd, 3, margin=1.0, trials=1000) for sd in (0.1, 0.5, 1.0)]
    assert rates[0] > 0.9 and rates[0] > rates[1] > rates[2]
    rng = random.Random(2)
    old = [[rng.gauss(0.0, 1.0) for _ in range(3)] for _ in range(1000)]
    old_rate = sum(abs(sum(d) / 3) <= 2 * t_interval(d).sd for d in old) / len(old)
    assert old_rate > 0.9 and rates[2] < 0.2     # the earlier |mean| <= 2 sd rule passed 93% of these


def test_the_rules_can_pass_power_grows_with_effect_and_seeds():
    assert rate("higher", 3.0, 1.0, 5) > 0.9
    assert power("higher", 0.5, 1.0, 3) < power("higher", 2.0, 1.0, 3) < power("higher", 2.0, 1.0, 10)
    assert power("higher", 0.0, 1.0, 5) <= 0.05
    assert power("higher", 1.0, 1.0, 4) == pytest.approx(rate("higher", 1.0, 1.0, 4, trials=4000, seed=0))
    assert math.isnan(power("higher", 1.0, 1.0, 1))


def write_pairs(path, name, claim, key, pairs, metric="top-1 %", **kwargs):
    for seed, (base, treat) in enumerate(pairs):
        append_comparison(path, finding=name, claim=claim, paper_key=key, metric=metric,
                          seed=seed, baseline=base, treatment=treat, **kwargs)


def test_a_finding_has_its_interval_size_and_power(tmp_path):
    path = tmp_path / "c.csv"
    write_pairs(path, "F4 with MAE", "lower", "effect.F4_shuffle_with_mae", [(80.0, 76.0), (81.0, 76.5), (80.5, 75.5)],
                converged="yes", epochs="30/30")
    (f,) = findings(read_comparisons(path))
    assert f.seeds == 3 and f.paper == -4.7 and f.reproduced and f.replicate == "seed"
    assert f.effect == pytest.approx(-4.5) and f.effect_sd == pytest.approx(0.5)
    half = 4.3027 * 0.5 / math.sqrt(3)                          # t(0.975, 2) x sd / sqrt(n)
    assert (f.low, f.high) == pytest.approx((-4.5 - half, -4.5 + half), abs=1e-3)
    assert f.size_ratio == pytest.approx(4.5 / 4.7) and f.size_flag == ""
    assert 0.5 < f.power <= 1.0
    table = markdown_table([f])
    assert "| F4 with MAE | -4.7 | -4.50 [-5.74, -3.26] | top-1 % | 0.96 | 3 seeds |" in table


def test_effects_far_from_the_papers_size_are_flagged(tmp_path):
    path = tmp_path / "c.csv"
    write_pairs(path, "F4 with MAE", "lower", "effect.F4_shuffle_with_mae", [(80.0, 60.0), (81.0, 62.0), (80.5, 59.5)],
                converged="yes")
    (f,) = findings(read_comparisons(path))
    assert not f.reproduced and f.size_flag and "outside 0.5-2x" in markdown_table([f])
    assert f.verdict == "direction reproduced, size 4.3x the paper's (the interval excludes it)"


@pytest.mark.parametrize("values, expected", [
    ([-4.0, -4.6, -5.2], "reproduced"),                              # the interval holds -4.7
    ([-8.0, -8.5, -9.0], "reproduced"),                              # excludes it, but 1.8x: inside the band
    ([-20.0, -21.0, -19.5], "direction reproduced, size 4.3x the paper's (the interval excludes it)"),
    ([-1.0, -1.1, -0.9], "direction reproduced, size 0.21x the paper's (the interval excludes it)"),
    ([-20.0, -2.0, -6.0], "same direction, not significant"),
])
def test_directional_levels_weigh_the_papers_size(values, expected):
    assert verdict("lower", values, paper=-4.7) == expected


@pytest.mark.parametrize("n", [3, 5, 10])
def test_size_rule_false_reproduced_at_zero_and_at_five_times_the_paper(n):
    assert rate("higher", 0.0, 1.0, n, paper=2.0) <= 0.025 + ALLOWANCE    # no effect at all
    # 5x the paper's with a seed sd equal to the paper's effect: 3 seeds leave a wide interval
    # that still holds the paper's value now and then (about 6%); 5 or more almost never
    assert rate("higher", 5.0, 1.0, n, paper=1.0) <= (0.10 if n == 3 else 0.01)
    assert rate("higher", 1.0, 0.3, n, paper=1.0) > 0.8                   # the paper's size passes


def test_a_noisy_interval_cannot_tell_5x_from_1x():
    # With a seed sd twice the paper's effect, 3 seeds' interval often holds the paper's value
    # and a 5x effect passes as 'reproduced' (about 15%); 10 seeds make that rare. The
    # interval's width, shown beside the verdict, is what tells a reader which case a row is.
    assert rate("higher", 5.0, 2.0, 3, paper=1.0) > 0.10
    assert rate("higher", 5.0, 2.0, 10, paper=1.0) < 0.01


def test_unconverged_arms_are_never_reproduced(tmp_path):
    pairs = [(80.0, 76.0), (81.0, 76.5), (80.5, 75.5)]
    for converged, label in (("no", "not converged at 2/10 epochs: "),
                             ("", "not converged (no plateau recorded): ")):
        path = tmp_path / f"c{converged}.csv"
        write_pairs(path, "F4 with MAE", "lower", "effect.F4_shuffle_with_mae", pairs, converged=converged,
                    epochs="2/10" if converged else "")
        (f,) = findings(read_comparisons(path))
        assert not f.reproduced
        assert f.verdict == label + "otherwise as the paper's (direction, and size where it gives one)"
    mixed = tmp_path / "mixed.csv"
    for seed, (b, t) in enumerate(pairs):
        append_comparison(mixed, finding="x", claim="lower", paper_key="effect.F4_shuffle_with_mae",
                          metric="top-1 %", seed=seed, baseline=b, treatment=t, converged="yes" if seed else "no")
    (f,) = findings(read_comparisons(mixed))
    assert f.converged == "no" and not f.reproduced
    assert report.converged_verdict("reproduced", "yes") == "reproduced"
    # 'n/a' (one recipe computed two ways) passes only when every row says so
    parity = tmp_path / "parity.csv"
    for seed, (b, t) in enumerate([(80.0, 80.1), (81.0, 80.9), (80.5, 80.5)]):
        append_comparison(parity, finding="bf16 = fp32", claim="same", paper_key="", metric="top-1 %", seed=seed,
                          baseline=b, treatment=t, converged="n/a" if seed else "")
    (f,) = findings(read_comparisons(parity))
    assert f.converged == "" and f.verdict.startswith("not converged (no plateau recorded)")
    append_comparison(parity.with_name("p2.csv"), finding="bf16 = fp32", claim="same", paper_key="",
                      metric="top-1 %", seed=0, baseline=80.0, treatment=80.1, converged="n/a")
    append_comparison(parity.with_name("p2.csv"), finding="bf16 = fp32", claim="same", paper_key="",
                      metric="top-1 %", seed=1, baseline=81.0, treatment=80.9, converged="n/a")
    (f,) = findings(read_comparisons(parity.with_name("p2.csv")))
    assert f.converged == "n/a" and not f.verdict.startswith("not converged")
    with pytest.raises(ValueError, match="converged"):
        append_comparison(mixed, finding="x", claim="lower", paper_key="", metric="top-1 %", seed=0,
                          baseline=1.0, treatment=0.0, converged="maybe")


def test_holm_adjusts_and_keeps_the_family_wise_rate():
    assert report.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    rng, rows, trials = random.Random(3), 10, 2000
    naive = holm_hits = 0
    for _ in range(trials):
        ps = [report.p_value([rng.gauss(0.0, 1.0) for _ in range(3)]) for _ in range(rows)]
        naive += min(ps) <= 0.05
        holm_hits += min(report.holm(ps)) <= report.HOLM_ALPHA
    assert naive / trials > 0.3                                   # ten unadjusted tests: often one false hit
    assert holm_hits / trials <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / trials)
    assert report.p_value([1.0, 2.0, 3.0]) == pytest.approx(2 * (1 - t_cdf(2.0 / (1 / math.sqrt(3)), 2)))


def test_a_row_is_reproduced_only_if_it_survives_the_adjustment_its_table_shows(tmp_path):
    path = tmp_path / "c.csv"
    # Each alone: the paper's direction, significant, of the paper's size (two-sided p 0.044 and 0.039).
    write_pairs(path, "F4 with MAE", "lower", "effect.F4_shuffle_with_mae", [(80.0, 77.0), (81.0, 76.5), (80.5, 74.0)],
                converged="yes", epochs="30/30")
    write_pairs(path, "F4 without MAE", "lower", "effect.F4_shuffle_without_mae",
                [(80.0, 79.1), (81.0, 79.8), (80.5, 78.7)], converged="yes", epochs="30/30")
    alone = [findings([r for r in read_comparisons(path) if r["finding"] == name])[0]
             for name in ("F4 with MAE", "F4 without MAE")]
    assert [f.verdict for f in alone] == ["reproduced", "reproduced"]          # a table of one: p itself
    both = findings(read_comparisons(path))
    assert [f.alone for f in both] == ["reproduced", "reproduced"]
    holm = report.holm([f.p for f in both])
    assert [f.holm_p for f in both] == pytest.approx(holm)
    for f in both:
        assert f.reproduced == (f.holm_p <= report.HOLM_ALPHA)                 # the verdict agrees with its column
        if not f.reproduced:
            assert f.verdict == ("same direction, significant alone, not after Holm's adjustment "
                                 f"(p {f.holm_p:.2g} > 0.05)")
    assert not any(f.reproduced for f in both) and holm == pytest.approx([0.078, 0.078], abs=1e-3)
    table = markdown_table(both)
    assert "| Holm p |" in table and f"{max(holm):.2g} (> 0.05)" in table and "significant alone" in table
    unconverged = findings([{**r, "converged": "no"} for r in read_comparisons(path)])
    assert all(f.verdict.startswith("not converged at 30/30 epochs: ") for f in unconverged)
    assert not any(f.reproduced for f in unconverged)


def test_every_committed_reproduced_row_is_significant_after_holm():
    from hipcore.locations import results_dir

    for profile in ("quick",):
        _, found = summary.profile_findings(results_dir(), profile)
        assert found
        for f in found:
            if f.claim != "same" and f.verdict.startswith(report.SIGNIFICANT):
                assert f.holm_p <= report.HOLM_ALPHA, (f.finding, f.holm_p)
        f5 = next(f for f in found if f.finding.startswith("F5"))
        assert f5.holm_p <= report.HOLM_ALPHA or not f5.reproduced      # reproduced: significant after Holm


def timed(seconds_by_model, side=224):
    """bench Results holding only timed steps: {model: [seconds per repeat]}."""
    from hipcore.bench.suite import Results

    steps = [{"model": m, "side": side, "batch": 2, "repeat": i, "seconds": t}
             for m, times in seconds_by_model.items() for i, t in enumerate(times)]
    rows = [{"model": m, "side": side, "status": "ok", "steps_per_s": 1 / sorted(t)[len(t) // 2],
             "fraction_of_peak": 0.1, "peak_gflops": 100.0, "peak_memory_gb": 1.0, "inputs": side * side}
            for m, t in seconds_by_model.items()]
    return Results(rows, steps, {})


def test_timed_repeats_drop_warm_up_steps_and_the_row_and_summary_agree(tmp_path):
    from hipcore.bench import results as bench
    from hipcore.experiments.efficiency import FINDINGS

    assert bench.warmup_steps([5.83, 3.80, 3.73]) == 1                    # F5's quick Perceiver IO
    assert bench.warmup_steps([0.74, 0.73, 0.73]) == 0 and bench.warmup_steps([9.0, 1.0]) == 0   # two stay
    assert bench.warmup_steps([9.0, 6.0, 1.0, 1.0, 1.1]) == 2
    run = timed({"perceiver_io": [5.834, 3.801, 3.729], "hip16": [0.737, 0.732, 0.727]})
    assert bench.record_comparisons(run, tmp_path / "c.csv", FINDINGS[0]) == 2
    rows = read_comparisons(tmp_path / "c.csv")
    assert [r["seed"] for r in rows] == ["1", "2"]                          # repeat 0 was warm-up
    (f5,) = findings(rows)
    ratio = bench.f5_ratio(run)
    assert f5.effect == pytest.approx(ratio) and ratio == pytest.approx(math.sqrt(3.801 / 0.732 * 3.729 / 0.727))
    assert bench.ratios(run)[224] == pytest.approx(3.801 / 0.732)          # the medians': all repeats
    (target,) = [t for t in bench.targets(run) if t["target"].startswith("HiP-16 / Perceiver IO")]
    assert target["ours"] == f"{f5.effect:.1f}" and describe_ours(f5).startswith(f"{f5.effect:.2f}x")
    assert bench.warmup_record(run)["f5_repeats_dropped"] == [0]
    steady = timed({"perceiver_io": [3.8, 3.7, 3.9], "hip16": [0.73, 0.74, 0.72]})
    assert len(bench.timed_pairs(steady, "perceiver_io", "hip16", 224)) == 3


def test_the_committed_f5_row_and_its_summary_json_say_the_same_ratio():
    from hipcore.locations import results_dir

    folder = results_dir() / "05_efficiency" / "quick"
    (f5,) = findings(read_comparisons(folder / "comparisons.csv"))
    record = json.loads((folder / "summary.json").read_text())
    (target,) = [t for t in record["targets"] if t["target"].startswith("HiP-16 / Perceiver IO")]
    assert target["ours"] == f"{f5.effect:.1f}"
    assert sorted(int(r["seed"]) for r in read_comparisons(folder / "comparisons.csv")) == record["warmup"][
        "f5_repeats_kept"]


def test_a_ratio_claim_is_judged_as_a_ratio_over_repeats(tmp_path):
    path = tmp_path / "c.csv"
    write_pairs(path, "F5", "higher", "effect.F5_speedup_hip16_vs_perceiver_io_224",
                [(0.05, 0.40), (0.05, 0.42), (0.048, 0.39)], metric="steps/s ratio at 224", replicate="repeat")
    (f,) = findings(read_comparisons(path))
    assert f.scale == "ratio" and f.replicate == "repeat" and f.paper == 3.7
    assert 7.5 < f.effect < 8.5 and f.low < f.effect < f.high       # timings need no plateau; 2.2x the paper's
    assert f.verdict == "direction reproduced, size 2.2x the paper's (the interval excludes it)"
    write_pairs(tmp_path / "d.csv", "F5", "higher", "effect.F5_speedup_hip16_vs_perceiver_io_224",
                [(0.1, 0.40), (0.1, 0.42), (0.098, 0.39)], metric="steps/s ratio at 224", replicate="repeat")
    assert findings(read_comparisons(tmp_path / "d.csv"))[0].reproduced
    assert f.size_ratio == pytest.approx(f.effect / 3.7)
    assert "3 repeats" in markdown_table([f]) and "3.7x" in markdown_table([f])


def test_equivalence_margin_is_written_with_the_rows(tmp_path):
    path = tmp_path / "c.csv"
    write_pairs(path, "F3", "same", "effect.F3_mae_on_fourier", [(70.0, 70.1), (71.0, 70.9), (70.5, 70.5)],
                converged="yes")
    (row, *_) = read_comparisons(path)
    assert float(row["margin"]) == report.MARGINS["top-1 %"]
    (f,) = findings(read_comparisons(path))
    assert f.reproduced and f.margin == 1.0 and "within ±1" in markdown_table([f])
    with pytest.raises(ValueError, match="margin"):
        append_comparison(tmp_path / "d.csv", finding="x", claim="same", paper_key="", metric="steps/s",
                          seed=0, baseline=1.0, treatment=1.0)


def test_a_finding_not_in_the_paper_shows_no_paper_number(tmp_path):
    path = tmp_path / "c.csv"
    write_pairs(path, "control", "higher", "", [(70.0, 72.0), (71.0, 73.5)])
    (f,) = findings(read_comparisons(path))
    assert f.paper is None and math.isnan(f.power) and "| not in the paper |" in markdown_table([f])
    write_pairs(tmp_path / "e.csv", "x", "higher", "effect.nonexistent", [(1.0, 2.0), (1.0, 2.0)])
    with pytest.raises(ValueError, match="not in paper_reference"):
        findings(read_comparisons(tmp_path / "e.csv"))


def test_the_sentence_says_why_a_verdict_changed_from_the_earlier_rule(tmp_path):
    path = tmp_path / "c.csv"
    write_pairs(path, "F3", "same", "effect.F3_mae_on_fourier", [(70.0, 68.5), (71.0, 70.43), (70.5, 70.87)],
                converged="yes")
    (f,) = findings(read_comparisons(path))
    assert report.previous_verdict(f) == "reproduced" and not f.reproduced
    sentence = report.verdict_sentence(f)
    assert "not shown" in sentence and "earlier rule" in sentence and "noisier seeds" in sentence


def test_old_files_without_the_optional_columns_are_read(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("finding,claim,paper_key,metric,seed,baseline,treatment\n"
                    "F3,same,effect.F3_mae_on_fourier,top-1 %,0,70.0,70.1\n"
                    "F3,same,effect.F3_mae_on_fourier,top-1 %,1,71.0,70.9\n")
    (f,) = findings(read_comparisons(path))
    assert f.margin == 1.0 and f.replicate == "seed" and f.kind == "effect"
    assert f.converged == "" and f.verdict.startswith("not converged (no plateau recorded)")
    other = tmp_path / "other.csv"
    other.write_text(path.read_text().replace("top-1 %", "steps/s"))
    with pytest.raises(ValueError, match="states no margin"):
        findings(read_comparisons(other))
    bad = tmp_path / "bad.csv"
    bad.write_text("finding,seed\nx,0\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_comparisons(bad)


def quick_results(root):
    """Two notebooks recording the same finding (the same runs), as 01 and 03 do."""
    for notebook in ("01_imagenet_comparison", "03_mae_positional_embeddings"):
        write_pairs(root / notebook / "quick" / "comparisons.csv", "F1", "higher",
                    "effect.F1_mae_vs_classification_positions", [(60.0, 62.0), (61.0, 63.5), (60.5, 62.0)])
    write_pairs(root / "02_flattening_ablation" / "quick" / "comparisons.csv", "F4 interaction", "lower",
                "effect.F4_interaction", [(-1.0, -5.0), (-2.0, -5.5), (-1.5, -4.0)], kind="interaction")


def test_one_finding_one_row_naming_every_notebook(tmp_path):
    quick_results(tmp_path)
    text = write_summary(tmp_path, "quick").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| F1 ")]
    assert len(rows) == 1 and "[01](executed/quick/01_imagenet_comparison.ipynb)" in rows[0] \
        and "[03](executed/quick/03_mae_positional_embeddings.ipynb)" in rows[0]
    assert "(interaction)" in text and "Seeds vary" in text
    assert "not shown converged (no plateau recorded)" in rows[0] and "Multiplicity: 2 directional rows" in text
    assert "**Early training:** 2 of the 2 rows over seeds rest on arms not shown at their validation plateau" \
        in text and text.index("**Early training:**") < text.index("| F1 ")
    changed = tmp_path / "01_imagenet_comparison" / "quick" / "comparisons.csv"
    changed.unlink()
    write_pairs(changed, "F1", "higher", "effect.F1_mae_vs_classification_positions",
                [(60.0, 99.0), (61.0, 63.5), (60.5, 62.0)])
    with pytest.raises(ValueError, match="differs between notebooks"):
        write_summary(tmp_path, "quick")
    # a reproduce in parts that has rerun 01 but not yet 03: 03's copy is an earlier run's, left out
    executed = tmp_path / "executed" / "quick"
    provenance.reproduce_record(executed, {"01_imagenet_comparison": 30.0}, "quick",
                                parts=[{"notebooks": ["01_imagenet_comparison"], "cached_runs_at_start": 0}],
                                missing=["03_mae_positional_embeddings"])
    rows = [line for line in write_summary(tmp_path, "quick").read_text().splitlines() if line.startswith("| F1 ")]
    assert len(rows) == 1 and "[01](executed" in rows[0] and "[03](executed" not in rows[0]
    provenance.reproduce_record(executed, {"03_mae_positional_embeddings": 30.0}, "quick",
                                parts=[{"notebooks": ["03_mae_positional_embeddings"], "cached_runs_at_start": 0}],
                                missing=["01_imagenet_comparison"])            # 03 rerun, 01 not: 03's copy leads
    rows = [line for line in write_summary(tmp_path, "quick").read_text().splitlines() if line.startswith("| F1 ")]
    assert len(rows) == 1 and "[03](executed" in rows[0] and "[01](executed" not in rows[0]


def digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_summary_at_another_profile_leaves_the_quick_files_byte_identical(tmp_path):
    from hipcore.cli import main

    quick_results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("x\n")
    assert main(["summary", "--results-dir", str(tmp_path), "--readme", str(readme)]) == 0
    write_pairs(tmp_path / "01_imagenet_comparison" / "smoke" / "comparisons.csv", "F1", "higher",
                "effect.F1_mae_vs_classification_positions", [(10.0, 12.0)])
    before = digest(tmp_path)
    assert main(["summary", "--results-dir", str(tmp_path), "--profile", "smoke", "--readme", str(readme)]) == 0
    after = digest(tmp_path)
    assert set(after) - set(before) == {"SUMMARY_smoke.md"}
    assert {k: after[k] for k in before} == before
    assert "(smoke profile)" in (tmp_path / "SUMMARY_smoke.md").read_text()
    assert "executed/smoke/01_imagenet_comparison.ipynb" in (tmp_path / "SUMMARY_smoke.md").read_text()


def test_the_memory_half_of_f5_is_its_own_row_from_the_full_profile(tmp_path):
    full = tmp_path / "05_efficiency" / "full"
    full.mkdir(parents=True)
    header = "model,side,batch,status,peak_memory_gb\n"
    (full / "metrics.csv").write_text(header + "hip16,2048,2,ok,10.4\nhip256,2048,2,ok,6.2\n"
                                      "perceiver_io,2048,2,skipped (too slow),\nhip16,1024,2,ok,4.4\n")
    row = summary.memory_finding(tmp_path)
    assert "**full** profile" in row and "batch 2" in row and "TPUv3, batch 8" in row
    assert "| not reproduced at batch 2 on this machine |" in row and "HiP-256: trains, 6.2 GiB" in row
    (full / "metrics.csv").write_text(header + "hip16,2048,2,OOM,\nhip256,2048,2,ok,6.2\n"
                                      "perceiver_io,2048,2,skipped (too slow),\n")
    assert "| no verdict: a model was not measured |" in summary.memory_finding(tmp_path)
    (full / "metrics.csv").write_text(header + "hip16,2048,2,OOM,\nhip256,2048,2,ok,6.2\nperceiver_io,2048,2,OOM,\n")
    assert "| reproduced |" in summary.memory_finding(tmp_path)
    assert summary.memory_finding(tmp_path / "nothing") == ""


def test_sentences_read_no_meaning_into_differences_below_the_noise():
    same = report.compare_scores("shuffled", 0.076, "raster", 0.077, 0.002, 0.002)
    assert "about the same" in same and "more" not in same and "less" not in same
    more = report.compare_scores("MAE", 0.30, "classification", 0.05, 0.01, 0.01)
    assert "MAE holds more structure than classification" in more


def test_a_claim_the_paper_makes_without_a_number_is_named_so(tmp_path):
    path = tmp_path / "c.csv"
    write_pairs(path, "F7", "higher", "effect.F7_mae_positions_structure", [(0.0, 0.10), (0.001, 0.12)])
    (f,) = findings(read_comparisons(path))
    assert f.paper is None and f.verdict == "not converged (no plateau recorded): same direction, not significant"
    write_pairs(tmp_path / "d.csv", "F7", "higher", "effect.F7_mae_positions_structure",
                [(0.0, 0.10), (0.001, 0.12), (0.0, 0.11)], converged="yes")
    (f,) = findings(read_comparisons(tmp_path / "d.csv"))
    assert f.reproduced                               # no number: no size to check, the direction decides
    write_pairs(tmp_path / "e.csv", "control", "higher", "", [(0.0, 0.10), (0.001, 0.12), (0.0, 0.11)],
                converged="yes")
    assert findings(read_comparisons(tmp_path / "e.csv"))[0].verdict == "direction shown (not in the paper)"
    assert "| claimed, no number |" in markdown_table([f]) and math.isnan(f.power)


def test_the_readme_blocks_are_filled_from_the_results(tmp_path):
    from hipcore import notebook, provenance

    quick_results(tmp_path)
    folder = tmp_path / "01_imagenet_comparison" / "quick"
    notebook.write_metrics(folder / "metrics.csv", [
        {"run_id": "HiP, MAE", "seed": s, "metric": "total_seconds", "value": 120.0 * (s + 1)} for s in (0, 1)])
    ran = {"notebooks": ["01_imagenet_comparison"], "cached_runs_at_start": None}      # a cache it did not count
    provenance.reproduce_record(tmp_path / "executed" / "quick", {"01_imagenet_comparison": 30.0}, "quick",
                                parts=[ran], missing=[])
    readme = tmp_path / "README.md"
    marks = [summary.block_marks(name) for name in ("results", "times", "budget")]
    readme.write_text("top\n" + "\nmiddle\n".join(f"{a}\nold\n{b}" for a, b in marks) + "\nend\n")
    assert summary.update_readme(readme, tmp_path, "quick") == "updated"
    text = readme.read_text()
    assert summary.update_readme(readme, tmp_path, "quick") == "unchanged"          # nothing new to say
    assert "old" not in text and text.startswith("top\n") and text.endswith("end\n")
    assert "| finding | paper | ours [interval] | unit | ours / paper | regime | verdict |" in text
    assert "| 0.98 | not shown converged (no plateau recorded) |" in text          # F4 interaction: -3.33 / -3.4
    assert "| 01 | HiP, MAE | 2 | 3.0 | 6.0 |" in text                           # minutes per seed, in all
    assert "as if run alone on an empty cache: 01 6 min" in text
    assert "found its runs in the run cache, so its 30 s of notebook time (01 30 s) is not what a fresh" in text
    provenance.reproduce_record(tmp_path / "executed" / "quick", {"01_imagenet_comparison": 30.0}, "quick",
                                parts=[{**ran, "cached_runs_at_start": 0}], missing=[])
    assert "from an empty run cache took 30 s" in summary.readme_times(tmp_path, "quick")
    readme.write_text("no blocks\n")
    assert not summary.update_readme(readme, tmp_path, "quick")


def test_summary_shows_regime_baselines_and_test_noise(tmp_path):
    import json

    quick_results(tmp_path)
    folder = tmp_path / "01_imagenet_comparison" / "quick"
    header = "model,seed,test_accuracy,train_accuracy,seconds,train_size,test_size\n"
    (folder / "baselines.csv").write_text(header + "logistic regression,0,80.5,90,1,5400,2000\n"
                                          "logistic regression,1,81.5,90,1,5400,2000\n"
                                          "small CNN,0,85.6,90,1,5400,2000\n")
    (folder / "summary.json").write_text(json.dumps({"settings": {"limit_test": 2000}}))
    text = write_summary(tmp_path, "quick").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| F1 ")]
    assert "baselines logistic regression 81.0, small CNN 85.6" in row
    assert "±1.1 (2,000 test)" in row                 # sqrt(0.612 x 0.388 / 2000) at the arms' mean 61.2%
    (inter,) = [line for line in text.splitlines() if line.startswith("| F4 interaction")]
    assert "test)" not in inter                        # an interaction's rows are effects, not top-1s
    (folder / "baselines.csv").write_text(header + "logistic regression,0,high,90,1,5400,2000\n")
    with pytest.raises(ValueError, match="baselines.csv: row 1: test_accuracy 'high' is not a finite number"):
        write_summary(tmp_path, "quick")


def test_the_readme_names_the_machine_each_notebook_s_results_were_made_on(tmp_path):
    import json

    amd = {"cpu": "AMD EPYC", "cpu_flags": [], "cores": 2, "precision": "fp32"}
    intel = {"cpu": "Intel Xeon", "cpu_flags": ["amx_bf16", "avx512_bf16"], "cores": 2, "precision": "bf16"}
    for name, machine in (("01_imagenet_comparison", amd), ("02_flattening_ablation", intel),
                          ("03_mae_positional_embeddings", {"gpu": "NVIDIA H200", "precision": "bf16"})):
        folder = tmp_path / name / "quick"
        folder.mkdir(parents=True)
        (folder / "provenance.json").write_text(json.dumps({"commit": "0123456789", "machine": machine,
                                                            "packages": {"torch": "2.13.0"}}))
    later = tmp_path / "04_point_clouds" / "quick"              # the same code, committed one notebook later
    later.mkdir(parents=True)
    (later / "provenance.json").write_text(json.dumps({"commit": "abcdef0123", "machine": amd,
                                                       "packages": {"torch": "2.13.0"}}))
    text = summary.readme_machine(tmp_path, "quick")
    assert "AMD EPYC (low-precision flags: none), 2 cores, torch 2.13.0, fp32, commit 0123456 (notebooks 01); " in text
    assert "fp32, commit abcdef0 (notebooks 04)" in text               # no fingerprint: its commit is its code
    for folder, commit in ((tmp_path / "01_imagenet_comparison" / "quick", "0123456789"), (later, "abcdef0123")):
        (folder / "provenance.json").write_text(json.dumps({"commit": commit, "machine": amd, "result_fingerprint":
                                                            "fedcba987654", "packages": {"torch": "2.13.0"}}))
    text = summary.readme_machine(tmp_path, "quick")
    assert "fp32, the same code at commits 0123456, abcdef0 (notebooks 01, 04)" in text
    assert "Intel Xeon (low-precision flags: amx_bf16, avx512_bf16), 2 cores, torch 2.13.0, bf16" in text
    assert "NVIDIA H200 (GPU), torch 2.13.0, bf16, commit 0123456 (notebooks 03)" in text
    assert summary.readme_machine(tmp_path, "full") == "No `full` results record their machine yet."


def test_the_early_training_lead_is_there_only_while_a_row_is_not_at_its_plateau(tmp_path):
    from hipcore.report import early_training_line

    path = tmp_path / "comparisons.csv"
    for seed in range(3):
        append_comparison(path, finding="F1", claim="higher", paper_key="effect.F1_mae_vs_classification_positions",
                          metric="top-1 %", seed=seed, baseline=60.0, treatment=71.0 + seed, converged="yes",
                          epochs="30/20/25")
    converged = findings(read_comparisons(path))
    assert early_training_line(converged) == ""
    append_comparison(path, finding="F2", claim="higher", paper_key="effect.F2_mae_vs_fourier",
                      metric="top-1 %", seed=0, baseline=60.0, treatment=61.0, converged="no", epochs="8/2/2")
    assert early_training_line(findings(read_comparisons(path))).startswith("**Early training:** 1 of the 2 rows")


def test_plateau_standing_puts_each_arm_in_the_band_the_baselines_cut_and_always_names_the_top():
    baselines = {"small CNN": 87.0, "logistic regression": 83.0, "MLP": 84.7}
    tests = {"a": 82.9, "b": 83.0, "c": 83.1, "d": 86.0, "e": 84.7}
    assert summary.plateau_standing(tests, baselines) == [
        ("below logistic regression", ["a", "b"]), ("between logistic regression and MLP", ["c", "e"]),
        ("between MLP and small CNN", ["d"]), ("above small CNN", [])]      # a tie is not above
    assert summary.plateau_standing({"a": 90.0}, baselines) == [("above small CNN", ["a"])]
    assert summary.plateau_standing(tests, {}) == []


def test_the_plateau_block_puts_each_arm_s_epochs_beside_the_same_seed_s_baselines(tmp_path):
    import json

    from hipcore.experiments.plateau_budget import write_recipe

    assert summary.readme_plateau(tmp_path, "quick").startswith("No `quick` plateau check yet")
    stage = {"lr": 0.001, "warmup_epochs": 0.5, "selected_epoch": 12, "seconds_per_epoch": 11.4}
    write_recipe(tmp_path / "plateau_check" / "quick" / "hip-fourier" / "plateau.csv", [
        {**stage, "arm": "HiP, Fourier features", "stage": "classification (validation top-1 %)", "epochs_run": 15,
         "cap": 40, "converged": True, "best_val": 80.83, "test": 81.9}])
    write_recipe(tmp_path / "plateau_check" / "quick" / "hip-mae" / "plateau.csv", [
        {**stage, "arm": "HiP, MAE-learned positions", "stage": "MAE pretraining (validation loss)", "epochs_run": 40,
         "cap": 40, "converged": False, "best_val": 0.4123, "test": 0.4188},
        {**stage, "arm": "HiP, MAE-learned positions", "stage": "classification (validation top-1 %)", "epochs_run": 20,
         "cap": 40, "converged": True, "best_val": 80.5, "test": 80.0}])
    for arm in ("hip-fourier", "hip-mae"):
        (tmp_path / "plateau_check" / "quick" / arm / "provenance.json").write_text(json.dumps(
            {"commit": "abcdef0123", "command": "python -m hipcore plateau-budget --arm x --seed 1 --out plateau.csv",
             "machine": {"cpu": "Some CPU", "cpu_flags": ["amx_bf16"], "cores": 2, "precision": "bf16"},
             "packages": {"torch": "2.13.0"}}))
    folder = tmp_path / "01_imagenet_comparison" / "quick"
    folder.mkdir(parents=True)
    (folder / "baselines.csv").write_text("model,seed,test_accuracy,train_accuracy,seconds,train_size,test_size\n"
                                          "logistic regression,1,79.9,90,1,5400,2000\n")
    untuned = summary.readme_plateau(tmp_path, "quick")                # a fixed L2: no standing drawn from it
    assert ("is from before the baselines were tuned on validation (no val_accuracy column), and an untuned "
            "baseline flatters the arms; `make reproduce` rewrites it.\n\nThe findings between") in untuned
    assert "stands among them" not in untuned and "79.9" not in untuned
    (folder / "baselines.csv").write_text(
        "model,seed,l2,epochs,val_accuracy,train_accuracy,test_accuracy,edge,seconds,train_size,val_size,test_size\n"
        "logistic regression,0,0.01,,83.1,90,78.6,,1,6000,6000,2000\n"
        "logistic regression,1,0.01,,83.2,90,79.9,,1,6000,6000,2000\n"
        "small CNN,1,,12,88.0,90,86.4,,1,6000,6000,2000\n")
    text = summary.readme_plateau(tmp_path, "quick")
    assert "| HiP, Fourier features | classification | 15 (40) | yes | 80.83 | 81.9 | 11 |" in text
    assert "| HiP, MAE-learned positions | MAE pretraining | 40 (40) | no: the cap stopped it | 0.4123 |" in text
    assert "Some CPU (low-precision flags: amx_bf16), 2 cores, torch 2.13.0, bf16, commit abcdef0 (hip-fourier, " \
           "hip-mae)" in text
    assert "on the same 6,000 training and 2,000 test images (seed 1, notebook 01): logistic regression 79.9, " \
           "small CNN 86.4.\n" in text
    assert ("stands among them:\n\n- between logistic regression and small CNN: HiP, MAE-learned positions; "
            "HiP, Fourier features\n- above small CNN: none\n") in text
    # the one finding both arms give (F2: MAE-learned 80.0 minus Fourier 81.9), at 2,000 test images
    assert text.endswith("binomial standard error of about 0.9 points): F2 MAE-learned positions vs Fourier "
                         "features -1.9 (paper +2.2).")
    assert "earlier plateau rule" not in text
    record = json.loads((tmp_path / "plateau_check" / "quick" / "hip-mae" / "provenance.json").read_text())
    (tmp_path / "plateau_check" / "quick" / "hip-mae" / "provenance.json").write_text(json.dumps(
        {**record, "command": record["command"].replace("--out", "--patience 5 --out")}))
    text = summary.readme_plateau(tmp_path, "quick")
    flagged = text.split("\nThe runs of ")[1].split(" stopped by the earlier plateau rule (`--patience`: ")
    assert flagged[0] == "hip-mae" and len(flagged) == 2
    (tmp_path / "plateau_check" / "quick" / "hip-mae" / "plateau.csv").write_text(
        "arm,lr,warmup_epochs,stage,epochs_run,cap,converged,selected_epoch,best_val,test,seconds_per_epoch\n"
        "x,0.001,0.5,s,many,40,False,1,0.4,0.4,1\n")
    with pytest.raises(ValueError, match="hip-mae/plateau.csv: epochs, validation, test and seconds must be numbers"):
        summary.readme_plateau(tmp_path, "quick")
