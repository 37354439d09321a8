"""Every notebook's results as one long pandas DataFrame, and markdown tables from DataFrames.

    import hipcore.results
    df = hipcore.results.load(profile="quick")     # one row per KEY; each run once, `run` its id

`load` reads `results/<notebook>/<profile>/` for every notebook:

- metrics.csv: long rows (run_id = the arm, seed, metric, value) as `notebook.write_metrics`
  writes them; notebook 05's benchmark writes a wide one (one row per model and side, the
  columns of `bench.suite.COLUMNS`), made long here (arm = the model, `side` and `batch` as
  columns, seed empty);
- loops.csv (05): training examples/s of the notebooks' loops per precision;
- comparisons.csv: the paired rows a verdict rests on repeat those measurements, so they are
  not among `load`'s rows (each measurement once): `load_comparisons` returns them, with
  `finding` and `role` ('baseline' or 'treatment');
- arms.csv: each arm's settings (`experiments.common.write_arms`), joined on the arm's label:
  ordering, position, mae, transfer, mask_ratio, steps, variant;
- provenance.json: commit and machine of the folder's run, and the precision it trained in
  (empty, NaN, in folders written before provenance was recorded);
- runs.json: each (arm, seed)'s run directory, whose name is the row's `run`. A run that
  several notebooks show (the run cache trained it once) is one run: `load` keeps its rows
  once, under the first notebook's name, with every notebook that shows it in `notebooks`.

One unit per metric (`UNITS`): accuracies and fractions are percentages everywhere, and the
`unit` column says so. A malformed file stops the load with an error naming it. Every file read is first checked against
its folder's SHA256SUMS (`hipcore.digests`), and then, whatever its digest, for its shape
(`check_rows`): each key once, finite numbers within their range, arms the folder's arms.csv
knows, seeds its run declared (provenance.json), and each side of a top-1 comparison one of the
folder's runs (runs.json). A violation is one line naming the file, the row and the problem.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .digests import SUMS
from .digests import check as check_digest
from .errors import HipcoreError
from .files import read_json
from .provenance import RUNS

COLUMNS = ("notebook", "arm", "seed", "metric", "value", "unit",
           "ordering", "position", "mae", "transfer", "mask_ratio", "steps", "variant", "side", "batch",
           "precision", "commit", "machine", "run", "notebooks")
# What makes one of `load`'s rows unique: the arm's measurement, and for notebook 05's benchmark
# the image side, batch and precision it was timed at.
KEY = ("notebook", "arm", "seed", "metric", "side", "batch", "precision")
COMPARISON_COLUMNS = ("notebook", "finding", "role", "seed", "metric", "value", "unit", "precision", "commit",
                      "machine")
# Whole numbers that may be missing are nullable integers, mae a nullable boolean, text object.
DTYPES = {**{c: object for c in COLUMNS + COMPARISON_COLUMNS}, "seed": "Int64", "value": float, "mask_ratio": float,
          "steps": "Int64", "side": "Int64", "batch": "Int64", "mae": "boolean"}
ARM_SETTINGS = ("ordering", "position", "mae", "transfer", "mask_ratio", "steps", "variant")
LONG_FIELDS = ("run_id", "seed", "metric", "value")

# The unit of every metric a results folder holds; a metric not named here (nor matched by
# `unit_of`'s rules) stops the load rather than appear without a unit.
UNITS = {
    "test_accuracy": "%", "test_loss": "nats",
    # notebook 07's segmentations (mean IoU over classes, background included; pixel accuracy)
    "test_miou": "%", "test_pixel_accuracy": "%", "pretrain_test_loss": "MSE (normalised pixels)",
    "train_examples_per_s": "examples/s", "examples_per_s": "examples/s",
    "total_seconds": "s", "train_seconds": "s", "pretrain_seconds": "s", "forward_seconds": "s",
    "parameters": "count", "classifier_parameters": "count",
    # notebook 05's benchmark
    "steps_per_s": "steps/s", "images_per_s": "images/s", "inputs_per_s": "inputs/s",
    "step_s_median": "s", "step_s_min": "s", "step_s_max": "s", "peak_memory_gib": "GiB",
    "trained_parameters": "count", "flops_per_step": "FLOP",
    "achieved_gflops": "GFLOP/s", "peak_gflops": "GFLOP/s", "best_peak_gflops": "GFLOP/s",
    "fraction_of_peak": "%", "fraction_of_best_peak": "%",
    # notebook 06's curve
    "tflops": "TFLOP",
    # the sides of an interaction (a difference of two effects), e.g. F4's shuffle costs
    "test_accuracy_effect": "top-1 points",
}
# The benchmark's own column names for what the notebooks call parameters: one name per metric.
RENAMED = {"params": "parameters", "trained_params": "trained_parameters",
           "peak_memory_gb": "peak_memory_gib"}          # GiB (2^30 bytes), as the benchmark measures it
# Stored as a fraction, shown as a percentage (x 100) so that one metric has one unit.
FRACTIONS = {"fraction_of_peak", "fraction_of_best_peak"}
# Columns of 05's wide metrics.csv that describe the measurement rather than measure it.
WIDE_SETTINGS = ("model", "package", "side", "inputs", "batch", "status", "repeats", "threads", "precision")
# What a comparisons.csv 'metric' (the unit of its effect) is, as a metric of this frame.
COMPARISON_METRICS = (("top-1 %", "test_accuracy"), ("mIoU %", "test_miou"), ("steps/s", "steps_per_s"),
                      ("structure score", "structure"), ("geometry score", "geometry"))
# (geometry: F7's structure with the data's correlation removed)


# The columns a comparisons.csv may lack, and what they default to (`hipcore.report` writes them all).
COMPARISON_DEFAULTS = {"kind": "effect", "margin": "", "replicate": "seed", "converged": "", "epochs": "",
                       "test_size": ""}


class ResultsError(HipcoreError, ValueError):
    """A results file that cannot be read as what it should be; the message names it (and the
    row, where one row is wrong)."""


def unit_of(metric: str) -> str:
    """The unit of `metric`: `UNITS`, else the structure and geometry scores of the position tables."""
    if metric in UNITS:
        return UNITS[metric]
    if metric.startswith(("structure", "geometry")) or metric.endswith("chance_sd"):
        return "score"                  # a correlation-like structure score and its chance sd
    raise ResultsError(f"metric {metric!r} has no unit; add it to hipcore.results.UNITS")


# ---- shape: what each results file must hold, whatever its digest ----

# Units whose values cannot be negative (counts, times, rates, sizes, losses); '%' lies in
# [0, 100]; scores and effects ('score', 'top-1 points') may take any finite value.
NON_NEGATIVE = {"nats", "MSE (normalised pixels)", "examples/s", "s", "count", "steps/s", "images/s", "inputs/s",
                "GiB", "FLOP", "GFLOP/s", "TFLOP"}
PERCENT = (0.0, 100.0)


def value_range(metric: str) -> tuple[float, float]:
    """The values `metric` can take as a file stores it: [0, 1] for FRACTIONS, [0, 100] for
    percentages, >= 0 for NON_NEGATIVE units, any finite number otherwise."""
    unit = unit_of(metric)
    if metric in FRACTIONS:
        return 0.0, 1.0
    if unit == "%":
        return PERCENT
    return (0.0, math.inf) if unit in NON_NEGATIVE else (-math.inf, math.inf)


def check_unique(path: Path, frame: pd.DataFrame, key: list[str]) -> None:
    """ResultsError naming the first row that repeats another's `key`."""
    twice = frame.duplicated(key, keep="first")
    if twice.any():
        i = twice.idxmax()
        first = frame.index[(frame[key] == frame.loc[i, key]).all(axis=1)][0]
        what = ", ".join(f"{k} {frame.at[i, k]!r}" for k in key)
        raise ResultsError(f"{_row(path, i)} repeats row {int(first) + 1} ({what}): each appears once")


def check_values(path: Path, metrics: pd.Series, values: pd.Series) -> None:
    """Each value within its metric's `value_range`; ResultsError naming the first row outside."""
    try:
        bounds = {m: value_range(m) for m in metrics.unique()}
    except ResultsError as error:
        raise ResultsError(f"{path}: {error}") from None
    low, high = metrics.map(lambda m: bounds[m][0]), metrics.map(lambda m: bounds[m][1])
    bad = values[(values < low) | (values > high)]
    if len(bad):
        i = bad.index[0]
        raise ResultsError(f"{_row(path, i)}: {metrics[i]} {values[i]:g} is outside [{low[i]:g}, {high[i]:g}]")


def check_known(path: Path, values: pd.Series, known: set[str] | None, what: str, source: str) -> None:
    """Each of `values` among `known` (None: nothing to check against)."""
    if known is None:
        return
    bad = values[~values.isin(known)]
    if len(bad):
        raise ResultsError(f"{_row(path, bad.index[0])}: {what} {bad.iloc[0]!r} is not one of the "
                           f"{len(known)} {what}s in {source}")


def check_seeds(path: Path, seeds: pd.Series, declared: set[int] | None) -> None:
    """Each seed among those the folder's run declared (provenance.json; None: not recorded)."""
    if declared is None:
        return
    bad = seeds[seeds.notna() & ~seeds.isin(declared)]
    if len(bad):
        raise ResultsError(f"{_row(path, bad.index[0])}: seed {bad.iloc[0]} is not one of the seeds its run "
                           f"declared ({sorted(declared)}, provenance.json)")


def declared_seeds(folder: Path) -> set[int] | None:
    """The seeds the folder's provenance.json says its run trained (None where it says none)."""
    seeds = _provenance(folder).get("seeds")
    if isinstance(seeds, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return set(seeds)
    return None


def known_arms(folder: Path) -> set[str] | None:
    """The arms of the folder's arms.csv (None without one)."""
    path = folder / "arms.csv"
    return set(_arms(path)["arm"]) if path.is_file() else None


def read_table(path: str | Path, needs: Iterable[str], *, key: Iterable[str],
               numbers: Mapping[str, tuple[float, float]] = {}, whole: Iterable[str] = (),
               known: Mapping[str, tuple[Iterable[str] | None, str]] = {},
               by_metric: Mapping[str, tuple[float, float]] = {}) -> pd.DataFrame:
    """A results CSV (`read_csv`: its digest checked) as text, checked for its shape: the `key`
    columns unique together, each column of `numbers` a finite number within its range, each of
    `whole` a whole number >= 0, each of `known` among its (values, where they are named; values
    None: not checked), and, with `by_metric`, its
    `value` within the range of its row's `metric` (metrics not named: any finite number)."""
    path = Path(path)
    raw = read_csv(path, needs)
    check_unique(path, raw, list(key))
    for column in whole:
        _seeds(raw[column], path) if column == "seed" else _whole(raw[column], path, column)
    for column, (low, high) in numbers.items():
        _within(path, column, _numbers(raw[column], path, column, required=True), low, high)
    for column, (allowed, source) in known.items():
        check_known(path, raw[column], None if allowed is None else set(allowed), column, source)
    if by_metric:
        values = _numbers(raw["value"], path, "value", required=True)
        for metric, (low, high) in by_metric.items():
            _within(path, metric, values[raw["metric"] == metric], low, high)
    return raw


def _within(path: Path, what: str, values: pd.Series, low: float, high: float) -> None:
    bad = values[(values < low) | (values > high)]
    if len(bad):
        raise ResultsError(f"{_row(path, bad.index[0])}: {what} {bad.iloc[0]:g} is outside [{low:g}, {high:g}]")


def _whole(values: pd.Series, path: Path, what: str) -> pd.Series:
    numbers = _numbers(values, path, what, required=True)
    bad = numbers[((numbers % 1) != 0) | (numbers < 0)]
    if len(bad):
        raise ResultsError(f"{_row(path, bad.index[0])}: {what} {values[bad.index[0]]!r} is not a whole number >= 0")
    return numbers.astype("Int64")


# ---- runs.json: each run's row ----

def read_runs_file(path: str | Path) -> list[dict[str, Any]]:
    """The runs of a runs.json, checked (`check_runs`) against its folder's arms and seeds."""
    path = Path(path)
    check_digest(path)
    rows = read_json(path, ResultsError)
    if not isinstance(rows, list):
        raise ResultsError(f"{path}: not a list of runs, each with its arm and seed")
    check_runs(path, rows, known_arms(path.parent), declared_seeds(path.parent))
    return rows


def read_run(path: str | Path) -> dict[str, Any]:
    """One run's row stored alone as JSON (reproduce-gpu's rows/<job>.json), checked as a run."""
    path = Path(path)
    row = read_json(path, ResultsError, "; delete it to train that job again")
    check_run(path, None, row)
    return row


def check_runs(path: Path, rows: list[Any], arms: set[str] | None = None, seeds: set[int] | None = None) -> None:
    """Every entry a run (`check_run`), each (arm, seed) once, its arm one of `arms` and its seed
    one of `seeds` (None: not checked)."""
    seen: dict[tuple[str, int], int] = {}
    for i, row in enumerate(rows):
        check_run(path, i, row)
        key = (row["arm"], row["seed"])
        if key in seen:
            raise ResultsError(f"{_row(path, i)} repeats row {seen[key] + 1} (arm {key[0]!r}, seed {key[1]}): "
                               "each run appears once")
        seen[key] = i
        check_known(path, pd.Series([row["arm"]], index=[i]), arms, "arm", "arms.csv")
        check_seeds(path, pd.Series([row["seed"]], index=[i]), seeds)


def check_run(path: Path, index: int | None, row: Any) -> None:
    """A run: an object with its arm (text) and seed (a whole number >= 0), every number finite,
    and each metric of UNITS within its `value_range`."""
    where = str(path) if index is None else _row(path, index)
    seed = row.get("seed") if isinstance(row, dict) else None
    if not (isinstance(row, dict) and isinstance(row.get("arm"), str) and isinstance(seed, int)
            and not isinstance(seed, bool) and seed >= 0):
        raise ResultsError(f"{where}: not a run (an object with its arm, a name, and its seed, a whole number >= 0)")
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise ResultsError(f"{where}: {key} is {value}, not a finite number (arm {row['arm']!r}, seed {seed})")
        low, high = value_range(key) if key in UNITS else (-math.inf, math.inf)
        if not low <= value <= high:
            raise ResultsError(f"{where}: {key} {value:g} is outside [{low:g}, {high:g}] (arm {row['arm']!r}, "
                               f"seed {seed})")


# ---- comparisons.csv: the paired rows verdicts rest on ----

def check_comparisons(path: Path, raw: pd.DataFrame) -> None:
    """The shape of a comparisons.csv read as text (with its optional columns): each (finding,
    seed) once, whole seeds, finite sides in their metric's range, and, where the folder holds
    runs.json, each side of a top-1 effect over seeds the top-1 of one of that seed's runs (a
    number copied from the runs, so a changed or truncated one is caught)."""
    check_unique(path, raw, ["finding", "seed"])
    seeds = _seeds(raw["seed"], path)
    for role in ("baseline", "treatment"):
        values = _numbers(raw[role], path, role, required=True)
        top1 = raw["metric"].str.startswith("top-1 %")
        low = top1.map({True: 0.0, False: -math.inf}).where(raw["kind"] != "interaction", -100.0)
        low = low.where(~raw["metric"].str.startswith("steps/s"), 0.0)
        high = top1.map({True: 100.0, False: math.inf})
        bad = values[(values < low) | (values > high)]
        if len(bad):
            i = bad.index[0]
            raise ResultsError(f"{_row(path, i)}: {role} {raw[role][i]} of {raw['finding'][i]!r} is outside "
                               f"[{low[i]:g}, {high[i]:g}] ({raw['metric'][i]})")
        if (path.parent / RUNS).is_file():
            _check_against_runs(path, raw, seeds, values, role)
    if finished(path.parent):
        _check_against_summary(path, raw, seeds)


def finished(folder: Path) -> bool:
    """Whether the folder holds a finished run: signed (SHA256SUMS, written with provenance.json
    as its run's last step). A folder being rewritten is not (notebook.setup unsigned it), so
    what its run declared in provenance.json and summary.json is not held against its new files."""
    return (folder / SUMS).is_file() and (folder / "provenance.json").is_file()


def _check_against_summary(path: Path, raw: pd.DataFrame, seeds: pd.Series) -> None:
    """A finished folder's comparisons: findings its summary.json records (where it records
    them), each with as many rows (seeds or repeats) as it records, and seeds of its run
    (provenance.json) for findings over seeds."""
    check_seeds(path, seeds[raw["replicate"] == "seed"], declared_seeds(path.parent))
    findings = notebook_summary(path.parent).get("findings")
    if not isinstance(findings, list):
        return
    recorded = {f.get("finding"): f.get("seeds") for f in findings if isinstance(f, dict)}
    check_known(path, raw["finding"], set(recorded), "finding", "summary.json")
    for name, rows in raw.groupby("finding", sort=False).size().items():
        if isinstance(recorded[name], int) and rows != recorded[name]:
            raise ResultsError(f"{path}: finding {name!r} has {rows} rows where summary.json records "
                               f"{recorded[name]} (a row removed or added)")


def _check_against_runs(path: Path, raw: pd.DataFrame, seeds: pd.Series, values: pd.Series, role: str) -> None:
    runs = read_runs_file(path.parent / RUNS)
    top1: dict[int, list[float]] = {}
    for run in runs:
        if isinstance(run.get("test_accuracy"), (int, float)):
            top1.setdefault(run["seed"], []).append(float(run["test_accuracy"]))
    rows = raw.index[raw["metric"].str.startswith("top-1 %") & (raw["kind"] == "effect") & (raw["replicate"] == "seed")]
    for i in rows:
        if not any(math.isclose(values[i], v, rel_tol=1e-9, abs_tol=1e-9) for v in top1.get(int(seeds[i]), [])):
            raise ResultsError(f"{_row(path, i)}: {role} {raw[role][i]} of {raw['finding'][i]!r}, seed {seeds[i]}, is "
                               f"no run's top-1 at seed {seeds[i]} in {RUNS} (a changed number, or a row added "
                               "by hand)")


# ---- reading one folder ----

def read_csv(path: str | Path, needs: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV as strings ('' where empty), with `needs` among its columns, once its folder's
    SHA256SUMS signs it (`digests.check`); any other shape is a ResultsError naming the file."""
    check_digest(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: not a readable CSV ({e})") from None
    missing = sorted(set(needs) - set(frame.columns))
    if missing:
        raise ResultsError(f"{path}: missing columns {missing}")
    return frame


def _numbers(values: pd.Series, path: Path, what: str, required: bool = False) -> pd.Series:
    """Strings as finite floats ('' is NaN, an error where `required`); any other text, or a
    non-finite number, is an error naming the file."""
    out = pd.to_numeric(values.replace("", math.nan), errors="coerce").astype(float)
    bad = values[(out.isna() & (values != "")) | out.isin([math.inf, -math.inf])]
    if len(bad):
        raise ResultsError(f"{_row(path, bad.index[0])}: {what} {bad.iloc[0]!r} is not a finite number")
    if required and (values == "").any():
        raise ResultsError(f"{_row(path, values.index[values == ''][0])}: a row has no {what}")
    return out


def _row(path: Path, index: int) -> str:
    """'<file>: row N', N counting a CSV's data rows (or a JSON list's entries) from 1."""
    return f"{path}: row {int(index) + 1}"


def _seeds(values: pd.Series, path: Path) -> pd.Series:
    seeds = _numbers(values, path, "seed")
    bad = seeds[seeds.notna() & (((seeds % 1) != 0) | (seeds < 0))]
    if len(bad):
        raise ResultsError(f"{_row(path, bad.index[0])}: seed {values[bad.index[0]]!r}: seeds must be whole "
                           "numbers >= 0")
    return seeds.astype("Int64")


def _long_metrics(path: Path, seeds: set[int] | None = None) -> pd.DataFrame:
    """A notebook's tidy metrics.csv; each (run_id, seed, epoch, step, split, metric) once, values
    in range, seeds among `seeds`, and a run's test metrics those of its folder's runs.json."""
    raw = read_csv(path, LONG_FIELDS)
    check_unique(path, raw, [c for c in ("run_id", "seed", "epoch", "step", "split", "metric") if c in raw])
    out = pd.DataFrame({"arm": raw["run_id"], "seed": _seeds(raw["seed"], path), "metric": raw["metric"],
                        "value": _numbers(raw["value"], path, "value", required=True)})
    check_values(path, out["metric"], out["value"])
    check_seeds(path, out["seed"], seeds)
    if (path.parent / RUNS).is_file():
        _metrics_against_runs(path, out)
        if "split" in raw:
            check_known(path, raw["run_id"][raw["split"] == "test"], measured(path.parent), "arm",
                        f"{RUNS} or summary.json's shortcuts")
    return out


def measured(folder: Path) -> set[str]:
    """What a folder with runs.json measured on the test set: its runs' arms, and the shortcut
    baselines its summary.json records (notebook 04: {arm, seed, test_accuracy} rows)."""
    shortcuts = notebook_summary(folder).get("shortcuts")
    return {run["arm"] for run in read_runs_file(folder / RUNS)} | {
        row.get("arm") for row in (shortcuts if isinstance(shortcuts, list) else []) if isinstance(row, dict)}


def notebook_summary(folder: Path) -> dict[str, Any]:
    """The folder's summary.json (its digest checked; {} without one); a ResultsError naming it
    when it is not a JSON object."""
    path = folder / "summary.json"
    if not path.is_file():
        return {}
    try:
        record = json.loads(check_digest(path).read_text())
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        raise ResultsError(f"{path}: not a notebook's summary (a JSON object)")
    return record


def _metrics_against_runs(path: Path, frame: pd.DataFrame) -> None:
    """Each row of a run (an arm and seed of runs.json) holds the value runs.json records for it."""
    recorded = {(run["arm"], run["seed"]): run for run in read_runs_file(path.parent / RUNS)}
    for i, arm, seed, metric, value in frame[["arm", "seed", "metric", "value"]].itertuples():
        run = recorded.get((arm, None if pd.isna(seed) else int(seed)), {})
        if isinstance(run.get(metric), (int, float)) and not math.isclose(run[metric], value, rel_tol=1e-9):
            raise ResultsError(f"{_row(path, i)}: {metric} {value:g} of arm {arm!r}, seed {seed}, is not the "
                               f"{run[metric]:g} its {RUNS} records (a changed number?)")


def _wide_metrics(path: Path) -> pd.DataFrame:
    """05's benchmark table (one row per model and side) as long rows; unmeasured cells dropped."""
    raw = read_csv(path, ("model", "side", "batch", "status"))
    check_unique(path, raw, [c for c in ("model", "side", "batch", "precision") if c in raw])
    metrics = [c for c in raw.columns if c not in WIDE_SETTINGS]
    wide = pd.DataFrame({c: _numbers(raw[c], path, c) for c in metrics})
    for c in metrics:
        check_values(path, pd.Series(RENAMED.get(c, c), index=raw.index), wide[c].fillna(0.0))
    wide["arm"] = raw["model"]
    wide["variant"] = raw["model"]
    wide["side"] = _numbers(raw["side"], path, "side").astype("Int64")
    wide["batch"] = _numbers(raw["batch"], path, "batch").astype("Int64")
    wide["precision"] = raw["precision"].replace("", math.nan) if "precision" in raw else math.nan
    out = wide.melt(id_vars=["arm", "variant", "side", "batch", "precision"], value_vars=metrics,
                    var_name="metric", value_name="value").dropna(subset=["value"])
    out["metric"] = out["metric"].replace(RENAMED)
    return out


def _loops(path: Path) -> pd.DataFrame:
    raw = read_csv(path, ("task", "precision", "examples_per_s"))
    check_unique(path, raw, [c for c in ("task", "precision", "batch") if c in raw])
    batch = _numbers(raw["batch"], path, "batch") if "batch" in raw else None
    out = pd.DataFrame({"arm": "loop: " + raw["task"], "precision": raw["precision"], "batch": batch,
                        "metric": "train_examples_per_s",
                        "value": _numbers(raw["examples_per_s"], path, "examples_per_s", required=True)})
    check_values(path, out["metric"], out["value"])
    return out


def grid_point(arm: str, side: int, pretrain_epochs: int) -> str:
    """The name of one arm at one point of 06's grid, e.g. 'mae, 28x28, 8 MAE epochs' (arm
    'mae', 'classification' or 'control'; 0 MAE epochs for the arms without MAE)."""
    return f"{arm}, {side}x{side}" + (f", {pretrain_epochs} MAE epochs" if pretrain_epochs else "")


def _curve(path: Path, seeds: set[int] | None = None) -> pd.DataFrame:
    """06's curve (one row per side, MAE length, arm, seed and metric); each point an arm."""
    raw = read_csv(path, ("side", "pretrain_epochs", "arm", "seed", "metric", "value"))
    check_unique(path, raw, ["side", "pretrain_epochs", "arm", "seed", "metric"])
    side = _numbers(raw["side"], path, "side").astype("Int64")
    epochs = _numbers(raw["pretrain_epochs"], path, "pretrain_epochs").astype("Int64")
    arm = [grid_point(a, s, e) for a, s, e in zip(raw["arm"], side, epochs)]
    out = pd.DataFrame({"arm": arm, "side": side, "seed": _seeds(raw["seed"], path), "metric": raw["metric"],
                        "value": _numbers(raw["value"], path, "value", required=True)})
    check_values(path, out["metric"], out["value"])
    check_seeds(path, out["seed"], seeds)
    return out


def _comparison_metric(text: str, path: Path) -> str:
    for prefix, metric in COMPARISON_METRICS:
        if text.startswith(prefix):
            return metric
    raise ResultsError(f"{path}: comparison metric {text!r} is not one of {[p for p, _ in COMPARISON_METRICS]}")


def read_comparisons_csv(path: str | Path, needs: Iterable[str] = ("finding", "metric", "seed", "baseline",
                                                                      "treatment")) -> pd.DataFrame:
    """A comparisons.csv as text, its optional columns filled (`COMPARISON_DEFAULTS`), checked
    (`check_comparisons`)."""
    path = Path(path)
    raw = read_csv(path, needs)
    for column, default in COMPARISON_DEFAULTS.items():
        if column not in raw:
            raw[column] = default
    check_comparisons(path, raw)
    return raw


def _comparisons(path: Path) -> pd.DataFrame:
    raw = read_comparisons_csv(path)
    metric = raw["metric"].map(lambda t: _comparison_metric(t, path))
    metric = metric.where(raw["kind"] != "interaction", metric + "_effect")   # an interaction's sides are effects
    parts = [pd.DataFrame({"finding": raw["finding"], "role": role, "seed": _seeds(raw["seed"], path),
                           "metric": metric, "value": _numbers(raw[role], path, role, required=True)})
             for role in ("baseline", "treatment")]
    return pd.concat(parts, ignore_index=True)


def _arms(path: Path) -> pd.DataFrame:
    raw = read_csv(path, ("arm",) + ARM_SETTINGS)
    if raw["arm"].duplicated().any():
        raise ResultsError(f"{path}: arm {raw['arm'][raw['arm'].duplicated()].iloc[0]!r} appears twice")
    out = raw[["arm", *ARM_SETTINGS]].replace("", math.nan)
    bad = ~out["mae"].isin(["True", "False"])
    if bad.any():
        raise ResultsError(f"{path}: mae must be True or False, got {out['mae'][bad].iloc[0]!r}")
    out["mae"] = out["mae"].map({"True": True, "False": False}).astype("boolean")
    out["mask_ratio"] = _numbers(raw["mask_ratio"], path, "mask_ratio")
    out["steps"] = _numbers(raw["steps"], path, "steps").astype("Int64")
    return out


def _provenance(folder: Path) -> dict[str, Any]:
    """commit, machine, precision and seeds of the folder's provenance.json (NaN / None without one)."""
    path = folder / "provenance.json"
    if not path.exists():
        return {"commit": math.nan, "machine": math.nan, "precision": math.nan, "seeds": None}
    check_digest(path)
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("machine"), dict):
            raise TypeError("a JSON object with a 'machine' table expected")
        machine = record["machine"]
        return {"commit": record.get("commit") or math.nan,
                "machine": f"{machine['cpu']}, {machine['cores']} cores"
                           + (f", {machine['gpu']}" if machine.get("gpu") else ""),
                "precision": machine.get("precision") or math.nan, "seeds": record.get("seeds")}
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ResultsError(f"{path}: not a provenance record ({type(e).__name__}: {e})") from None


def load_folder(folder: str | Path) -> pd.DataFrame:
    """One notebook's results folder (`results/<notebook>/<profile>/`) as long rows."""
    folder = Path(folder)
    parts = []
    metrics, arms, seeds = folder / "metrics.csv", known_arms(folder), declared_seeds(folder)
    if metrics.exists():
        header = read_csv(metrics).columns
        parts.append(_wide_metrics(metrics) if "model" in header and "metric" not in header
                     else _long_metrics(metrics, seeds))
    if (folder / "curve.csv").exists():
        parts.append(_curve(folder / "curve.csv", seeds))
    if (folder / "loops.csv").exists():
        parts.append(_loops(folder / "loops.csv"))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["arm", "metric", "value"])
    if arms is not None:
        settings = _arms(folder / "arms.csv")
        frame = frame.drop(columns=[c for c in ARM_SETTINGS if c in frame]).merge(settings, on="arm", how="left")
    frame["run"] = _run_ids(folder, frame)
    return _finish(frame, folder, COLUMNS)


def _run_ids(folder: Path, frame: pd.DataFrame) -> list[Any]:
    """Each row's run: the run directory's name that runs.json records for its (arm, seed), the
    same for every notebook the run cache served it to; NaN where no run is recorded."""
    path = folder / "runs.json"
    if not path.is_file():
        return [math.nan] * len(frame)
    try:
        runs = {(r["arm"], r["seed"]): Path(r["run_dir"]).name for r in read_runs_file(path)}   # checked runs
    except (KeyError, TypeError) as e:
        raise ResultsError(f"{path}: not a list of runs with arm, seed and run_dir ({type(e).__name__}: {e})") from None
    seeds = frame["seed"] if "seed" in frame else pd.Series(pd.NA, index=frame.index)
    return [runs.get((arm, None if pd.isna(seed) else int(seed)), math.nan) for arm, seed in zip(frame["arm"], seeds)]


def _once(frame: pd.DataFrame) -> pd.DataFrame:
    """Each run's rows once: a run several notebooks show (the run cache trained it once) keeps the
    first notebook's rows and name, and `notebooks` names every notebook that shows it."""
    shown = frame.dropna(subset=["run"]).groupby("run")["notebook"].agg(lambda n: ", ".join(sorted(set(n))))
    named = frame["run"].map(shown).astype(object)                # NaN where a row has no run
    frame["notebooks"] = named.where(named.notna(), frame["notebook"])
    repeated = frame["run"].notna() & frame.duplicated(["run", "metric"])
    return frame[~repeated].reset_index(drop=True)


def _finish(frame: pd.DataFrame, folder: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Provenance, notebook, unit and one unit per metric on `frame`'s rows; `columns` in order."""
    provenance = _provenance(folder)
    frame["commit"], frame["machine"] = provenance["commit"], provenance["machine"]
    own = (frame["precision"] if "precision" in frame else pd.Series(math.nan, index=frame.index)).astype(object)
    frame["precision"] = own.fillna(provenance["precision"]) if isinstance(provenance["precision"], str) else own
    frame["notebook"] = folder.parent.name
    try:
        frame["unit"] = frame["metric"].map(unit_of)
    except ResultsError as e:
        raise ResultsError(f"{folder / 'metrics.csv'}: {e}") from None
    fractions = frame["metric"].isin(FRACTIONS)
    frame.loc[fractions, "value"] = 100 * frame.loc[fractions, "value"]
    for column in columns:
        if column not in frame:
            frame[column] = math.nan
    return frame[list(columns)].astype({c: DTYPES[c] for c in columns})


def load_comparison_folder(folder: str | Path) -> pd.DataFrame:
    """The paired rows behind one notebook folder's verdicts (COMPARISON_COLUMNS): per finding
    and seed, the baseline's and the treatment's value. They repeat measurements `load` returns
    (or effects derived from them), so they are kept apart from it."""
    folder = Path(folder)
    path = folder / "comparisons.csv"
    frame = _comparisons(path) if path.exists() else pd.DataFrame(columns=["finding", "role", "seed", "metric",
                                                                            "value"])
    return _finish(frame, folder, COMPARISON_COLUMNS)


def load(profile: str = "quick", results_dir: str | Path | None = None) -> pd.DataFrame:
    """Every notebook's results at `profile` as one long DataFrame (`COLUMNS`), from
    `results_dir` (default: the checkout's results/, `hipcore.locations`): each run once
    (`_once`), `KEY` unique. `load_folder` gives one notebook's rows under its own names."""
    frame = pd.concat([load_folder(f) for f in profile_folders(profile, results_dir)], ignore_index=True)
    return _once(frame).astype({c: DTYPES[c] for c in COLUMNS})


def profile_folders(profile: str, results_dir: str | Path | None = None) -> list[Path]:
    """The `<notebook>/<profile>/` folders under `results_dir` (default: the checkout's)."""
    if not isinstance(profile, str) or not profile:
        raise ValueError(f"profile must be a profile name such as 'quick', got {profile!r}")
    if results_dir is None:
        from .locations import results_dir as default

        results_dir = default()
    results_dir = Path(results_dir)
    folders = sorted(p for p in results_dir.glob(f"[0-9][0-9]_*/{profile}") if p.is_dir())   # notebooks' folders
    if not folders:
        raise FileNotFoundError(f"no results for profile {profile!r} under {results_dir} "
                                f"(expected <notebook>/{profile}/ folders)")
    return folders


def load_comparisons(profile: str = "quick", results_dir: str | Path | None = None) -> pd.DataFrame:
    """Every notebook's comparison rows at `profile` (load_comparison_folder), one frame."""
    return pd.concat([load_comparison_folder(f) for f in profile_folders(profile, results_dir)], ignore_index=True)


# ---- summaries and tables ----

def mean_sd(frame: pd.DataFrame, by: str | list[str], value: str = "value") -> pd.DataFrame:
    """mean, sd (NaN for one row) and n of `value` per group, groups in first-seen order."""
    return (frame.groupby(by, sort=False)[value].agg(mean="mean", sd="std", n="count").reset_index())


def fmt_mean_sd(mean: float, sd: float, signed: bool = False) -> str:
    """'64.05 ± 0.75' ('+2.00 ± 0.41' signed); the mean alone where sd is NaN (one value)."""
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text if math.isnan(sd) else f"{text} ± {sd:.2f}"


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a markdown pipe table, cells as they are (format them beforehand)."""
    def line(cells: Iterable[Any]) -> str:
        return "|" + "|".join(f" {c} " for c in cells) + "|"

    cells = frame.astype(object).where(frame.notna(), "")
    return "\n".join([line(frame.columns), "|" + "---|" * len(frame.columns),
                      *(line(row) for row in cells.itertuples(index=False))])
