"""Findings: the paper's numbers, ours, and a verdict computed from the runs' CSVs.

A notebook records each comparison a verdict rests on as paired rows in
`results/<notebook>/<profile>/comparisons.csv`, one per replicate (a seed, or a repeat of a
timing):

    finding, claim, paper_key, metric, seed, baseline, treatment[, kind, margin, replicate,
    converged, epochs, test_size]

`claim` is the paper's statement about treatment vs baseline: 'higher', 'lower' or 'same'
(no effect). `kind` is 'effect' or 'interaction' (a difference of two effects, e.g. F4's
shuffle cost with MAE minus without, recorded as baseline = one effect, treatment = the
other). `margin` is the equivalence margin of a 'same' claim (`MARGINS` by metric unless the
row states one). `replicate` says what varies between rows: 'seed' or 'repeat'. Where the
paper states the effect as a ratio (its unit in paper_reference.csv is 'ratio'), each
replicate gives log(treatment / baseline) and the effect is the ratio; otherwise each gives
treatment - baseline in the metric's units. `converged` says whether both arms reached their
plateau ('yes', 'no', '' = not recorded), `epochs` how long they trained (text, e.g. '20/40'),
`test_size` how many test examples each top-1 was measured on.

The rules (each can fail; their error rates are simulated in tests/test_report.py):

- 'higher' / 'lower' (and interactions): a 95% t interval of the mean per-replicate effect.
  reproduced: the paper's direction, the interval excludes 0 (a false positive at a true
  effect of 0 at most 2.5% of the time) AND the size is compatible with the paper's: the
  interval contains the paper's value, or our effect over the paper's is within
  `SIZE_RANGE` (0.5x-2x, fixed in advance). Significant in the paper's direction but neither:
  "direction reproduced, size Rx the paper's (the interval excludes it)". A claim the paper
  makes without a number (F7) has no size to check: its direction decides. A row not in the
  paper (our own control) is "direction shown (not in the paper)". Otherwise: same
  direction, not significant; opposite direction (significant or not); no verdict with fewer
  than 2 replicates.
- convergence: a finding over seeds (trained models) whose arms are not all recorded as
  converged ('yes') is "not converged at N epochs: <what the rule said>" (or "not converged
  (no plateau recorded): ..."), never "reproduced"; missing information counts as not shown
  to be converged. Repeats (timings) need no plateau, nor rows marked 'n/a' (one recipe
  computed two ways, e.g. bf16 against fp32).
- multiplicity: `holm` adjusts the p values of a table's directional rows together (Holm at
  5%), and `adjust` applies it to the verdicts: a row significant in the paper's direction
  on its own whose Holm-adjusted p exceeds 5% says "same direction, significant alone, not
  after Holm's adjustment (p ...)", never "reproduced". `findings` (a notebook's table) and
  `merge_notebooks` (SUMMARY's) adjust over the rows they show, and every table shows the
  adjusted p (column *Holm p*).
- 'same': two one-sided t tests at 5% against +-margin (the 90% interval inside the margin).
  reproduced ("the same within +-margin") at most 5% of the time when the true effect is
  at the margin; "not shown" when the interval reaches outside it, which is the answer,
  however close the mean is to 0, while the seeds are too few or too noisy for the interval
  to fit inside the margin.
- power: how often the rule would say 'reproduced' if the true effect were the paper's and
  the replicate-to-replicate sd what we measured (`power`).

`SUMMARY.md` is regenerated from these CSVs alone, one row per finding (`hipcore.summary`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .results import COMPARISON_DEFAULTS, markdown, read_comparisons_csv, read_csv
from .stats import binomial_se, t_cdf, t_interval

COMPARISON_FIELDS = ("finding", "claim", "paper_key", "metric", "seed", "baseline", "treatment")
OPTIONAL_FIELDS = COMPARISON_DEFAULTS      # the columns a file may lack, with their defaults
# both arms at their plateau; not; not recorded (= not shown); no plateau needed (the claim
# compares two computations of one training recipe, e.g. bf16 against fp32)
CONVERGED = ("yes", "no", "", "n/a")
CLAIMS = ("higher", "lower", "same")
KINDS = ("effect", "interaction")
REPLICATES = ("seed", "repeat")
# Equivalence margins of 'same' claims, by metric, fixed before any run was looked at.
MARGINS = {"top-1 %": 1.0}
SIZE_RANGE = (0.5, 2.0)            # our effect over the paper's: compatible inside, flagged outside
HOLM_ALPHA = 0.05                  # family-wise level of the multiplicity-adjusted reading
LEVEL = 0.95                       # two-sided level of the directional intervals
ALPHA_SAME = 0.05                  # each one-sided test of the equivalence rule
POWER_DRAWS = 4000


@dataclass(frozen=True)
class Reference:
    key: str
    value: float | None      # None where the paper reports out of memory
    unit: str
    table: str
    description: str


def paper_reference(path: str | Path | None = None) -> dict[str, Reference]:
    """The paper's numbers, keyed like 'effect.F1_mae_vs_classification_positions'
    (default: results/paper_reference.csv of the checkout, `hipcore.locations`)."""
    if path is None:
        from .locations import results_dir

        path = results_dir() / "paper_reference.csv"
    rows = read_csv(path, ("key", "value", "unit", "table", "description"))
    return {r.key: Reference(r.key, float(r.value) if r.value else None, r.unit, r.table, r.description)
            for r in rows.itertuples(index=False)}


# ---- the rules ----

def _no_verdict(values: list[float], replicate: str = "seed") -> str | None:
    if any(not math.isfinite(v) for v in values):
        return "no verdict (a run produced a non-finite value)"
    if len(values) < 2:
        return f"no verdict ({len(values)} {replicate}{'' if len(values) == 1 else 's'}; needs 2 or more)"
    return None


def size_ratio(mean: float, paper: float, log_scale: bool = False) -> float:
    """Our effect over the paper's (on a log scale: our ratio over the paper's ratio)."""
    return math.exp(mean - paper) if log_scale else mean / paper


def directional_verdict(claim: str, values: list[float], replicate: str = "seed", paper: float | None = None,
                        log_scale: bool = False) -> str:
    """'higher' / 'lower' on per-replicate effects (0 = no effect): see the module docstring.
    `paper` is the paper's effect on the values' scale (a log ratio where `log_scale`); None
    judges the direction alone."""
    if claim not in ("higher", "lower"):
        raise ValueError(f"a directional claim is 'higher' or 'lower', got {claim!r}")
    if (why := _no_verdict(values, replicate)) is not None:
        return why
    ci = t_interval(values, LEVEL)
    sign = 1.0 if claim == "higher" else -1.0
    significant = ci.low > 0 or ci.high < 0
    if sign * ci.mean > 0:
        if not significant:
            return "same direction, not significant"
        if paper is None or ci.low <= paper <= ci.high:
            return "reproduced"
        ratio = size_ratio(ci.mean, paper, log_scale) if paper != 0 else float("inf")
        if SIZE_RANGE[0] <= ratio <= SIZE_RANGE[1]:
            return "reproduced"
        return f"direction reproduced, size {ratio:.2g}x the paper's (the interval excludes it)"
    return f"opposite direction, {'significant' if significant else 'not significant'}"


def equivalence_verdict(values: list[float], margin: float, replicate: str = "seed") -> str:
    """'same': two one-sided tests against +-margin (the 90% interval within the margin)."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"an equivalence margin must be a positive number, got {margin!r}")
    if (why := _no_verdict(values, replicate)) is not None:
        return why
    ci = t_interval(values, 1 - 2 * ALPHA_SAME)
    if -margin < ci.low and ci.high < margin:
        return "reproduced"
    if ci.low >= margin or ci.high <= -margin:
        return f"not reproduced (a difference beyond ±{margin:g})"
    if ci.half_width >= margin:
        return f"not shown (the interval, ±{ci.half_width:.2f}, cannot fit in ±{margin:g} with these {replicate}s)"
    return f"not shown (the interval reaches beyond ±{margin:g})"


def verdict(claim: str, values: list[float], margin: float | None = None, replicate: str = "seed",
            paper: float | None = None, log_scale: bool = False) -> str:
    """The rule for `claim` on per-replicate effects (differences, or log ratios); `paper`
    (on the same scale) adds the size check of directional claims."""
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, got {claim!r}")
    if claim == "same":
        if margin is None:
            raise ValueError("a 'same' claim needs its equivalence margin")
        return equivalence_verdict(values, margin, replicate)
    return directional_verdict(claim, values, replicate, paper, log_scale)


def converged_verdict(rule: str, converged: str, epochs: str = "") -> str:
    """The rule's verdict for a finding over trained models: unchanged when both arms reached
    their plateau ('yes'); otherwise labelled not converged and never 'reproduced'."""
    if converged not in CONVERGED:
        raise ValueError(f"converged must be one of {CONVERGED}, got {converged!r}")
    if converged in ("yes", "n/a"):
        return rule
    label = f"not converged at {epochs} epochs" if epochs else "not converged (no plateau recorded)"
    passed = "otherwise as the paper's (direction, and size where it gives one)"
    return f"{label}: " + (passed if rule == "reproduced" else rule)


def only_one_trains_verdict(trained: list[str], untried: list[str], only: str, batch: int) -> str:
    """F5's memory half (only `only` trains at the largest side, the others out of memory):
    'reproduced' when `only` alone trained and every other model was tried; 'no verdict' when
    one was not tried (too slow, skipped) and nothing else decides; else not reproduced at this
    batch (the models that trained are the row's own column)."""
    if trained == [only] and not untried:
        return "reproduced"
    if trained and trained != [only]:
        return f"not reproduced at batch {batch} on this machine"
    return "no verdict: a model was not measured"


def p_value(values: list[float]) -> float:
    """Two-sided p of the one-sample t test of mean 0 (nan with fewer than 2 finite values)."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return float("nan")
    ci = t_interval(values, LEVEL)
    if ci.sd == 0:
        return 0.0 if ci.mean != 0 else 1.0
    t = abs(ci.mean) / (ci.sd / math.sqrt(len(values)))
    return 2 * (1 - t_cdf(t, len(values) - 1))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p values (nan stays nan and is not counted)."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if math.isfinite(p))
    adjusted, running = [float("nan")] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[i] = running
    return adjusted


def power(claim: str, true_effect: float, sd: float, n: int, margin: float | None = None,
          draws: int = POWER_DRAWS, seed: int = 0, paper: float | None = None, log_scale: bool = False) -> float:
    """How often `verdict` says 'reproduced' for n normal replicates of mean true_effect and
    standard deviation sd (simulated, `draws` times, with a fixed seed)."""
    if n < 2 or not (math.isfinite(sd) and sd >= 0) or not math.isfinite(true_effect):
        return float("nan")

    def says(values: list[float]) -> bool:
        return verdict(claim, values, margin, paper=paper, log_scale=log_scale) == "reproduced"

    if sd == 0:
        return 1.0 if says([true_effect + 1e-12 * i for i in range(n)]) else 0.0
    rng = random.Random(seed)
    return sum(says([rng.gauss(true_effect, sd) for _ in range(n)]) for _ in range(draws)) / draws


# ---- findings ----

@dataclass(frozen=True)
class Finding:
    finding: str
    claim: str
    kind: str                # 'effect' or 'interaction'
    paper_key: str
    paper: float | None      # the paper's effect (a ratio where scale == 'ratio'); None: not in the paper
    metric: str
    scale: str               # 'difference' or 'ratio'
    replicate: str           # 'seed' or 'repeat'
    seeds: int               # replicates (seeds or repeats)
    baseline: float          # mean over replicates
    treatment: float
    effect: float            # mean difference, or the geometric-mean ratio
    effect_sd: float         # replicate-to-replicate sd of the difference (of the log ratio); nan for 1
    low: float               # the interval the rule used (95%; 90% for 'same'), on the effect's scale
    high: float
    margin: float | None     # 'same' claims only
    verdict: str
    power: float             # the rule's chance of 'reproduced' at the paper's effect and our sd
    notebooks: tuple[str, ...] = ()
    converged: str = ""      # 'yes': every row's arms reached their plateau; 'no'; '': not recorded
    epochs: str = ""         # the rows' training lengths, as recorded
    p: float = float("nan")  # two-sided p of the per-replicate effects (directional claims)
    test_size: int | None = None   # test examples behind each top-1, where the rows record it
    alone: str = ""          # the rule's verdict on this row alone, before the multiplicity adjustment
    holm_p: float = float("nan")   # Holm-adjusted p across the table's directional rows (`adjust`)

    @property
    def reproduced(self) -> bool:
        return self.verdict == "reproduced"

    @property
    def size_ratio(self) -> float | None:
        """Our effect over the paper's (for ratios: our speed-up over the paper's)."""
        if self.paper is None or self.paper == 0 or self.claim == "same":
            return None
        return self.effect / self.paper

    @property
    def size_flag(self) -> str:
        r = self.size_ratio
        if r is None or math.isnan(r) or SIZE_RANGE[0] <= r <= SIZE_RANGE[1]:
            return ""
        return f"{r:.2g}x the paper's"


def append_comparison(path: str | Path, *, finding: str, claim: str, paper_key: str, metric: str,
                      seed: int, baseline: float, treatment: float, kind: str = "effect",
                      margin: float | None = None, replicate: str = "seed", converged: str = "",
                      epochs: str = "", test_size: int | None = None) -> None:
    """Add one paired row (one seed or repeat) to a comparisons CSV, writing the header if new."""
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, got {claim!r}")
    if kind not in KINDS or replicate not in REPLICATES:
        raise ValueError(f"kind must be one of {KINDS} and replicate one of {REPLICATES}, got {kind!r}, {replicate!r}")
    if converged not in CONVERGED:
        raise ValueError(f"converged must be one of {CONVERGED}, got {converged!r}")
    if claim == "same" and margin is None:
        margin = MARGINS.get(metric)
        if margin is None:
            raise ValueError(f"a 'same' claim in {metric!r} needs a margin (MARGINS has {sorted(MARGINS)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COMPARISON_FIELDS + tuple(OPTIONAL_FIELDS))
        writer.writerow([finding, claim, paper_key, metric, seed, repr(float(baseline)), repr(float(treatment)),
                         kind, "" if margin is None else repr(float(margin)), replicate, converged, epochs,
                         "" if test_size is None else int(test_size)])


def read_comparisons(path: str | Path) -> list[dict]:
    """The rows of a comparisons CSV (text, as written); optional columns a file lacks take
    their defaults. The file is checked against its folder's SHA256SUMS and for its shape
    (`results.check_comparisons`: each finding and seed once, finite sides in range, top-1s that
    are the folder's runs'); a violation is a ResultsError naming the file and the row."""
    return read_comparisons_csv(path, COMPARISON_FIELDS).to_dict("records")


def _one(group: pd.DataFrame, field: str, name: str) -> str:
    values = group[field].unique()
    if len(values) != 1:
        raise ValueError(f"finding {name!r} has several values of {field}: {sorted(values)}")
    return values[0]


def finding(name: str, group: list[dict] | pd.DataFrame, reference: dict[str, Reference],
            notebooks: tuple[str, ...] = ()) -> Finding:
    """One finding from its paired rows (one per replicate)."""
    group = pd.DataFrame(group)
    claim, kind, key, metric, replicate = (_one(group, f, name) for f in
                                           ("claim", "kind", "paper_key", "metric", "replicate"))
    ref = reference.get(key) if key else None
    if key and ref is None:
        raise ValueError(f"finding {name!r}: paper key {key!r} is not in paper_reference.csv")
    scale = "ratio" if ref is not None and ref.unit == "ratio" else "difference"
    base, treat = group["baseline"].astype(float), group["treatment"].astype(float)
    if scale == "ratio":
        if min(base.min(), treat.min()) <= 0:
            raise ValueError(f"finding {name!r}: a ratio needs positive values")
        effects = (treat / base).map(math.log)
    else:
        effects = treat - base
    values = effects.tolist()
    margin = None
    if claim == "same":
        text = _one(group, "margin", name)                   # the margin the rows state, else MARGINS'
        margin = float(text) if text else MARGINS.get(metric)
        if margin is None:
            raise ValueError(f"finding {name!r}: a 'same' claim in {metric!r} states no margin")
    paper = None if ref is None else ref.value
    true = None if paper is None else (math.log(paper) if scale == "ratio" else paper)
    rule = verdict(claim, values, margin, replicate, paper=true, log_scale=scale == "ratio")
    if claim != "same" and not key and rule == "reproduced":      # our own control: no paper claim to reproduce
        rule = "direction shown (not in the paper)"
    converged = _converged(group, name)
    epochs = ", ".join(e for e in dict.fromkeys(group["epochs"]) if e)
    sizes = {int(v) for v in group["test_size"] if v}
    finite = all(math.isfinite(v) for v in values) and len(values) > 1
    ci = t_interval(values, 1 - 2 * ALPHA_SAME if claim == "same" else LEVEL) if finite else None
    sd = ci.sd if ci else float("nan")
    pw = float("nan") if true is None or ci is None else power(claim, true, sd, len(values), margin, paper=true,
                                                                log_scale=scale == "ratio")
    back = math.exp if scale == "ratio" else (lambda v: v)
    mean = effects.mean() if all(math.isfinite(v) for v in values) else float("nan")
    return Finding(finding=name, claim=claim, kind=kind, paper_key=key, paper=paper, metric=metric,
                   scale=scale, replicate=replicate, seeds=len(group), baseline=base.mean(),
                   treatment=treat.mean(), effect=back(mean), effect_sd=sd,
                   low=back(ci.low) if ci else float("nan"), high=back(ci.high) if ci else float("nan"),
                   margin=margin, verdict=judge(rule, replicate, converged, epochs), power=pw, notebooks=notebooks,
                   converged=converged, epochs=epochs, p=p_value(values) if claim != "same" else float("nan"),
                   test_size=sizes.pop() if len(sizes) == 1 else None, alone=rule)


def judge(rule: str, replicate: str, converged: str, epochs: str) -> str:
    """A row's verdict from its rule's: over seeds (trained models) labelled by convergence;
    repeats (timings) as the rule said."""
    return converged_verdict(rule, converged, epochs) if replicate == "seed" else rule


SIGNIFICANT = ("reproduced", "direction shown (not in the paper)", "direction reproduced")


def adjust(found: list[Finding]) -> list[Finding]:
    """The findings of one table with their verdicts adjusted for multiplicity: Holm across its
    directional rows; a row significant in the paper's direction alone but not after Holm's
    adjustment at HOLM_ALPHA loses that claim (see the module docstring)."""
    adjusted = holm([f.p if f.claim != "same" else float("nan") for f in found])
    out = []
    for f, a in zip(found, adjusted):
        rule = f.alone
        if math.isfinite(a) and a > HOLM_ALPHA and rule.startswith(SIGNIFICANT):
            rule = f"same direction, significant alone, not after Holm's adjustment (p {a:.2g} > {HOLM_ALPHA:g})"
        out.append(dataclasses.replace(f, holm_p=a, verdict=judge(rule, f.replicate, f.converged, f.epochs)))
    return out


def _converged(group: pd.DataFrame, name: str) -> str:
    """'yes' when every row says both arms converged, 'no' when any says not, else ''."""
    values = set(group["converged"])
    if not values <= set(CONVERGED):
        raise ValueError(f"finding {name!r}: converged must be one of {CONVERGED}, got {sorted(values)}")
    if values == {"n/a"}:
        return "n/a"
    return "no" if "no" in values else "yes" if values == {"yes"} else ""


def findings(rows: list[dict], reference: dict[str, Reference] | None = None,
             notebooks: tuple[str, ...] = ()) -> list[Finding]:
    """Group paired rows by finding and compute each verdict."""
    reference = paper_reference() if reference is None else reference
    if not rows:
        return []
    return adjust([finding(name, group, reference, notebooks)
                   for name, group in pd.DataFrame(rows).groupby("finding", sort=False)])


def _fmt(x: float | None, digits: int = 2, sign: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def describe_paper(f: Finding) -> str:
    """The paper's effect, and what the claim is where the number alone does not say it."""
    if not f.paper_key:
        return "not in the paper"
    if f.paper is None:
        return "claimed, no number"
    text = f"{f.paper:.1f}x" if f.scale == "ratio" else _fmt(f.paper, 1)
    if f.claim == "same":
        return f"{text} (no effect: within ±{f.margin:g})"
    return text + (" (interaction)" if f.kind == "interaction" else "")


def describe_ours(f: Finding) -> str:
    """'-1.90 [-3.78, -0.02]' (95% interval; 90% for 'same'), or a ratio '8.17x [6.86, 9.74]'."""
    ratio = f.scale == "ratio"
    mean = f"{f.effect:.2f}x" if ratio else _fmt(f.effect)
    if f.seeds < 2 or math.isnan(f.low):
        return mean
    low, high = (_fmt(f.low, sign=not ratio), _fmt(f.high, sign=not ratio))
    return f"{mean} [{low}, {high}]"


def regime(f: Finding, baselines: dict[str, float] | None = None) -> str:
    """'converged (N epochs)' / 'not converged ...', and the reference baselines' top-1 beside it."""
    if f.replicate != "seed":
        return "timings (no plateau needed)"
    if f.converged == "n/a":
        return "one recipe computed two ways (no plateau needed)"
    text = ("converged" if f.converged == "yes" else "not converged" if f.converged == "no"
            else "not shown converged (no plateau recorded)") + (f" at {f.epochs} epochs" if f.epochs else "")
    if baselines:
        text += "; baselines " + ", ".join(f"{name} {value:.1f}" for name, value in baselines.items())
    return text


def test_noise(f: Finding, test_size: int | None) -> str:
    """The binomial standard error of one top-1 on `test_size` test examples, at the arms' mean
    accuracy: noise each seed's number carries that seed-to-seed intervals need not show."""
    if f.metric != "top-1 %" or f.kind != "effect":           # an interaction's rows are effects, not top-1s
        return ""
    if not test_size:
        return "n/a (test-set size not recorded)"
    return f"±{binomial_se((f.baseline + f.treatment) / 200, test_size):.1f} ({test_size:,} test)"


def holm_column(found: list[Finding]) -> list[str]:
    """Each directional row's Holm-adjusted p across the table's directional rows (`adjust`)."""
    return ["" if math.isnan(f.holm_p) else f"{f.holm_p:.2g} ({'<' if f.holm_p <= HOLM_ALPHA else '>'} "
            f"{HOLM_ALPHA:g})" for f in adjust(found)]


def early_training_line(found: list[Finding]) -> str:
    """A bold lead for a table of these findings when any row over seeds rests on arms not shown
    at their validation plateau ('' when every such row did): the headline must not read as
    what the paper claims about trained models."""
    trained = [f for f in found if f.replicate == "seed" and f.converged != "n/a"]
    early = [f for f in trained if f.converged != "yes"]
    if not early:
        return ""
    return (f"**Early training:** {len(early)} of the {len(trained)} rows over seeds rest on arms not shown at "
            "their validation plateau (*regime*); their verdicts describe models early in training, not the "
            "trained models the paper's claims are about.")


def multiplicity_line(found: list[Finding]) -> str:
    """How many directional rows would say 'reproduced' (or its direction) by chance alone if
    every true effect were 0, and how many survive Holm's adjustment."""
    rows = [f for f in found if f.claim != "same" and math.isfinite(f.p)]
    if not rows:
        return ""
    one_sided = (1 - LEVEL) / 2
    held = sum(a <= HOLM_ALPHA for a in holm([f.p for f in rows]))
    return (f"Multiplicity: {len(rows)} directional rows. Were every true effect 0, each would be called "
            f"significant in the paper's direction {100 * one_sided:g}% of the time: about "
            f"{len(rows) * one_sided:.2f} such rows expected by chance, and a "
            f"{100 * (1 - (1 - one_sided) ** len(rows)):.0f}% chance of at least one. Holm's adjustment "
            f"at {100 * HOLM_ALPHA:g}% across them (column *Holm p*) keeps {held} of {len(rows)} significant, and only "
            f"those may read *reproduced*.")


def markdown_table(found: list[Finding], links: dict[str, str] | None = None,
                   baselines: dict[str, dict[str, float]] | None = None,
                   test_sizes: dict[str, int] | None = None) -> str:
    """Paper | ours (with its interval) | size against the paper's | power | verdict, one row each;
    with `baselines` / `test_sizes` (by notebook), the regime, test noise and Holm p columns too."""
    links = links or {}

    def size(f: Finding) -> str:
        return "" if f.size_ratio is None else f"{f.size_ratio:.2g}" + (
            f" (outside {SIZE_RANGE[0]:g}-{SIZE_RANGE[1]:g}x)" if f.size_flag else "")

    table = pd.DataFrame({
        "finding": [f.finding for f in found],
        "paper": [describe_paper(f) for f in found],
        "ours [interval]": [describe_ours(f) for f in found],
        "unit": [f.metric for f in found],
        "ours / paper": [size(f) for f in found],
        "n": [f"{f.seeds} {f.replicate}{'s' if f.seeds != 1 else ''}" for f in found],
        "power at the paper's effect": ["n/a" if math.isnan(f.power) else f"{100 * f.power:.0f}%" for f in found],
        "verdict": [f.verdict for f in found],
        "notebooks": [", ".join(f"[{nb[:2]}]({links[nb]})" if nb in links else nb[:2] for nb in f.notebooks)
                      for f in found]})
    if baselines is not None or test_sizes is not None:
        def first(table: dict, f: Finding):
            return next((table[nb] for nb in f.notebooks if table.get(nb)), None)

        table.insert(5, "test-set SE of a top-1",
                     [test_noise(f, f.test_size or first(test_sizes or {}, f)) for f in found])
        table.insert(len(table.columns) - 1, "regime", [regime(f, first(baselines or {}, f)) for f in found])
    if any(f.claim != "same" and math.isfinite(f.p) for f in found):      # the adjustment the verdicts carry
        table.insert(list(table.columns).index("n") + 1, "Holm p", holm_column(found))
    if not any(f.notebooks for f in found):
        table = table.drop(columns="notebooks")
    return markdown(table)


def previous_verdict(f: Finding) -> str | None:
    """What the rule before this one said (reproduced when |mean| > 2 sd in the paper's
    direction, or |mean| <= 2 sd for 'same'), for differences over 2 or more seeds."""
    if f.scale != "difference" or f.seeds < 2 or math.isnan(f.effect_sd):
        return None
    within = abs(f.effect) <= 2 * f.effect_sd
    if f.claim == "same":
        ok = within
    else:
        ok = (f.effect > 0 if f.claim == "higher" else f.effect < 0) and not within
    return "reproduced" if ok else "not reproduced at this scale"


def why(f: Finding) -> str:
    """Why the rule said what it said, in numbers."""
    if f.verdict.startswith("no verdict"):
        return ""
    if f.claim == "same":
        return (f"the 90% interval [{f.low:+.2f}, {f.high:+.2f}] must lie inside ±{f.margin:g} "
                f"{f.metric}")
    zero = "1" if f.scale == "ratio" else "0"
    ci = describe_ours(f)
    return f"95% interval {ci.split(' ', 1)[1] if ' ' in ci else ci}; it must exclude {zero} in the paper's direction"


def verdict_sentence(f: Finding) -> str:
    """One computed sentence per finding: paper, ours with its interval, the verdict and why;
    and, where it differs, what the earlier rule (mean against 2 sd) would have said."""
    paper = ("not in the paper" if f.paper is None else
             f"paper {f.paper:.1f}x" if f.scale == "ratio" else f"paper {f.paper:+.1f}")
    n = f"{f.seeds} {f.replicate}{'s' if f.seeds != 1 else ''}"
    text = f"{f.finding}: {paper}, ours {describe_ours(f).split(' ')[0]} {f.metric} over {n} -> {f.verdict}"
    reason = why(f)
    if reason:
        text += f" ({reason})"
    if f.size_flag:
        text += f"; our effect is {f.size_flag}, outside {SIZE_RANGE[0]:g}-{SIZE_RANGE[1]:g}x"
    before = previous_verdict(f)
    if before is not None and (before == "reproduced") != f.reproduced:
        text += (f". The earlier rule (|mean| against 2 sd = {2 * f.effect_sd:.2f}) said '{before}'; "
                 + ("it ignored how few seeds there are, which the t interval accounts for"
                    if before == "reproduced" and f.claim != "same" else
                    "it passed any mean within 2 sd, so noisier seeds made 'no effect' easier to pass"
                    if f.claim == "same" else "the t interval now decides"))
    return text


def compare_scores(name_a: str, a: float, name_b: str, b: float, noise_a: float, noise_b: float,
                   what: str = "structure", k: float = 3.0) -> str:
    """A computed sentence comparing two scores that reads a difference only when it exceeds k
    times its noise (sqrt(noise_a² + noise_b²), e.g. chance sds); otherwise it says so."""
    noise = math.hypot(noise_a, noise_b)
    diff = a - b
    if not math.isfinite(diff) or not math.isfinite(noise):
        return f"{name_a} vs {name_b}: {what} cannot be compared ({a:+.3f} vs {b:+.3f})."
    if abs(diff) <= k * noise:
        return (f"{name_a} and {name_b} hold about the same {what} ({a:+.3f} vs {b:+.3f}: the difference, "
                f"{diff:+.3f}, is within {k:g} x its noise of {noise:.3f}).")
    return (f"{name_a} holds {'more' if diff > 0 else 'less'} {what} than {name_b} ({a:+.3f} vs {b:+.3f}; "
            f"the difference is {abs(diff) / noise:.0f} x its noise of {noise:.3f}).")


def merge_notebooks(per_notebook: dict[str, list[dict]], reference: dict[str, Reference],
                    stale: tuple[str, ...] = ()) -> list[Finding]:
    """One finding per name across notebooks: a finding several notebooks record (the same
    runs, e.g. F1 in 01 and 03) is one row naming them all; differing rows are an error, but
    for a notebook in `stale` (one a reproduce in parts has yet to rerun: its rows are an
    earlier run's), whose differing copy is left out of the row of the rerun ones."""
    frames = [pd.DataFrame(rows).assign(notebook=notebook) for notebook, rows in per_notebook.items() if rows]
    if not frames:
        return []
    found = []
    for name, group in pd.concat(frames, ignore_index=True).groupby("finding", sort=False):
        shown_in = list(dict.fromkeys(group["notebook"]))
        lead = next((n for n in shown_in if n not in stale), shown_in[0])
        first = group[group["notebook"] == lead].drop(columns="notebook")
        kept = []
        for notebook in shown_in:
            if _pairs(group[group["notebook"] == notebook]) == _pairs(first):
                kept.append(notebook)
            elif notebook not in stale:
                raise ValueError(f"finding {name!r} differs between notebooks {kept or [lead]} and {notebook}")
        found.append(finding(name, first, reference, tuple(kept)))
    return adjust(found)


def _pairs(group: pd.DataFrame) -> list[tuple]:
    return sorted(zip(group["claim"], group["paper_key"], group["seed"], group["baseline"].astype(float),
                      group["treatment"].astype(float)))
