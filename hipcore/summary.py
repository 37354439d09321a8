"""Results writing: SUMMARY.md and the README's generated blocks, from the committed results
alone (comparisons.csv, metrics.csv, provenance.json, notebook 06's grids, the full-profile
benchmark), never typed.

    write_summary(results_dir, profile)    results/SUMMARY.md (SUMMARY_<profile>.md for others)
    update_readme(readme, results_dir)     refill the README's blocks (readme_blocks: results, plateau,
                                           times, budget, binder, machine, verdicts, recipe, flops, speed)

The verdict rules are `hipcore.report`'s; where a result came from is `hipcore.provenance`'s.
This module sits on the top floor: it reads every notebook's results, so nothing below it
imports it.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from . import converge, experiments, provenance
from .bench.epochs import epochs_text
from .bench.speed_text import large_images_text, speed_block
from .digests import SUMS, verify
from .digests import check as check_digest
from .experiments import common, efficiency, imagenet_comparison, mae_positions, scaling
from .experiments.baselines import read_baselines
from .experiments.scaling import scale_sentences
from .files import write_text_atomic
from .report import (
    SIZE_RANGE,
    Finding,
    describe_ours,
    describe_paper,
    early_training_line,
    markdown_table,
    merge_notebooks,
    multiplicity_line,
    only_one_trains_verdict,
    paper_reference,
    read_comparisons,
    regime,
)
from .results import markdown, notebook_summary, read_csv, read_runs_file
from .stats import binomial_se
from .train.validation import validation_indices
from .vocabulary import vocabulary_block

# ---- SUMMARY.md, one file per profile ----

COVERS = {
    "seed": "Seeds vary the initialisation, the batch order, MAE's masks and, where a profile trains "
            "on a subset of the training set, which subset (each seed draws its own). The image test set "
            "is the same for every seed; a built-in point-cloud set (parts3d, shapes3d) draws its training "
            "clouds from the seed and its test clouds once for every seed. Each top-1 also carries "
            "the test set's own sampling noise (its binomial standard error, in the table). The intervals "
            "cover that variation, not a change of data set, "
            "model size or schedule.",
    "repeat": "Repeats are timed steps of models that take turns in one process on one machine "
              "(interleaved); their interval covers step-to-step timing noise, not another machine.",
}


def summary_path(results_dir: str | Path, profile: str) -> Path:
    """results/SUMMARY.md for 'quick' (what make reproduce commits), SUMMARY_<profile>.md otherwise."""
    return Path(results_dir) / ("SUMMARY.md" if profile == "quick" else f"SUMMARY_{profile}.md")


def executed_path(results_dir: str | Path, profile: str) -> Path:
    """Where `reproduce --profile X` puts executed notebooks: results/executed/<profile>/."""
    return Path(results_dir) / "executed" / profile


def executed_record(results_dir: str | Path, profile: str) -> dict[str, Any]:
    """The record `reproduce` keeps with the executed notebooks (`provenance.reproduce_record`:
    each notebook's seconds, the parts, the notebooks still missing), checked as `_provenance`
    checks a results folder's; {} where none ran."""
    return _provenance(executed_path(results_dir, profile))


def notebook_modules() -> list:
    """Each numbered notebook's module: every hipcore.experiments module that names its
    NOTEBOOK, in the notebooks' order."""
    found = [importlib.import_module(f"{experiments.__name__}.{info.name}")
             for info in pkgutil.iter_modules(experiments.__path__)]
    return sorted((m for m in found if hasattr(m, "NOTEBOOK")), key=lambda m: m.NOTEBOOK)


def notebook_files(results_dir: str | Path, profile: str, name: str = "") -> list[Path]:
    """<results_dir>/<notebook>/<profile>/<name> of each notebook where it exists, in order."""
    paths = (Path(results_dir) / module.NOTEBOOK / profile / name for module in notebook_modules())
    return [path for path in paths if path.exists()]


def _reference(results_dir: Path) -> dict:
    """The paper's numbers: the results folder's paper_reference.csv, else the checkout's."""
    path = results_dir / "paper_reference.csv"
    return paper_reference(path) if path.exists() else paper_reference()


def profile_findings(results_dir: str | Path, profile: str) -> tuple[dict[str, list[dict]], list[Finding]]:
    """({notebook: its comparison rows}, the findings they make) of `<notebook>/<profile>/`,
    each folder first checked whole (`check_folder`): a notebook whose comparisons are missing
    is refused, never left out of the table."""
    results_dir = Path(results_dir)
    reference = _reference(results_dir)
    for folder in notebook_files(results_dir, profile):
        check_folder(folder)
    sources = {p.parent.parent.name: read_comparisons(p)
               for p in notebook_files(results_dir, profile, "comparisons.csv")}
    return sources, merge_notebooks(sources, reference, stale=still_to_rerun(results_dir, profile))


def still_to_rerun(results_dir: str | Path, profile: str) -> tuple[str, ...]:
    """The notebooks a reproduce in parts has yet to rerun (its record's 'missing'): their
    results are an earlier run's."""
    return tuple(executed_record(results_dir, profile).get("missing") or ())


def check_folder(folder: Path) -> None:
    """A notebook's results folder as its run left it: every file its SHA256SUMS signs there and
    unchanged (`digests.verify`, where it is signed), and a comparisons.csv wherever its
    summary.json records findings. ValueError naming the file otherwise."""
    if (folder / SUMS).is_file():
        verify(folder)
    findings = notebook_summary(folder).get("findings")
    if findings and not (folder / "comparisons.csv").is_file():
        raise ValueError(f"{folder / 'comparisons.csv'} is missing, while summary.json records "
                         f"{len(findings)} findings from it: rerun the notebook, or restore the file")


def profile_baselines(results_dir: str | Path, profile: str) -> dict[str, dict[str, float]]:
    """{notebook: {baseline model: mean test top-1 over seeds (a dense baseline's: mIoU)}} from each
    `<notebook>/<profile>/baselines.csv` that exists (read, checked, by `baselines.read_baselines`:
    a NaN or a repeated row is refused, never averaged over)."""
    out = {}
    for path in notebook_files(results_dir, profile, "baselines.csv"):
        rows = pd.DataFrame(read_baselines(path))
        score = "test_miou" if "test_miou" in rows else "test_accuracy"
        out[path.parent.parent.name] = rows[score].groupby(rows["model"], sort=False).mean().to_dict()
    return out


def profile_test_sizes(results_dir: str | Path, profile: str) -> dict[str, int]:
    """{notebook: test examples} from each `<notebook>/<profile>/summary.json`: its 'test_size'
    where recorded, else its settings' limit_test (a cap that the image test sets exceed), else
    the one test-set size its baselines.csv records (the references score the arms' test set:
    results written before the summary recorded it)."""
    out = {}
    for path in notebook_files(results_dir, profile, "summary.json"):
        record = json.loads(path.read_text())
        size = (record.get("test_size") or record.get("settings", {}).get("limit_test")
                or baselines_test_size(path.parent))
        if isinstance(size, int) and size > 0:
            out[path.parent.parent.name] = size
    return out


def baselines_test_size(folder: Path) -> int | None:
    """The test-set size every row of folder/baselines.csv records; None without the file or
    with rows that disagree."""
    if not (folder / "baselines.csv").is_file():
        return None
    sizes = {row["test_size"] for row in read_baselines(folder / "baselines.csv")}
    return sizes.pop() if len(sizes) == 1 else None


GLANCE_FIGURE = Path(scaling.NOTEBOOK) / "full" / "scaling.png"


def _as_run(results_dir: Path, profile: str) -> str:
    """', as run at commit abc1234: N MAE + M epochs on K images', from notebook 01's record."""
    folder = results_dir / imagenet_comparison.NOTEBOOK / profile
    try:
        settings = json.loads((folder / "summary.json").read_text())["settings"]
        commit = json.loads((folder / "provenance.json").read_text()).get("commit") or "unknown"
    except (OSError, KeyError, ValueError):
        return ""
    return (f", as run at commit {commit[:7]}: {settings['pretrain_epochs']} MAE + {settings['epochs']} epochs "
            f"on {_training_images(settings)}")


def _training_images(settings: dict) -> str:
    """'5,400 training images (600 of the 6,000 held out for validation)' from a notebook's settings."""
    limit, fraction = settings.get("limit_train"), settings.get("val_fraction") or 0
    if limit is None:
        return "the whole training set" + (f" less {fraction:.0%} held out for validation" if fraction else "")
    if not fraction:
        return f"{limit:,} training images"
    train, held = validation_indices(limit, fraction, 0)
    return f"{len(train):,} training images ({len(held):,} of the {limit:,} held out for validation)"


def readme_results(results_dir: str | Path, profile: str = "quick") -> str:
    """The README's results at a glance: each finding's paper effect, ours with its interval and
    the verdict (from the profile's comparisons), the scale F1 needs, and one figure."""
    results_dir = Path(results_dir)
    _, found = profile_findings(results_dir, profile)
    if not found:
        return f"No `{profile}` results yet: `make reproduce` writes them."
    table = pd.DataFrame({"finding": [f.finding for f in found], "paper": [describe_paper(f) for f in found],
                          "ours [interval]": [describe_ours(f) for f in found],
                          "unit": [f.metric for f in found],
                          "ours / paper": ["" if f.size_ratio is None else f"{f.size_ratio:.2g}" for f in found],
                          "regime": [regime(f) for f in found], "verdict": [f.verdict for f in found]})
    where = f"{results_dir.name}/{summary_path(results_dir, profile).name}"
    as_run = _as_run(results_dir, profile)
    early = early_training_line(found)
    parts = ([early, ""] if early else []) + [
        f"Every finding at the `{profile}` profile (Fashion-MNIST, a small HiP, a few epochs{as_run}; "
        f"rules, power and provenance in [{where}]({where})):", "", markdown(table), ""]
    scale = scale_section(results_dir, profile)
    parts += scale[2:]                                      # without its heading
    if (results_dir / GLANCE_FIGURE).exists():
        figure = (Path(results_dir.name) / GLANCE_FIGURE).as_posix()
        parts.append(f"![F1 against MAE length and compute, and the structure of the MAE-learned "
                     f"positions]({figure})")
    return "\n".join(parts).rstrip()


def write_summary(results_dir: str | Path, profile: str = "quick", out: str | Path | None = None) -> Path:
    """Regenerate the profile's summary (`summary_path`) from `<notebook>/<profile>/comparisons.csv`.

    Writes nothing else: other profiles' files are never touched."""
    results_dir = Path(results_dir)
    sources, found = profile_findings(results_dir, profile)
    executed = executed_path(results_dir, profile)
    links = {nb: (executed / f"{nb}.ipynb").relative_to(results_dir).as_posix() for nb in sources}
    parts = [f"# Summary of findings ({profile} profile)", "",
             f"Generated from `results/*/{profile}/comparisons.csv` by `python -m hipcore summary "
             f"--profile {profile}`; do not edit by hand. One row per finding, naming the notebooks "
             "that show it (linked to their executed copies). Effects are treatment minus baseline in "
             "the metric's units (a ratio where the paper gives one); the paper's are from "
             "`paper_reference.csv`. The rules are in `hipcore/report.py`:", "",
             "- directional claims: the mean per-seed effect with its 95% t interval; *reproduced* "
             "when it has the paper's sign, the interval excludes 0 and the size is compatible with the "
             "paper's (the interval contains the paper's value, or *ours / paper* is within "
             f"{SIZE_RANGE[0]:g}-{SIZE_RANGE[1]:g}x, a band fixed in advance); significant in the paper's "
             "direction but neither is *direction reproduced, size Rx the paper's*;",
             "- multiplicity: a directional row is *reproduced* only if it stays significant after Holm's "
             "adjustment across the table's directional rows (column *Holm p*); otherwise it is *same "
             "direction, significant alone, not after Holm's adjustment*;",
             "- convergence: a row over seeds whose arms are not both recorded as having reached their "
             "plateau is *not converged* and never *reproduced*; a row that records nothing counts as not "
             "shown converged (*regime* says which, with the reference baselines' top-1 where a notebook "
             "records them);",
             "- test noise: *test-set SE of a top-1* is the binomial standard error of one accuracy on the "
             "test set's size (from the notebook's recorded settings), noise the seed interval does not "
             "separate out;",
             "- no-effect claims: two one-sided tests, the 90% interval inside a margin fixed in "
             "advance (`MARGINS`); *not shown* when it is not, however near 0 the mean is;",
             "- power: how often the same rule, with as many seeds and our seed-to-seed spread, "
             "would say *reproduced* if the true effect were the paper's.", ""]
    parts += ["## Converged evidence", "", converge.status_block(results_dir), "",
              f"## The `{profile}` profile", ""] if profile != converge.PROFILE else []
    if not found:
        parts.append(f"No comparisons found for profile '{profile}' yet.")
    else:
        early = early_training_line(found)
        parts += [early, ""] if early else []
        parts += [markdown_table(found, links, profile_baselines(results_dir, profile),
                                 profile_test_sizes(results_dir, profile)), ""]
        line = multiplicity_line(found)
        parts += [line, ""] if line else []
        parts += [COVERS[r] for r in dict.fromkeys(f.replicate for f in found)]
        parts.append("")
    memory = memory_finding(results_dir)
    if memory:
        parts += [memory, ""]
    parts += scale_section(results_dir, profile)
    parts += summary_lines(results_dir, profile)
    out = Path(out) if out else summary_path(results_dir, profile)
    write_text_atomic(out, "\n".join(parts).rstrip() + "\n")      # whole or not at all, a full disk too
    return out


# ---- at what scale F1 appears: notebook 06's grid ----

def scale_section(results_dir: str | Path, profile: str) -> list[str]:
    """Lines on notebook 06's grids: its effects.csv at `profile` and at full, each that exists,
    naming the folder and the machine that made it; none when no grid has run."""
    folders = [Path(results_dir) / scaling.NOTEBOOK / source for source in dict.fromkeys((profile, "full"))]
    folders = [folder for folder in folders if (folder / "effects.csv").exists()]
    if not folders:
        return []
    lines = ["## At what scale F1 appears", ""]
    for folder in folders:
        lines += [f"From `{folder.relative_to(results_dir).as_posix()}/effects.csv` (notebook 06's grid"
                  f"{_made_on(folder)}; paired per-seed effects, 95% t intervals):", ""]
        lines += [f"- {line}" for line in scale_sentences(pd.read_csv(check_digest(folder / "effects.csv")))] + [""]
    return lines


def _provenance(folder: Path) -> dict[str, Any]:
    """A results folder's provenance.json ({} without one), verified against the folder's
    SHA256SUMS; ValueError naming it when it is no record, or its machine or packages are no
    tables."""
    if (folder / "provenance.json").is_file():
        check_digest(folder / "provenance.json")         # the record its folder's SHA256SUMS signs
    record = provenance.read(folder) or {}
    wrong = [key for key in ("machine", "packages") if not isinstance(record.get(key, {}), dict)]
    if wrong:
        raise ValueError(f"{folder / 'provenance.json'}: not a provenance record ({wrong[0]} is not a table)")
    return record


def _made_on(folder: Path) -> str:
    """' on <GPU or CPU>' from a results folder's provenance.json ('' without one)."""
    m = _provenance(folder).get("machine", {})
    return f" on {m.get('gpu') or m.get('cpu')}" if m else ""


# ---- F5's memory half, from the full-profile benchmark ----

MEMORY_SOURCE = Path(efficiency.NOTEBOOK) / "full" / "metrics.csv"
MEMORY_MODELS = {"hip16": "HiP-16", "hip256": "HiP-256", "perceiver_io": "Perceiver IO",
                 "hip16_fourier": "HiP-16 Fourier"}


def memory_finding(results_dir: str | Path, side: int = 2048) -> str:
    """F5's second half (only HiP-256 trains at 2048 x 2048) as its own row, from the
    full-profile benchmark (results/05_efficiency/full/metrics.csv); '' when it has not run."""
    path = Path(results_dir) / MEMORY_SOURCE
    if not path.exists():
        return ""
    rows = read_csv(path, ("model", "side", "batch", "status", "peak_memory_gb"))
    rows = rows[(rows["side"] == str(side)) & rows["model"].isin(list(MEMORY_MODELS))]
    if rows.empty:
        return ""
    name = rows["model"].map(MEMORY_MODELS)
    ok = rows["status"] == "ok"
    ours = [f"{n}: trains, {float(r.peak_memory_gb):.1f} GiB" if r.status == "ok" else f"{n}: {r.status}"
            for n, r in zip(name, rows.itertuples(index=False))]
    trained = sorted(name[ok])
    untried = list(name[~rows["status"].isin(["ok", "OOM"])])
    batch = rows["batch"].iloc[0]
    rule = only_one_trains_verdict(trained, untried, "HiP-256", batch)
    table = pd.DataFrame([{"finding": f"F5 only HiP-256 trains at {side} x {side}",
                           "paper (TPUv3, batch 8)": "only HiP-256 (the others out of memory)",
                           f"ours (CPU, batch {batch})": "; ".join(ours), "verdict": rule}])
    return "\n".join([
        f"F5's memory half, from the **full** profile (`{MEMORY_SOURCE.as_posix()}`; not a quick-profile run):", "",
        markdown(table)])


# ---- provenance and times, as SUMMARY.md and the README say them ----

README_START, README_END = "<!-- times: generated by python -m hipcore summary -->", "<!-- end of times -->"


def notebook_times(results_dir: str | Path, profile: str) -> dict[str, float]:
    """{notebook: wall seconds} as `reproduce` measured them, else as each notebook recorded."""
    return {**own_times(results_dir, profile), **reproduce_times(results_dir, profile)}


def reproduce_times(results_dir: str | Path, profile: str) -> dict[str, float]:
    """{notebook: wall seconds} of the recorded `reproduce` run (results/executed/<profile>)."""
    return dict(executed_record(results_dir, profile).get("notebook_seconds", {}))


def own_times(results_dir: str | Path, profile: str, timed: dict[str, float] | None = None) -> dict[str, float]:
    """{notebook: wall seconds} of the notebooks that `reproduce` did not time (`timed`, read
    when not given), as each one's own run recorded them (run on its own since, perhaps on
    another machine)."""
    timed = reproduce_times(results_dir, profile) if timed is None else timed
    return {nb: record["wall_seconds"] for nb, record in _own_records(results_dir, profile, timed).items()}


def _own_records(results_dir: str | Path, profile: str, timed: dict[str, float]) -> dict[str, dict]:
    """{notebook: its provenance record} of the notebooks not in `timed` that recorded a wall time."""
    records = {}
    for folder in notebook_files(results_dir, profile):
        own = provenance.read(folder)
        if own and folder.parent.name not in timed and own.get("wall_seconds") is not None:
            records[folder.parent.name] = own
    return records


def _own_runs_sentence(results_dir: str | Path, profile: str, timed: dict[str, float]) -> str:
    """' Run on its own since, not part of that run: 07 30 min (commit 1b0f512, AMD EPYC, 2 cores).'"""
    own = _own_records(results_dir, profile, timed)
    if not own:
        return ""
    each = []
    for nb, record in sorted(own.items()):
        m = record.get("machine", {})
        where = [f"commit {record['commit'][:7]}" if record.get("commit") else "", str(m.get("cpu") or ""),
                 f"{m['cores']} cores" if m.get("cores") else ""]
        where = ", ".join(w for w in where if w)
        each.append(f"{nb[:2]} {_duration(record['wall_seconds'])}" + (f" ({where})" if where else ""))
    return f" Run on {'its' if len(own) == 1 else 'their'} own since, not part of that run: {'; '.join(each)}."


def training_times(results_dir: str | Path, profile: str) -> dict[str, float]:
    """{notebook: seconds} its runs recorded training (metric total_seconds of metrics.csv):
    what the notebook alone costs on an empty run cache, whether this invocation trained its
    runs or reused them (a run two notebooks share counts in both)."""
    times = {}
    for path in notebook_files(results_dir, profile, "metrics.csv"):
        metrics = pd.read_csv(check_digest(path))
        if "metric" in metrics and (metrics["metric"] == "total_seconds").any():
            times[path.parent.parent.name] = float(metrics.loc[metrics["metric"] == "total_seconds", "value"].sum())
    return times


def _training_clause(results_dir: str | Path, profile: str) -> str:
    training = training_times(results_dir, profile)
    if not training:
        return ""
    return ("; training time its runs recorded, per notebook as if run alone on an empty cache: "
            + ", ".join(f"{nb[:2]} {_duration(s)}" for nb, s in sorted(training.items())))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def summary_lines(results_dir: str | Path, profile: str) -> list[str]:
    """Provenance lines for SUMMARY.md: commit, machine and the measured times of the run."""
    results_dir = Path(results_dir)
    run = executed_record(results_dir, profile)
    notebooks = notebook_files(results_dir, profile)
    records = [r for r in (_provenance(f) for f in notebooks) if r]
    source = run or (records[0] if records else None)
    if source is None:
        return ["No provenance recorded for this profile (results from before provenance was recorded)."]
    commits = sorted({f"{r['commit']}{' (dirty)' if r.get('dirty') else ''}"
                      + (f" (unverified: {r['unverified']})" if r.get("verified") is False else "")
                      for r in [source, *records] if r.get("commit")})
    m = {key: "not recorded" for key in ("cpu", "cores", "torch_threads", "precision")} | source.get("machine", {})
    lines = ["## Provenance", "",
             f"- code: commit {', '.join(commits) or 'unknown'}; training-code fingerprint "
             f"{', '.join(sorted({str(r.get('code_fingerprint', 'not recorded')) for r in [source, *records]}))}",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, {m['precision']}; "
             + ", ".join(f"{k} {v}" for k, v in source.get("packages", {}).items())]
    times = notebook_times(results_dir, profile)
    if times:
        lines.append("- wall time per notebook (measured by the run): "
                     + ", ".join(f"{nb[:2]} {_duration(s)}" for nb, s in sorted(times.items()))
                     + f"; {_duration(sum(times.values()))} in all" + _training_clause(results_dir, profile))
    lines.append("- on one machine the same commit regenerates these numbers to the digit; on another CPU "
                 "model the digits may differ, and the intervals are what to compare.")
    return lines


def _machine_words(m: Mapping[str, Any]) -> str:
    """'AMD EPYC (2 cores, 2 threads)' of a recorded machine; '' where none is recorded."""
    return f"{m['cpu']} ({m['cores']} cores, {m['torch_threads']} threads)" if m else ""


def _where(run: Mapping[str, Any]) -> str:
    """' on <machine>' of a reproduce record; for one run in parts on several machines, each
    part's notebooks and machine ('in 2 parts: 00, 02 on ...; 01, 03 on ...')."""
    parts = [p for p in run.get("parts") or [] if p.get("notebooks")]
    machines = ([_machine_words(p.get("machine") or run.get("machine") or {}) for p in parts]
                or [_machine_words(run.get("machine") or {})])
    split = f" in {len(parts)} parts (`reproduce --resume`)" if len(parts) > 1 else ""
    if len(set(machines)) == 1:
        return (f" on {machines[0]}" if machines[0] else "") + split
    return split + ": " + "; ".join(f"{_span(p['notebooks'])} on {m}" for p, m in zip(parts, machines))


def _span(notebooks: list[str]) -> str:
    """'00, 02, 05' of the notebooks a part ran."""
    return ", ".join(nb[:2] for nb in notebooks)


def readme_times(results_dir: str | Path, profile: str = "quick") -> str:
    """The README's paragraph on how long `make reproduce` took, from the recorded times."""
    timed = reproduce_times(results_dir, profile)
    times = timed or notebook_times(results_dir, profile)
    if not times:
        return f"No `{profile}` run has recorded its times yet."
    run = executed_record(results_dir, profile) or _provenance(Path(results_dir) / next(iter(times)) / profile)
    where = _where(run)
    each = ", ".join(f"{nb[:2]} {_duration(s)}" for nb, s in sorted(times.items()))
    tail = " Across CPU models the digits of the results may differ; compare the intervals."
    if run.get("missing"):
        cache = ("from an empty run cache at each part's start" if run.get("cached_runs_at_start") == 0 else
                 "not from an empty run cache, so not a fresh clone's times")
        return (f"`make reproduce` (every notebook at `{profile}`) is running in parts (`python -m hipcore "
                f"reproduce --resume`){where}: done so far, {cache}: {each}. Still to run: "
                f"{', '.join(run['missing'])}; until then their results are an earlier run's (SUMMARY.md's "
                f"provenance names its commit).{tail}")
    since = _own_runs_sentence(results_dir, profile, timed) if timed else ""
    if run.get("cached_runs_at_start") == 0:
        return (f"`make reproduce` (every notebook at `{profile}`) from an empty run cache took "
                f"{_duration(sum(times.values()))}{where}: {each}.{since}{tail}")
    found = run.get("cached_runs_at_start")
    return (f"The recorded `make reproduce` (every notebook at `{profile}`{where}) found "
            f"{'its runs' if found is None else f'{found} finished runs'} in the run cache, so its "
            f"{_duration(sum(times.values()))} of notebook time ({each}) is not what a fresh clone takes"
            + _training_clause(results_dir, profile).replace("; training time", ". The training time")
            + " (a run two notebooks share counts in both; the cache trains it once)." + since + tail)


def budget_rows(results_dir: str | Path, profile: str) -> list[dict[str, Any]]:
    """Per notebook and arm: seeds, mean seconds a seed's run recorded (MAE pretraining and
    training), and their sum: the measured budget of `profile` (metric total_seconds)."""
    rows = []
    for path in notebook_files(results_dir, profile, "metrics.csv"):
        metrics = pd.read_csv(check_digest(path))
        if "metric" not in metrics:
            continue
        times = metrics[metrics["metric"] == "total_seconds"]
        for arm, group in times.groupby("run_id", sort=False):
            rows.append({"notebook": path.parent.parent.name, "arm": arm, "seeds": len(group),
                         "seconds_per_seed": float(group["value"].mean()), "seconds": float(group["value"].sum())})
    return rows


def readme_budget(results_dir: str | Path, profile: str = "quick") -> str:
    """The README's budget table: minutes per notebook and arm, as the runs recorded them."""
    rows = budget_rows(results_dir, profile)
    if not rows:
        return f"No `{profile}` run has recorded its budget yet."
    lines = ["| notebook | arm | seeds | min per seed | min in all |", "|---|---|---|---|---|"]
    lines += [f"| {r['notebook'][:2]} | {r['arm']} | {r['seeds']} | {r['seconds_per_seed'] / 60:.1f} | "
              f"{r['seconds'] / 60:.1f} |" for r in rows]
    return "\n".join(lines) + ("\n\nRecorded training time of each run (a run several notebooks share is "
                               "listed under each; the cache trains it once).")


PLATEAU_CHECK = "plateau_check"          # python -m hipcore plateau-budget --out plateau_check/<profile>/<arm>/...
PLATEAU_NOTEBOOK = imagenet_comparison.NOTEBOOK   # whose reference baselines train on the same images
EARLIER_RULE = "--patience"             # plateau-budget's option under the plateau rule before the trend test


def readme_plateau(results_dir: str | Path, profile: str = "quick") -> str:
    """Each image arm trained to its validation plateau on the profile's data (the plateau-budget
    records under `plateau_check/<profile>/`): epochs to the plateau or the cap, best validation and
    the test top-1 there, beside the reference baselines of the same seed, training images and test set."""
    from .experiments.plateau_budget import RECIPE_FIELDS

    results_dir = Path(results_dir)
    paths = sorted((results_dir / PLATEAU_CHECK / profile).glob("*/plateau.csv"))
    if not paths:
        return (f"No `{profile}` plateau check yet: `python -m hipcore plateau-budget --arm ... --profile {profile} "
                f"--out results/{PLATEAU_CHECK}/{profile}/<arm>/plateau.csv`.")
    rows, made, seeds, tests, seconds, earlier = [], [], set(), {}, 0.0, []
    for path in paths:
        frame = read_csv(path, RECIPE_FIELDS)
        record = _provenance(path.parent)
        if EARLIER_RULE in str(record.get("command", "")):
            earlier.append(path.parent.name)
        seed = re.search(r"--seed (\d+)", str(record.get("command", "")))
        seeds.add(int(seed.group(1)) if seed else None)
        made.append((path.parent.name, record))
        try:
            rows += [{"arm": r.arm, "stage": r.stage.split(" (")[0],
                      "epochs (cap)": f"{int(r.epochs_run)} ({int(r.cap)})",
                      "plateau": "yes" if r.converged == "True" else "no: the cap stopped it",
                      "best validation": f"{float(r.best_val):.4g}",
                      "test there": f"{float(r.test):.4g}", "s per epoch": f"{float(r.seconds_per_epoch):.0f}"}
                     for r in frame.itertuples()]
        except ValueError:
            raise ValueError(f"{path}: epochs, validation, test and seconds must be numbers") from None
        tests.update({r.arm: float(r.test) for r in frame.itertuples() if r.stage.startswith("classification")})
        seconds += sum(float(r.epochs_run) * float(r.seconds_per_epoch) for r in frame.itertuples())
    (seed,) = seeds if len(seeds) == 1 else (None,)
    parts = [f"Each image arm trained to its validation plateau on `{profile}`'s data (one seed; the "
             "classification stage's validation and test are top-1 %, MAE pretraining's its validation and "
             f"test loss), measured on {made_by_groups(made)}:", "", markdown(pd.DataFrame(rows)), "",
             f"One seed of these {len(paths)} arms trained for {seconds / 60:.0f} min in all (each stage's epochs "
             "times its seconds per epoch, summed).", ""]
    if earlier:
        parts += [f"The runs of {', '.join(earlier)} stopped by the earlier plateau rule (`{EARLIER_RULE}`: the "
                  "last quarter's gain on 600 validation images), which stops 99% of curves still rising by 0.2 "
                  "points per epoch before a 40-epoch cap (`hipcore.train.plateau`): their *yes* is not a plateau "
                  "by today's rule. "
                  f"`python -m hipcore plateau-budget --arm <arm> --profile {profile} --seed 0 --out "
                  f"results/{PLATEAU_CHECK}/{profile}/<arm>/plateau.csv` remakes them.", ""]
    parts += _plateau_baselines(results_dir, profile, seed, tests)
    return "\n".join(parts).rstrip()


def _plateau_baselines(results_dir: Path, profile: str, seed: int | None, tests: dict[str, float]) -> list[str]:
    """The plateau block's last lines: the same seed's reference baselines and the findings
    between the arms at their plateau, beside the test set's binomial standard error."""
    baselines = results_dir / PLATEAU_NOTEBOOK / profile / "baselines.csv"
    if seed is None or not baselines.is_file():
        return []
    frame = pd.DataFrame(read_baselines(baselines))           # checked: no NaN, no repeated row
    same = frame[frame["seed"] == seed]
    if not len(same):
        return []
    size = int(same.test_size.iloc[0])
    if same.tuned.all():
        parts = [f"Reference baselines on the same {int(same.train_size.iloc[0]):,} training and {size:,} test "
                 f"images (seed {seed}, notebook {PLATEAU_NOTEBOOK[:2]}): "
                 + ", ".join(f"{m} {float(a):.1f}" for m, a in zip(same.model, same.test_accuracy)) + "."]
        parts += ["", "Where each arm's test top-1 at its plateau stands among them:", ""]
        parts += [f"- {band}: {'; '.join(arms) if arms else 'none'}"
                  for band, arms in plateau_standing(tests, dict(zip(same.model, same.test_accuracy)))]
    else:                                                     # baselines.OLD_COLUMNS: a fixed L2 and epochs
        parts = [f"No standing among reference baselines: notebook {PLATEAU_NOTEBOOK[:2]}'s committed "
                 f"{baselines.name} is from before the baselines were tuned on validation (no val_accuracy "
                 "column), and an untuned baseline flatters the arms; `make reproduce` rewrites it."]
    effects = plateau_effects(tests, _reference(results_dir))
    noise = binomial_se(sum(tests.values()) / len(tests) / 100, size)
    if effects:
        parts += ["", f"The findings between these arms at their plateau (test top-1 points, one seed, no "
                      f"interval: each top-1 on {size:,} test images has a binomial standard error of about "
                      f"{noise:.1f} points): " + "; ".join(effects) + "."]
    return parts


def plateau_standing(tests: dict[str, float], baselines: dict[str, float]) -> list[tuple[str, list[str]]]:
    """[(band, arms in it)] from the lowest band to the highest: the baselines' test top-1 in
    increasing order cut the line into 'below <lowest>', 'between <a> and <b>', ..., 'above
    <highest>'; each arm ({arm: test top-1}) falls in one. A band no arm reaches is left out,
    but for the highest, which always appears (so 'above <the best baseline>: none' is said)."""
    ranked = sorted(baselines.items(), key=lambda item: float(item[1]))
    if not ranked:
        return []
    names = [name for name, _ in ranked]
    bands = ([f"below {names[0]}"] + [f"between {a} and {b}" for a, b in zip(names, names[1:])]
             + [f"above {names[-1]}"])
    members: list[list[str]] = [[] for _ in bands]
    for arm, top1 in sorted(tests.items(), key=lambda item: item[1]):
        members[sum(top1 > float(level) for _, level in ranked)].append(arm)
    return [(band, arms) for i, (band, arms) in enumerate(zip(bands, members)) if arms or i == len(bands) - 1]


def plateau_effects(tests: dict[str, float], reference: dict) -> list[str]:
    """'<finding> <ours> (paper <value>)' for each image finding with a paper value whose two arms
    both have a classification test top-1 in `tests` ({arm: top-1 at its plateau})."""
    from .experiments import imagenet_comparison, mae_positions

    out = {}
    for name, _, key, baseline, treatment in (*imagenet_comparison.FINDINGS, *mae_positions.FINDINGS):
        if key in reference and {baseline, treatment} <= set(tests) and name not in out:
            out[name] = f"{name} {tests[treatment] - tests[baseline]:+.1f} (paper {reference[key].value:+.1f})"
    return list(out.values())


BINDER_RECORD = Path("binder_check") / "memory.csv"      # written by python -m hipcore.binder --record


def readme_binder(results_dir: str | Path) -> str:
    """Each notebook's peak memory at the binder profile against Binder's limit, from the record
    `python -m hipcore.binder --record` wrote, with the commit and machine that measured it."""
    path = Path(results_dir) / BINDER_RECORD
    if not path.is_file():
        return f"No Binder memory record yet: `python -m hipcore.binder --record results/{BINDER_RECORD.parent}`."
    frame = read_csv(path, ("notebook", "peak_bytes", "limit_bytes"))
    try:
        peaks = {row.notebook[:2]: int(row.peak_bytes) for row in frame.itertuples()}
        limit = int(frame.limit_bytes.iloc[0])
    except (ValueError, IndexError):
        raise ValueError(f"{path}: peak_bytes and limit_bytes must be whole numbers, one row per notebook") from None
    made = _made_by(_provenance(path.parent))
    over = [name for name, peak in peaks.items() if peak >= limit]
    verdict = (f"over the limit: {', '.join(over)}" if over else f"every one under {limit / 1e9:g} GB")
    return (f"`python -m hipcore.binder --record` (each notebook at the `binder` profile, a fresh run cache, its "
            f"peak memory summed over the processes alive together, in GB of 10^9 bytes; measured on {made}): "
            + ", ".join(f"{name} {peak / 1e9:.2f} GB" for name, peak in peaks.items()) + f"; {verdict}.")


def _made_by(record: dict[str, Any]) -> str:
    """'<CPU> (low-precision flags: ...), N cores, torch X, bf16, commit abc1234' from a provenance
    record ({}: no record)."""
    if not record:
        return "an unrecorded machine and commit"
    return f"{_setup_of(record)}, commit {str(record.get('commit') or 'unrecorded')[:7]}"


def _setup_of(record: dict[str, Any]) -> str:
    """'<CPU> (low-precision flags: ...), N cores, torch X, bf16' from a provenance record."""
    machine, packages = record.get("machine") or {}, record.get("packages") or {}
    flags = machine.get("cpu_flags")
    where = (f"{machine['gpu']} (GPU)" if machine.get("gpu") else
             f"{machine.get('cpu', 'an unrecorded CPU')} (low-precision flags: "
             f"{', '.join(flags) if flags else 'none' if flags == [] else 'not recorded'}), "
             f"{machine.get('cores', '?')} cores")
    return f"{where}, torch {packages.get('torch', '?')}, {machine.get('precision') or 'fp32'}"


def made_by_groups(named: list[tuple[str, dict[str, Any]]], label: str = "") -> str:
    """'<machine>, commit abc1234 (<label>a, b); ...': the named provenance records grouped by
    machine and by the code that ran (the result fingerprint, else the commit). Results that
    were committed one after another carry one commit each for the same code: such a group
    names its commits once, as 'the same code at commits abc1234, def5678'."""
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for name, record in named:
        key = (_setup_of(record), str(record.get("result_fingerprint") or record.get("commit"))) if record else ("", "")
        groups.setdefault(key, []).append((name, record))
    said = []
    for (on, _), members in groups.items():
        names = f"({label}{', '.join(name for name, _ in members)})"
        if not on:
            said.append(f"an unrecorded machine and commit {names}")
            continue
        commits = list(dict.fromkeys(str(r.get("commit") or "unrecorded")[:7] for _, r in members))
        which = f"commit {commits[0]}" if len(commits) == 1 else f"the same code at commits {', '.join(commits)}"
        said.append(f"{on}, {which} {names}")
    return "; ".join(said)


def readme_machine(results_dir: str | Path, profile: str = "quick") -> str:
    """Where the profile's results were made, from each notebook's provenance.json: the CPU (or
    GPU), cores, torch and the precision it trained in, and which notebooks each machine made."""
    named = [(path.parent.parent.name[:2], _provenance(path.parent))
             for path in notebook_files(results_dir, profile, "provenance.json")]
    if not named:
        return f"No `{profile}` results record their machine yet."
    return f"The `{profile}` results were made on: {made_by_groups(named, 'notebooks ')}."


def readme_blocks(results_dir: str | Path, profile: str) -> dict[str, Callable[[], str]]:
    """{block name: what fills it}: the README's generated blocks."""
    return {"converged": lambda: converge.status_block(Path(results_dir)),
            "machine": lambda: readme_machine(results_dir, profile),
            "times": lambda: readme_times(results_dir, profile),
            "budget": lambda: readme_budget(results_dir, profile),
            "binder": lambda: readme_binder(results_dir),
            "plateau": lambda: readme_plateau(results_dir, profile),
            "results": lambda: readme_results(results_dir, profile),
            "verdicts": vocabulary_block,
            "recipe": lambda: readme_recipe(results_dir, profile),
            "flops": lambda: readme_flops(results_dir, profile),
            "speed": lambda: readme_speed(results_dir, profile)}


SPEED_NOTEBOOK = efficiency.NOTEBOOK


def readme_speed(results_dir: str | Path, profile: str = "quick") -> str:
    """The README's training-speed section, from notebook 05's benchmark at `profile`."""
    folder = Path(results_dir) / SPEED_NOTEBOOK / profile
    large = Path(results_dir) / SPEED_NOTEBOOK / "full"
    per_cpu = sorted((Path(results_dir) / SPEED_NOTEBOOK / "epochs").glob("*/epochs.csv"))
    parts = [speed_block(folder, _made_by(_provenance(folder)))]
    if large != folder and (large / "metrics.csv").is_file():
        parts.append(large_images_text(large, _made_by(_provenance(large))))
    return "\n\n".join(parts + [epochs_text(p.parent, _made_by(_provenance(p.parent))) for p in per_cpu])


def block_marks(name: str) -> tuple[str, str]:
    return f"<!-- {name}: generated by python -m hipcore summary -->", f"<!-- end of {name} -->"


def update_readme(readme: str | Path, results_dir: str | Path, profile: str = "quick") -> str:
    """Refill each generated block the README holds (`readme_blocks`, between `block_marks`):
    'updated' when that changed the file, 'unchanged' when the blocks already said it, ''
    when there is no such file or no block."""
    readme = Path(readme)
    text = readme.read_text() if readme.is_file() else ""
    found = False
    for name, fill in readme_blocks(results_dir, profile).items():
        start, end = block_marks(name)
        if start not in text or end not in text:
            continue
        found = True
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{fill()}\n{end}{tail}"
    if not found:
        return ""
    if text == readme.read_text():
        return "unchanged"
    write_text_atomic(readme, text)
    return "updated"


RECIPE_CHECK = Path("recipe_check")      # python -m hipcore plateau-budget --lr ... --out recipe_check/<profile>/


def readme_recipe(results_dir: str | Path, profile: str = "quick") -> str:
    """The recipe check (`recipe_check/<profile>/recipe.csv`): per arm, the span of its best
    validation top-1 over the learning rates and warm-ups tried, and how far the profile's own
    recipe (notebook 01's settings) is from that arm's best, beside the validation set's noise."""
    from .experiments.plateau_budget import RECIPE_FIELDS

    folder = Path(results_dir) / RECIPE_CHECK / profile
    if not (folder / "recipe.csv").is_file():
        return f"No `{profile}` recipe check yet."
    frame = read_csv(folder / "recipe.csv", RECIPE_FIELDS)
    frame = frame.astype({"lr": float, "warmup_epochs": float, "best_val": float, "epochs_run": int, "cap": int})
    settings = json.loads((Path(results_dir) / PLATEAU_NOTEBOOK / profile / "summary.json").read_text())["settings"]
    lr, warmup = float(settings["lr"]), float(settings["warmup_epochs"])
    train, held = validation_indices(int(settings["limit_train"]), float(settings["val_fraction"]), 0)
    spans, gaps = [], []
    for arm, rows in frame.groupby("arm", sort=False):
        ours = rows[(rows.lr == lr) & (rows.warmup_epochs == warmup)].best_val
        spans.append(f"{arm} {rows.best_val.min():.1f}-{rows.best_val.max():.1f}")
        gaps.append(f"{rows.best_val.max() - ours.max():.1f}" if len(ours) else "not tried")
    noise = binomial_se(frame.best_val.mean() / 100, len(held))
    plateau = ("no arm reached its plateau" if not (frame.converged == "True").any()
               else f"{(frame.converged == 'True').sum()} of {len(frame)} settings reached their plateau")
    return (f"On {profile}'s {len(train):,} training images (seed 0, a {frame.cap.max()}-epoch cap, "
            f"`results/{RECIPE_CHECK.as_posix()}/{profile}/`, measured on {_made_by(_provenance(folder))}), the best "
            f"validation top-1 over lr {', '.join(f'{v:g}' for v in sorted(set(frame.lr)))} and warm-up "
            f"{', '.join(f'{v:g}' for v in sorted(set(frame.warmup_epochs)))} epochs spans: {'; '.join(spans)}. The "
            f"profiles' recipe (lr {lr:g}, warm-up {warmup:g}) is {' and '.join(gaps)} points below each arm's best, "
            f"against the noise of {len(held):,} validation images (a binomial standard error of about {noise:.1f} "
            f"points); {plateau} in {frame.cap.max()} epochs.")


FLOP_NOTEBOOK = mae_positions.NOTEBOOK     # whose summary.json records the control's FLOP budget


def readme_flops(results_dir: str | Path, profile: str = "quick") -> str:
    """How closely notebook 03's compute-matched control matches the MAE arm in training FLOPs,
    as its runs recorded them (runs.json: each run's steps taken times torch's flop counter on
    one step of each kind)."""
    where = f"{FLOP_NOTEBOOK}/{profile}/{provenance.RUNS}"
    path = Path(results_dir) / where
    if not path.is_file():
        return f"No `{profile}` runs of notebook {FLOP_NOTEBOOK[:2]} yet."
    try:
        pairs = common.flop_pairs(read_runs_file(path), where)
    except ValueError as error:
        return (f"The `{profile}` runs of notebook {FLOP_NOTEBOOK[:2]} predate the FLOPs each run now records, "
                f"so their compute-matched control's match cannot be shown until the profile is rerun ({error}).")
    if not pairs:
        return f"The `{profile}` runs of notebook {FLOP_NOTEBOOK[:2]} hold no FLOP-matched control."
    ratios = [p["ratio"] for p in pairs]
    first = pairs[0]
    return (f"The compute-matched control of notebook {FLOP_NOTEBOOK[:2]} is matched in training FLOPs, not "
            f"epochs, and has no paper number. As its runs recorded them (`{where}`: the steps each stage "
            f"took times torch's flop counter on one step of each kind), {first['control']!r} trained "
            f"{first['control_flops'] / 1e12:.2f} TFLOP against {first['arm_flops'] / 1e12:.2f} TFLOP of "
            f"{first['arm']!r} at seed {first['seed']}; control / arm over {len(pairs)} seed(s): "
            f"{min(ratios):.4f} to {max(ratios):.4f} (allowed: 1 +/- {common.FLOP_TOLERANCE:g}).")


def cmd_summary(args) -> int:
    """Writes results/SUMMARY.md for --profile quick (and the README's times),
    results/SUMMARY_<profile>.md for any other profile, or --out."""
    if not Path(args.results_dir).is_dir():
        raise ValueError(f"--results-dir {args.results_dir} is not a folder")
    print(f"wrote {write_summary(args.results_dir, args.profile, args.out)}")
    if args.profile == "quick" and args.out is None and args.readme:
        status = update_readme(args.readme, args.results_dir, args.profile)
        if status:
            print(f"{args.readme}: its generated blocks {status}")
    return 0


def add_commands(sub) -> None:
    """`summary` on an argparse subparsers object."""
    from .notebook import PROFILES

    summary = sub.add_parser("summary", help="regenerate a profile's summary from its comparisons CSVs",
                             description=cmd_summary.__doc__)
    summary.add_argument("--results-dir", default="results", help="the results folder (default results)")
    summary.add_argument("--profile", default="quick", choices=PROFILES, help="whose results (default quick)")
    summary.add_argument("--out", default=None, help="write the summary here instead")
    summary.add_argument("--readme", default="README.md",
                         help="README whose generated times block to refresh (quick profile only; '' for none)")
    summary.set_defaults(func=cmd_summary)
