"""Findings: the paper's numbers, ours, and a verdict computed from the runs' CSVs.

A notebook records each comparison a verdict rests on as paired rows in
`results/<notebook>/<profile>/comparisons.csv`, one per seed:

    finding, claim, paper_key, metric, seed, baseline, treatment

`claim` is the paper's direction for treatment - baseline: 'higher', 'lower', or 'same'
(no effect). The verdict rule, the same everywhere:

- 'higher' / 'lower': reproduced when the mean difference has the paper's sign and is larger
  than twice the seed-to-seed standard deviation of the difference;
- 'same': reproduced when the mean difference is within twice that standard deviation;
- fewer than 2 seeds: no verdict.

`SUMMARY.md` is regenerated from these CSVs alone.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE_CSV = REPO / "results" / "paper_reference.csv"
COMPARISON_FIELDS = ("finding", "claim", "paper_key", "metric", "seed", "baseline", "treatment")
CLAIMS = ("higher", "lower", "same")


@dataclass(frozen=True)
class Reference:
    key: str
    value: float | None      # None where the paper reports out of memory
    unit: str
    table: str
    description: str


def paper_reference(path: str | Path = REFERENCE_CSV) -> dict[str, Reference]:
    """The paper's numbers, keyed like 'effect.F1_mae_vs_classification_positions'."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["key"]: Reference(r["key"], float(r["value"]) if r["value"] else None, r["unit"],
                                r["table"], r["description"]) for r in rows}


@dataclass(frozen=True)
class Finding:
    finding: str
    claim: str
    paper_key: str
    paper: float | None
    metric: str
    seeds: int
    baseline: float          # mean over seeds
    treatment: float
    effect: float            # mean of treatment - baseline
    effect_sd: float         # seed-to-seed standard deviation of the difference (nan for 1 seed)
    verdict: str             # 'reproduced', 'not reproduced at this scale', or 'no verdict (...)'

    @property
    def reproduced(self) -> bool:
        return self.verdict == "reproduced"


def verdict(claim: str, differences: list[float]) -> str:
    """The rule in the module docstring, on per-seed differences treatment - baseline."""
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, got {claim!r}")
    if any(not math.isfinite(d) for d in differences):
        return "no verdict (a run produced a non-finite value)"
    if len(differences) < 2:
        return f"no verdict ({len(differences)} seed; needs 2 or more)"
    mean, sd = statistics.fmean(differences), statistics.stdev(differences)
    if claim == "same":
        ok = abs(mean) <= 2 * sd
    else:
        ok = (mean > 0 if claim == "higher" else mean < 0) and abs(mean) > 2 * sd
    return "reproduced" if ok else "not reproduced at this scale"


def append_comparison(path: str | Path, *, finding: str, claim: str, paper_key: str, metric: str,
                      seed: int, baseline: float, treatment: float) -> None:
    """Add one paired row (one seed) to a comparisons CSV, writing the header if new."""
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, got {claim!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COMPARISON_FIELDS)
        writer.writerow([finding, claim, paper_key, metric, seed, repr(float(baseline)), repr(float(treatment))])


def read_comparisons(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(COMPARISON_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        return list(reader)


def findings(rows: list[dict], reference: dict[str, Reference] | None = None) -> list[Finding]:
    """Group paired rows by finding and compute each verdict."""
    reference = paper_reference() if reference is None else reference
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["finding"], []).append(row)
    out = []
    for name, group in grouped.items():
        claims = {r["claim"] for r in group}
        if len(claims) != 1:
            raise ValueError(f"finding {name!r} has several claims: {sorted(claims)}")
        base = [float(r["baseline"]) for r in group]
        treat = [float(r["treatment"]) for r in group]
        diffs = [t - b for b, t in zip(base, treat)]
        key = group[0]["paper_key"]
        ref = reference.get(key)
        out.append(Finding(
            finding=name, claim=group[0]["claim"], paper_key=key,
            paper=None if ref is None else ref.value, metric=group[0]["metric"], seeds=len(group),
            baseline=statistics.fmean(base), treatment=statistics.fmean(treat),
            effect=statistics.fmean(diffs),
            effect_sd=statistics.stdev(diffs) if len(diffs) > 1 else float("nan"),
            verdict=verdict(group[0]["claim"], diffs)))
    return out


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}f}"


def markdown_table(found: list[Finding]) -> str:
    """The 'paper | ours | reproduced?' table."""
    lines = ["| finding | metric | paper | ours (mean ± sd over seeds) | seeds | reproduced? |",
             "|---|---|---|---|---|---|"]
    for f in found:
        ours = f"{_fmt(f.effect)} ± {abs(f.effect_sd):.2f}" if f.seeds > 1 else _fmt(f.effect)
        lines.append(f"| {f.finding} | {f.metric} | {_fmt(f.paper, 1)} | {ours} | {f.seeds} | {f.verdict} |")
    return "\n".join(lines)


def write_summary(results_dir: str | Path, profile: str = "quick",
                  executed_dir: str | Path | None = None) -> Path:
    """Regenerate `<results_dir>/SUMMARY.md` from every `<notebook>/<profile>/comparisons.csv`."""
    results_dir = Path(results_dir)
    executed_dir = Path(executed_dir) if executed_dir else results_dir / "executed"
    reference = paper_reference(results_dir / "paper_reference.csv") \
        if (results_dir / "paper_reference.csv").exists() else paper_reference()
    parts = ["# Summary of findings", "",
             f"Generated from `results/*/{profile}/comparisons.csv` by `python -m hipcore summary`; "
             "do not edit by hand. Effects are treatment minus baseline, in the metric's units; "
             "the paper's are from `paper_reference.csv`.", ""]
    sources = sorted(results_dir.glob(f"*/{profile}/comparisons.csv"))
    if not sources:
        parts.append(f"No comparisons found for profile '{profile}' yet.")
    for path in sources:
        notebook = path.parent.parent.name
        link = executed_dir / f"{notebook}.ipynb"
        rel = link.relative_to(results_dir) if link.is_relative_to(results_dir) else link
        parts += [f"## {notebook}", "", f"Executed notebook: [{rel}]({rel})", "",
                  markdown_table(findings(read_comparisons(path), reference)), ""]
    out = results_dir / "SUMMARY.md"
    out.write_text("\n".join(parts) + "\n")
    return out
