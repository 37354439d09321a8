"""What regime a notebook's arms are in: reference baselines, learning curves, early training.

A comparison between arms says something about trained models only when the arms have learned
the task. Three things show whether they have, in every finding notebook:

- `baseline_rows`: the reference baselines (`experiments.baselines`) trained on exactly one
  arm's training subset and tested on its test set, per seed; `reference_levels` gives their
  mean top-1, drawn as horizontal lines beside the arms;
- `curve_rows`: each run's validation top-1 and loss per epoch (MAE pretraining's losses too)
  and its test set's, evaluated once on the checkpoint validation selected (at that epoch),
  read from its run folder, as tidy rows (`curves.csv`) for `draw_curves`; a curves.csv
  written before the test set was evaluated once holds a test row per epoch, and still reads;
- `early_training`: '' when every stage of every arm reached its validation plateau (the rule
  of `hipcore.train.plateau`), else a phrase such as 'early training (not at the validation
  plateau after 2 epochs)' that goes into every title and table caption of the notebook.

    refs = regime.baseline_rows(arm, S.seeds, S.settings, family="images", **data)
    regime.write_rows(S.out / regime.CURVES, regime.curve_rows(rows))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import matplotlib.pyplot as plt

from .. import plots, report, results
from ..files import write_csv_atomic
from ..locations import resolve_relative
from ..notebook import write_metrics, write_summary_json
from ..train.metrics import read_metrics
from . import baselines, common

CURVES = "curves.csv"
CURVE_FIELDS = ("arm", "seed", "stage", "epoch", "split", "metric", "value")
# What a curve holds per epoch: top-1 or (a segmentation) mIoU and pixel accuracy, as fractions, and the loss.
CURVE_FRACTIONS = ("accuracy", "miou", "pixel_accuracy")
CURVE_METRICS = CURVE_FRACTIONS + ("loss",)


# ---- reference baselines ----

def baseline_rows(arm: common.Arm, seeds: tuple[int, ...], settings: Mapping[str, Any], *, family: str,
                  dataset: str, data_dir=None, data_options=None, train_data=None, test_data=None,
                  **options: Any) -> list[dict[str, Any]]:
    """Every baseline of `family` ('images' or 'points') trained on `arm`'s training subset
    (its validation examples held out) and tested on its test set, once per seed."""
    configs = {seed: common.train_configs(arm, seed, settings, dataset=dataset, data_dir=data_dir,
                                          data_options=data_options)[1] for seed in seeds}
    return baselines.run_baselines(configs, family=family, train_data=train_data, test_data=test_data, **options)


def reference_levels(rows: list[dict[str, Any]]) -> dict[str, float]:
    """{baseline model: mean test score over seeds (top-1, or a segmentation's mIoU)}, in the rows' order."""
    by_model: dict[str, list[float]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(float(common.score_of(row)))
    return {model: sum(values) / len(values) for model, values in by_model.items()}


def score_name(rows: list[Mapping[str, Any]]) -> str:
    """What common.score_of reads from these rows: 'test mIoU' for segmentations, else 'test top-1'."""
    return common.score_name(rows[0] if rows else {})


def baseline_lines(rows: list[dict[str, Any]], arms: list[dict[str, Any]]) -> list[str]:
    """One sentence per baseline: its score and how many arms stay below it (`arms`' 'accuracy'
    is the same score: top-1, or mIoU)."""
    lines = []
    means = {a["arm"]: a["accuracy"] for a in arms}
    for model, level in reference_levels(rows).items():
        below = [name for name, value in means.items() if value < level]
        lines.append(f"{model}: {level:.1f}% {score_name(rows)} on the same training images; "
                     f"{len(below)} of {len(means)} arms below it" + (f" ({'; '.join(below)})" if below else ""))
    return lines


# ---- learning curves ----

def run_curve(run_dir: str | Path, arm: str, seed: int, stage: str) -> list[dict[str, Any]]:
    """The validation rows per epoch of one run folder and its test rows (once, at the selected
    epoch; per epoch in runs from before that); empty when it has none."""
    path = resolve_relative(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    return [{"arm": arm, "seed": seed, "stage": stage, "epoch": r["epoch"], "split": r["split"],
             "metric": r["metric"], "value": r["value"]}
            for r in read_metrics(path) if r["split"] in ("val", "test") and r["metric"] in CURVE_METRICS]


def curve_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tidy per-epoch rows (CURVE_FIELDS) of every run behind `rows` (as run_arm returns them):
    stage 'classification' ('segmentation' for a run scored by mIoU), and 'MAE' for the
    pretraining of an MAE arm."""
    out = []
    for row in rows:
        if row.get("pretrain_run_dir"):
            out += run_curve(row["pretrain_run_dir"], row["arm"], row["seed"], "MAE")
        if row.get("run_dir"):
            stage = "segmentation" if "test_miou" in row else "classification"
            out += run_curve(row["run_dir"], row["arm"], row["seed"], stage)
    return out


def write_rows(path: str | Path, rows: list[dict[str, Any]], fields: tuple[str, ...] = CURVE_FIELDS) -> Path:
    return write_csv_atomic(path, fields, rows)


# What a curves.csv holds (`results.read_table`): one value per arm, seed, stage, epoch, split
# and metric; accuracies as fractions, losses >= 0.
CURVE_SHAPE = dict(key=("arm", "seed", "stage", "epoch", "split", "metric"), whole=("seed", "epoch"),
                   by_metric={**dict.fromkeys(CURVE_FRACTIONS, (0.0, 1.0)), "loss": (0.0, math.inf)})


def read_curves(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a curves.csv, numbers as numbers, checked (CURVE_SHAPE, arms of the folder's
    arms.csv); [] when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    arms = {"arm": (results.known_arms(path.parent), "arms.csv")}        # None without one: any arm
    rows = results.read_table(path, CURVE_FIELDS, known=arms, **CURVE_SHAPE).to_dict("records")
    for r in rows:
        r.update(seed=int(r["seed"]), epoch=int(r["epoch"]), value=float(r["value"]))
    return rows


def draw_curves(curves: list[dict[str, Any]], title: str, seed: int | None = None) -> plt.Figure:
    """Per arm, validation top-1 and loss per epoch of the classification stage (solid) and the
    test set's at the selected epoch (`plots.draw_learning_curves`), for one seed (the first
    one by default)."""
    if not curves:
        raise ValueError("no learning curves to draw (the runs logged no validation)")
    seed = min(r["seed"] for r in curves) if seed is None else seed
    per_arm: dict[str, list[dict]] = {}
    for r in curves:
        if r["seed"] == seed and r["stage"] == "classification":
            per_arm.setdefault(r["arm"], []).append(r)
    return plots.draw_learning_curves(per_arm, f"{title} (seed {seed})")


# ---- a notebook's regime files: written after training, read instead of it ----

def write(folder: str | Path, rows: list[dict[str, Any]], references: list[dict[str, Any]],
          curves: list[dict[str, Any]]) -> None:
    """runs.json, baselines.csv (when there are baselines) and curves.csv in `folder`."""
    common.write_runs(folder, rows)
    if references:
        baselines.write_baselines(folder, references)
    write_rows(Path(folder) / CURVES, curves)


def read(folder: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs, baselines, curves) of a results folder written by `write`; a folder written
    before baselines or curves existed gives [] for them."""
    folder = Path(folder)
    references = baselines.read_baselines(folder) if (folder / baselines.FILE_NAME).is_file() else []
    return common.read_runs(folder), references, read_curves(folder / CURVES)


@dataclass
class Outcome:
    """What a notebook's tables, figures and verdicts are drawn from: trained here, or read
    from its committed results folder (nothing trained, nothing written)."""

    rows: list[dict[str, Any]]                  # one per run, as common.run_arm returns them
    references: list[dict[str, Any]]            # the reference baselines
    curves: list[dict[str, Any]]                # learning curves, tidy
    extra: dict[str, Any] = field(default_factory=dict)     # the notebook's own (structure, budget, ...)
    # Figures drawn from trained checkpoints, drawn when shown (Setup.figure); reading: none,
    # the committed ones are shown.
    figures: dict[str, Callable[[], Any]] = field(default_factory=dict)


def read_outcome(folder: str | Path, **extra: Any) -> Outcome:
    """The Outcome a results folder written by `write` holds."""
    return Outcome(*read(folder), extra=extra)


def write_outcome(folder: str | Path, rows: list[dict[str, Any]], references: list[dict[str, Any]],
                  **extra: Any) -> Outcome:
    """The runs' learning curves read from their run folders, `write` to `folder`, as an Outcome."""
    curves = curve_rows(rows)
    write(folder, rows, references, curves)
    return Outcome(rows, references, curves, extra=extra)


def run_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """summary.json's runs: arm, seed, top-1, seconds and run folder of each."""
    return [{k: r[k] for k in ("arm", "seed", "test_accuracy", "total_seconds", "run_dir")} for r in rows]


def findings(folder: str | Path) -> list:
    """The findings (report.Finding) of <folder>/comparisons.csv."""
    return report.findings(report.read_comparisons(Path(folder) / "comparisons.csv"))


def write_results(S, *, metrics: list[dict[str, Any]] | None = None, rows: list[dict[str, Any]] | None = None,
                  **summary: Any) -> None:
    """A notebook's last step: metrics.csv (with `metrics`), arms.csv (with `rows`) and
    summary.json (its notebook, profile and `summary`) when it trained, then provenance.json
    (`Setup`'s record_provenance: nothing when it read its committed results)."""
    if not S.reading:
        if metrics is not None:
            write_metrics(S.out / "metrics.csv", metrics)
        if rows is not None:
            common.write_arms(S.out / "arms.csv", rows)
        write_summary_json(S.out / "summary.json", {"notebook": S.notebook, "profile": S.profile, **summary})
    S.record_provenance()


def curves_figure(curves: list[dict[str, Any]], title: str):
    """draw_curves, or None with a line saying why there is nothing to draw."""
    if not any(r["stage"] == "classification" and r["split"] == "val" for r in curves):
        print("no validation curves: these runs held no validation set (results written before "
              "validation existed, or a profile with val_fraction 0)")
        return None
    return draw_curves(curves, title)


# ---- early training ----

def early_training(rows: list[dict[str, Any]]) -> str:
    """'' when every stage of every arm in `rows` reached its validation plateau; otherwise
    'early training (...)' naming the epochs; runs without validation are 'not shown at the
    plateau'. FLOP-matched arms (fixed steps) are judged like the others here: the phrase is
    about whether the models have learned, not about whether a comparison is fair."""
    flags, epochs = [], set()
    for row in rows:
        for stage in ("pretrain_", ""):
            if f"{stage}converged" in row and row[f"{stage}converged"] not in (None, ""):
                flags.append(bool(row[f"{stage}converged"]))
                if not flags[-1]:
                    epochs.add(int(row[f"{stage}epochs_run"]))
            elif stage == "" or row.get("mae"):
                flags.append(None)
    if flags and all(f is True for f in flags):
        return ""
    if None in flags or not flags:
        return "early training (no validation curve shows a plateau)"
    return (f"early training (not at the validation plateau after "
            f"{'/'.join(str(e) for e in sorted(epochs))} epochs)")


def label(rows: list[dict[str, Any]]) -> str:
    """summary.json's regime: the early-training phrase, or that every arm reached its plateau."""
    return early_training(rows) or "every arm at its validation plateau"


def caption(rows: list[dict[str, Any]]) -> str:
    """A bold first line for a markdown table of these arms while they are in early training
    ('' when every arm reached its plateau)."""
    phrase = early_training(rows)
    return f"**{phrase.capitalize()}.**\n\n" if phrase else ""


def titled(title: str, rows: list[dict[str, Any]]) -> str:
    """`title`, with the early-training phrase in front when the arms have not all converged."""
    phrase = early_training(rows)
    return f"{phrase.capitalize()}: {title}" if phrase else title
