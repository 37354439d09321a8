"""What the finding notebooks share: arms of a comparison, how one is trained, paired verdicts.

An `Arm` is one model in a comparison: its variant, how positions are made (learned or
Fourier), whether MAE pretraining comes first and what it hands to the classifier. `run_arm`
trains it for one seed under a profile's settings. Runs are cached by their configuration
and the code that trains them: the run folder is named after `TrainConfig.run_id` plus
`provenance.code_fingerprint()`, so an identical run (the same MAE pretraining in two
notebooks, or a rerun) resumes its finished checkpoint instead of training again, while a
run trained by other model, training or data code is never reused.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .. import results
from ..data.loader import BatchLoader
from ..data.registry import dataset_fingerprint
from ..device import pick_device
from ..device import resolve as resolve_precision
from ..files import write_text_atomic
from ..locations import runs_dir as default_runs_dir
from ..progress import run_line
from ..provenance import RUNS, code_fingerprint, relative
from ..report import append_comparison
from ..results import ARM_SETTINGS
from ..train import RunResult, TrainConfig, train
from ..train.engine import compute_loss, load_data
from ..train.validation import split_validation
from .estimate import plan_line, step_model


@dataclass(frozen=True)
class Arm:
    """One model of a comparison."""

    label: str                           # how tables and figures name it
    variant: str | None = None           # None: the profile's HiP variant (settings['variant'])
    position: str = "learned"            # 'learned' tables or 'fourier' features
    mae: bool = False                    # MAE pretraining before classification
    transfer: str = "all"                # what the MAE checkpoint gives: all / positions / positions_frozen
    ordering: str | None = None          # input order (None: the dataset's default)
    mask_ratio: float = 0.85
    steps: int | None = None             # supervised optimiser steps instead of the epochs (FLOP-matched controls)
    matches: str | None = None           # a FLOP-matched control: the label of the arm whose FLOPs it matches
    model: Mapping[str, Any] = field(default_factory=dict)   # other HiPConfig overrides
    task: str = "supervised"             # the trained stage: 'supervised' (classification) or 'segment'

    def replace(self, **changes: Any) -> "Arm":
        return dataclasses.replace(self, **changes)


# What a profile's row holds beside TrainConfig fields (every other key of a row must be a
# TrainConfig field: an override of its default, which lives there alone).
PROFILE_FIELDS = {
    "seeds": "the seeds a notebook runs by default",
    "pretrain_epochs": "MAE pretraining epochs (the row's `epochs` are the supervised ones)",
    "pretrain_lr": "MAE pretraining's peak learning rate (default: the row's lr)",
}
TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
# Set per arm and seed by train_configs, never by a profile.
PER_RUN_FIELDS = frozenset({"task", "dataset", "data_dir", "ordering", "data_options", "model", "seed",
                            "max_steps", "mask_ratio", "init_from", "transfer", "run_dir", "quiet"})
# A profile's settings before its row: TrainConfig's defaults of the fields a profile may set,
# and one seed.
PROFILE_DEFAULTS: dict[str, Any] = {**{f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)
                                       if f.name not in PER_RUN_FIELDS},
                                    "seeds": (0,)}


def check_profiles(table: Mapping[str, Mapping[str, Any]], extra: Mapping[str, str] | None = None) -> None:
    """ValueError naming the row unless every key of every row is a TrainConfig field a profile
    may set, a PROFILE_FIELDS key, or one of the notebook's own `extra` settings ({name: what it
    is}); unless TrainConfig accepts the row's values; and for a value equal to its default
    (PROFILE_DEFAULTS, or the row's lr for pretrain_lr), which lives there alone."""
    allowed = set(PROFILE_DEFAULTS) | set(PROFILE_FIELDS) | set(extra or {})
    for profile, row in table.items():
        unknown = sorted(set(row) - allowed)
        if unknown:
            raise ValueError(f"profile {profile!r} sets {unknown}, which are neither TrainConfig fields a "
                             f"profile may set nor settings of its notebook")
        check_profile_values(profile, row)              # first: True is no repeated default of 1
        defaults = {**PROFILE_DEFAULTS, "pretrain_lr": row.get("lr", TrainConfig.lr)}
        repeated = sorted(k for k, v in row.items() if k in defaults and v == defaults[k])
        if repeated:
            raise ValueError(f"profile {profile!r} repeats the default of {repeated}: leave "
                             f"{'them' if len(repeated) > 1 else 'it'} out (TrainConfig holds the default)")


def profiles(rows: Mapping[str, Mapping[str, Any]], extra: Mapping[str, str] | None = None) -> dict[str, dict]:
    """Each profile's settings: PROFILE_DEFAULTS, then its row (checked by check_profiles)."""
    check_profiles(rows, extra)
    return {profile: {**PROFILE_DEFAULTS, **row} for profile, row in rows.items()}


def without(row: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """`row` less `keys`: a row built on another one that takes those fields' defaults back."""
    return {k: v for k, v in row.items() if k not in keys}


def check_profile_values(profile: str, row: Mapping[str, Any]) -> None:
    """ValueError naming the profile unless its TrainConfig values (and its MAE stage's epochs
    and lr) pass TrainConfig's checks and its seeds are whole numbers in [0, 2**63), each once."""
    try:
        base = TrainConfig(**train_overrides(row))
        if "pretrain_epochs" in row:
            base.replace(task="pretrain", epochs=row["pretrain_epochs"], lr=row.get("pretrain_lr", base.lr))
    except ValueError as error:
        raise ValueError(f"profile {profile!r}: {error}") from None
    seeds = row.get("seeds", [0])
    ok = isinstance(seeds, (list, tuple)) and len(seeds) == len(set(seeds)) > 0 and all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds)
    if not ok:
        raise ValueError(f"profile {profile!r}: seeds must be whole numbers in [0, 2**63), each once, got {seeds!r}")


def train_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields a profile's row sets (every other field keeps its default)."""
    return {k: v for k, v in settings.items() if k in TRAIN_FIELDS and k not in PER_RUN_FIELDS}


def run_path(path: str | Path) -> str:
    """A run folder (or a file in it) as a result records it: relative to the checkout, and one in
    a run cache outside it ($HIPCORE_RUNS) as runs/<folder>: where a machine keeps its cache is no
    part of a result."""
    named = relative(path)
    cache, resolved = default_runs_dir().resolve(), Path(path).resolve()
    if Path(named).is_absolute() and resolved.is_relative_to(cache):
        return (Path("runs") / resolved.relative_to(cache)).as_posix()
    return named


def precision_here(requested: str = "auto") -> str:
    """The precision a run started here computes for `requested` (a profile's 'auto': this
    machine's, by its hardware): the one place a job or an arm resolves it."""
    return resolve_precision(requested, pick_device("auto"))


def train_configs(arm: Arm, seed: int, settings: Mapping[str, Any], *, dataset: str,
                  data_dir: str | None = None, data_options: Mapping[str, Any] | None = None,
                  runs_dir: Path | None = None, precision: str | None = None
                  ) -> tuple[TrainConfig | None, TrainConfig]:
    """The (MAE pretraining or None, supervised) TrainConfigs of one arm and seed: the
    profile's overrides of TrainConfig (`train_overrides`), the arm's model and order, quiet.
    `precision` names the one its runs compute, as decided elsewhere (a converged job's record:
    what its runs were, whatever this machine resolves); None: the profile's, resolved here."""
    runs_dir = default_runs_dir() if runs_dir is None else Path(runs_dir)   # <home>/runs: never site-packages
    code = code_fingerprint()                           # run folders: <run_id>-<code fingerprint>
    base = TrainConfig(quiet=True).replace(**train_overrides(settings))
    base = base.replace(dataset=dataset, data_dir=None if data_dir is None else str(data_dir),
                        ordering=arm.ordering, data_options=dict(data_options or {}),
                        variant=arm.variant or base.variant, model={"position": arm.position, **arm.model},
                        seed=seed, precision=precision or precision_here(base.precision))
    pre = None
    data = "-data" + dataset_fingerprint(dataset, data_dir=data_dir,
                                         **dict(data_options or {}))  # changed data: a new run
    if arm.mae:
        pre = base.replace(task="pretrain", epochs=settings["pretrain_epochs"], mask_ratio=arm.mask_ratio,
                           lr=settings.get("pretrain_lr", base.lr),
                           label_smoothing=TrainConfig.label_smoothing)   # supervised only: one pretraining for all
        pre = pre.replace(run_dir=str(runs_dir / f"{pre.run_id}-{code}{data}"))
    # With the row's `plateau` each stage trains to its validation plateau, its epochs being the
    # cap; a FLOP-matched arm (arm.steps) keeps its fixed step count.
    sup = base.replace(task=arm.task, max_steps=arm.steps, **({"plateau": False} if arm.steps else {}))
    if pre is not None:
        # The checkpoint path is part of the config, so the run_id follows the pretraining.
        sup = sup.replace(init_from=str(Path(pre.run_dir) / "last.pt"), transfer=arm.transfer)
    return pre, sup.replace(run_dir=str(runs_dir / f"{sup.run_id}-{code}{data}"))


# ---- compute: what a run's steps cost, recorded with every run ----

FLOP_TOLERANCE = 0.01    # a FLOP-matched pair's recorded control / arm FLOPs must lie in 1 +/- this
_STEP_FLOPS: dict[str, int] = {}         # step_flops per process: one count per kind of step


def training_part(cfg: TrainConfig, train_data=None):
    """The examples the run `cfg` trains on: its subset of the training set without its
    validation examples (what the training loop's loader iterates)."""
    train_set, _ = load_data(cfg, train_data, train_data)          # the test split is not used here
    return split_validation(train_set, cfg)[0]


def steps_per_epoch(cfg: TrainConfig, train_part) -> int:
    """Optimiser steps per epoch, asked of the loader the training loop builds on `train_part`
    (full batches only); a clear error when not one batch fits."""
    if len(train_part) < cfg.batch_size:
        raise ValueError(f"batch {cfg.batch_size} is larger than the {len(train_part)} examples run "
                         f"{cfg.run_id} trains on (after its validation split)")
    return len(BatchLoader(train_part, cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True))


def step_flops(cfg: TrainConfig, train_part) -> int:
    """FLOPs of one training step of `cfg` (one full batch, forward and backward, counted by
    torch.utils.flop_counter) on `train_part`; counted once per kind of step and process."""
    from torch.utils.flop_counter import FlopCounterMode

    key = json.dumps([cfg.task, cfg.variant, cfg.model, cfg.batch_size, cfg.mask_ratio, cfg.norm_pix, cfg.dataset,
                      cfg.data_options, cfg.ordering, len(train_part), train_part.num_classes],
                     sort_keys=True, default=str)
    if key not in _STEP_FLOPS:
        with torch.random.fork_rng(devices=[]):
            model = step_model(cfg, train_part)
            inputs, labels = train_part.get_batch(torch.arange(min(cfg.batch_size, len(train_part))), train=True)
            counter = FlopCounterMode(display=False)
            with counter:
                loss, _, _ = compute_loss(model, model, inputs, labels, cfg)
                loss.backward()
        _STEP_FLOPS[key] = int(counter.get_total_flops())
    return _STEP_FLOPS[key]


def flop_record(stage: str, cfg: TrainConfig, steps: int, train_data=None) -> dict[str, int]:
    """What one stage ('train_' classification, 'pretrain_' MAE) of a run used: its steps taken, the
    FLOPs of one step and their product."""
    per_step = step_flops(cfg, training_part(cfg, train_data))
    return {f"{stage}steps_taken": steps, f"{stage}step_flops": per_step, f"{stage}flops": steps * per_step}


def flop_pairs(rows: list[dict[str, Any]], where: str = "these runs") -> list[dict[str, Any]]:
    """Every FLOP-matched run (a row with `matches`, or with fixed `steps`) beside the run of the
    arm it matches at its seed: {seed, control, arm, control_flops, arm_flops, ratio}. A
    ValueError naming `where` when a control names no arm, its arm has no run at that seed, or
    either recorded no FLOPs."""
    runs = {(r["arm"], r["seed"]): r for r in rows}
    pairs = []
    for row in rows:
        if not (row.get("matches") or row.get("steps")):
            continue
        arm, seed, target = row["arm"], row["seed"], row.get("matches")
        if not target:
            raise ValueError(f"{where}: {arm!r} trains a fixed number of steps (a FLOP-matched control) "
                             "but names no arm it matches")
        other = runs.get((target, seed))
        if other is None:
            raise ValueError(f"{where}: {arm!r} is FLOP-matched to {target!r}, which has no run for seed {seed}")
        for r in (row, other):
            if not r.get("flops"):
                raise ValueError(f"{where}: {r['arm']!r} (seed {seed}) records no FLOPs, so the FLOP-matched "
                                 f"pair {arm!r} / {target!r} cannot be checked")
        pairs.append({"seed": seed, "control": arm, "arm": target, "control_flops": row["flops"],
                      "arm_flops": other["flops"], "ratio": row["flops"] / other["flops"]})
    return pairs


def check_flop_matched(rows: list[dict[str, Any]], where: str = "these runs") -> None:
    """A ValueError unless every FLOP-matched run recorded FLOPs within 1 +/- FLOP_TOLERANCE of
    those of the arm it matches, seed by seed (`flop_pairs`)."""
    for pair in flop_pairs(rows, where):
        if abs(pair["ratio"] - 1) > FLOP_TOLERANCE:
            raise ValueError(f"{where}: {pair['control']!r} is labelled FLOP-matched to {pair['arm']!r}, but seed "
                             f"{pair['seed']} recorded {pair['ratio']:.4f} times its FLOPs "
                             f"(allowed: 1 +/- {FLOP_TOLERANCE:g})")


# Notebooks sharing a run cache (two started at once) wait for a run another one is training,
# then resume its finished checkpoint, instead of failing: up to a day, the longest profile run.
SHARED_RUN_WAIT_S = 24 * 3600.0


def sized_from_record(arm: Arm, seed: int, settings: Mapping[str, Any], matched_row: Mapping[str, Any],
                      train_data=None, **data: Any) -> Arm:
    """The FLOP-matched control `arm` with the supervised steps whose FLOPs come nearest those its
    arm recorded for this seed (`matched_row`, as run_arm returned it): with the plateau rule on,
    the arm may stop before the cap its planned budget assumed."""
    if not matched_row.get("flops"):
        raise ValueError(f"{arm.matches!r} (seed {seed}) records no FLOPs, so {arm.label!r} cannot be matched to it")
    _, sup = train_configs(arm, seed, settings, **data)
    per_step = step_flops(sup, training_part(sup, train_data))
    return arm.replace(steps=max(1, round(matched_row["flops"] / per_step)))


def run_arm(arm: Arm, seed: int, settings: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """Train one arm for one seed (reusing finished runs); returns a flat row of its results.
    options: dataset, data_dir, data_options, runs_dir, train_data, test_data, matched_row."""
    return run_arm_results(arm, seed, settings, **options)[0]


def run_arm_results(arm: Arm, seed: int, settings: Mapping[str, Any], *, dataset: str,
                    data_dir: str | None = None, data_options: Mapping[str, Any] | None = None,
                    runs_dir: Path | None = None, train_data=None, test_data=None,
                    matched_row: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[RunResult]]:
    """run_arm's row and the RunResult of each stage (MAE pretraining first, when the arm has it).
    A FLOP-matched arm given the row of the arm it matches (`matched_row`) trains the steps that
    row's recorded FLOPs call for (`sized_from_record`); its row keeps the planned `steps`."""
    data = dict(dataset=dataset, data_dir=data_dir, data_options=data_options, runs_dir=runs_dir)
    planned = arm
    if arm.matches and matched_row is not None:
        arm = sized_from_record(arm, seed, settings, matched_row, train_data, **data)
    pre_cfg, sup_cfg = train_configs(arm, seed, settings, **data)
    row: dict[str, Any] = {"arm": arm.label, "seed": seed, **arm_settings(planned, settings), "pretrain_seconds": 0.0,
                           "pretrain_flops": 0}
    if arm.matches:
        row["matches"] = arm.matches
    if pre_cfg is not None:
        pre = train(pre_cfg, train_data=train_data, test_data=test_data, wait_s=SHARED_RUN_WAIT_S)
        row.update(pretrain_test_loss=pre.metrics.get("test_loss"), pretrain_seconds=pre.wall_time,
                   **flop_record("pretrain_", pre_cfg, pre.steps, train_data))
    sup = train(sup_cfg, train_data=train_data, test_data=test_data, wait_s=SHARED_RUN_WAIT_S)
    row.update(**test_scores(sup.metrics), test_loss=sup.metrics["test_loss"],
               train_seconds=sup.wall_time, train_examples_per_s=sup.throughput, precision=sup.precision,
               run_dir=run_path(sup.run_dir), checkpoint=run_path(sup.last_checkpoint),
               **flop_record("train_", sup_cfg, sup.steps, train_data))
    row["total_seconds"] = row["pretrain_seconds"] + row["train_seconds"]
    row["flops"] = row["pretrain_flops"] + row["train_flops"]         # the run's FLOPs, MAE pretraining included
    if sup.converged is not None:                     # with a validation set: whether each stage reached its plateau
        row.update(epochs_run=sup.epochs_run, converged=sup.converged)
        if pre_cfg is not None:
            row.update(pretrain_epochs_run=pre.epochs_run, pretrain_converged=pre.converged,
                       pretrain_run_dir=run_path(pre.run_dir))
    return row, ([pre, sup] if pre_cfg is not None else [sup])


# A segmentation run's scores on its test set (as percentages in a run's row): mean IoU over
# classes, background included, and pixel accuracy (hipcore.train.dense).
DENSE_SCORES = ("test_miou", "test_pixel_accuracy")


def test_scores(metrics: Mapping[str, float]) -> dict[str, float]:
    """A run's test scores in %: top-1 for a classifier, DENSE_SCORES for a segmentation."""
    if "test_accuracy" in metrics:
        return {"test_accuracy": 100.0 * metrics["test_accuracy"]}
    return {key: 100.0 * metrics[key] for key in DENSE_SCORES}


# A row's headline test score (its key) and what a reader calls it: top-1, else a segmentation's mIoU.
HEADLINE_SCORES = {"test_accuracy": "test top-1", "test_miou": "test mIoU"}


def score_key(row: Mapping[str, Any]) -> str | None:
    """The key of the row's headline score (HEADLINE_SCORES' first it holds), or None."""
    return next((key for key in HEADLINE_SCORES if row.get(key) is not None), None)


def score_of(row: Mapping[str, Any]) -> float:
    """A run's headline test score in %: top-1, or a segmentation's mIoU."""
    key = score_key(row)
    if key is None:
        raise KeyError(f"a row with neither {' nor '.join(HEADLINE_SCORES)}: {sorted(row)}")
    return row[key]


def score_name(row: Mapping[str, Any]) -> str:
    """What score_of reads from the row: 'test top-1', or a segmentation's 'test mIoU'."""
    return HEADLINE_SCORES[score_key(row) or "test_accuracy"]


def arm_settings(arm: Arm, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that tell an arm from the others (hipcore.results reads them from arms.csv):
    ordering None is the dataset's default; transfer and mask_ratio apply to MAE arms only."""
    return {"ordering": arm.ordering, "position": arm.position, "mae": arm.mae,
            "transfer": arm.transfer if arm.mae else None, "mask_ratio": arm.mask_ratio if arm.mae else None,
            "steps": arm.steps, "variant": arm.variant or settings.get("variant", TrainConfig.variant)}


def write_arms(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """arms.csv: one row per arm of `rows` (as run_arm returns them) with its ARM_SETTINGS."""
    arms: dict[str, dict[str, Any]] = {}
    for row in rows:
        mine = {k: row[k] for k in ARM_SETTINGS}
        if arms.setdefault(row["arm"], mine) != mine:
            raise ValueError(f"arm {row['arm']!r} ran with two sets of settings: {arms[row['arm']]} and {mine}")
    path = Path(path)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(("arm",) + ARM_SETTINGS)
    writer.writerows([label, *("" if s[k] is None else s[k] for k in ARM_SETTINGS)] for label, s in arms.items())
    write_text_atomic(path, text.getvalue())
    return path


def write_runs(folder: str | Path, rows: list[dict[str, Any]]) -> Path:
    """<folder>/runs.json: the rows (as run_arm returns them) that the notebook's tables,
    figures and verdicts are computed from, checked as `read_runs` checks them (a run holding
    NaN stops here, named, rather than at the next read), and refused when a FLOP-matched pair
    is not matched in the FLOPs its runs recorded (`check_flop_matched`)."""
    results.check_runs(Path(folder) / RUNS, rows)
    path = Path(folder) / RUNS
    check_flop_matched(rows, str(path))
    write_text_atomic(path, json.dumps(rows, indent=1, default=str) + "\n")
    return path


def read_runs(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of <folder>/runs.json (`results.read_runs_file`: verified against the folder's
    SHA256SUMS, each (arm, seed) once, known arms and seeds, finite numbers in range); for a
    folder written before it existed, rebuilt from metrics.csv (test metrics per arm and seed)
    and arms.csv (each arm's settings)."""
    folder = Path(folder)
    if (folder / RUNS).is_file():
        return results.read_runs_file(folder / RUNS)
    settings = {}
    for row in results.read_csv(folder / "arms.csv", ("arm",) + results.ARM_SETTINGS).to_dict("records"):
        settings[row["arm"]] = {k: (None if v == "" else {"True": True, "False": False}.get(v, v))
                                for k, v in row.items() if k != "arm"}
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    per_arm: dict[str, dict[str, float]] = {}        # split 'model': parameter counts, no seed
    metrics = results.read_csv(folder / "metrics.csv", ("run_id", "seed", "split", "metric", "value"))
    results.check_unique(folder / "metrics.csv", metrics, ["run_id", "seed", "split", "metric"])
    for row in metrics.to_dict("records"):
        if row["split"] == "model" and row["run_id"] in settings:
            per_arm.setdefault(row["run_id"], {})[row["metric"]] = int(float(row["value"]))
        if row["split"] == "test" and row["run_id"] in settings and row["seed"] != "":
            key = (row["run_id"], int(row["seed"]))
            run = runs.setdefault(key, {"arm": key[0], "seed": key[1], **settings[key[0]]})
            run.update(mask_ratio=None if run["mask_ratio"] is None else float(run["mask_ratio"]),
                       steps=None if run["steps"] is None else int(run["steps"]))
            run[row["metric"]] = float(row["value"])
    if not runs:
        raise ValueError(f"{folder}: no runs in its metrics.csv")
    rows = [{**run, **per_arm.get(run["arm"], {})} for run in runs.values()]
    results.check_runs(folder / "metrics.csv", rows)
    return rows


def arm_parameters(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{arm: {'parameters': n, 'classifier_parameters': m}} from rows that carry the counts."""
    return {r["arm"]: {k: r[k] for k in ("parameters", "classifier_parameters")}
            for r in rows if "parameters" in r and "classifier_parameters" in r}


Side = str | Mapping[str, float]        # an arm's label, or {label: weight} summed per seed


def per_seed(rows: list[dict[str, Any]], side: Side, metric: str = "test_accuracy") -> dict[int, float]:
    """{seed: value} of one arm, or of a weighted sum of arms ({'b': 1, 'a': -1} is b - a) over
    the seeds every one of them ran."""
    by_arm: dict[str, dict[int, float]] = {}
    for row in rows:
        by_arm.setdefault(row["arm"], {})[row["seed"]] = row[metric]
    weights = {side: 1.0} if isinstance(side, str) else dict(side)
    missing = [a for a in weights if a not in by_arm]
    if missing:
        raise KeyError(f"no results for arms {missing}; arms run: {sorted(by_arm)}")
    seeds = set.intersection(*(set(by_arm[a]) for a in weights))
    return {s: sum(w * by_arm[a][s] for a, w in weights.items()) for s in sorted(seeds)}


def record_pairs(path: Path, rows: list[dict[str, Any]], *, finding: str, claim: str, paper_key: str,
                 baseline: Side, treatment: Side, metric: str = "test_accuracy",
                 unit: str = "top-1 %", kind: str = "effect") -> int:
    """Append one comparisons.csv row per seed that both sides ran; returns how many.
    A side is an arm, or a weighted sum of arms (an interaction compares two effects)."""
    base, treat = per_seed(rows, baseline, metric), per_seed(rows, treatment, metric)
    seeds = sorted(set(base) & set(treat))
    arms = [side for part in (baseline, treatment) for side in ([part] if isinstance(part, str) else part)]
    for seed in seeds:
        converged, epochs = convergence([r for r in rows if r["arm"] in arms and r["seed"] == seed])
        append_comparison(path, finding=finding, claim=claim, paper_key=paper_key, metric=unit,
                          seed=seed, baseline=base[seed], treatment=treat[seed], kind=kind,
                          converged=converged, epochs=epochs)
    return len(seeds)


def convergence(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """('yes' | 'no' | '', epochs run 'a/b') of the runs a comparison rests on: 'yes' when each
    stage of each arm reached its validation plateau (a FLOP-matched arm, trained for fixed
    steps, counts as run to its budget), 'no' when one did not, '' when a run recorded nothing
    (the plateau rule was off)."""
    flags, epochs = [], []
    for row in rows:
        if row.get("steps"):                      # FLOP-matched: its length is the comparison's point
            continue
        for stage in ("pretrain_", ""):
            if f"{stage}converged" in row:
                flags.append(row[f"{stage}converged"])
                epochs.append(str(row[f"{stage}epochs_run"]))
        if "converged" not in row:
            flags.append(None)
    if not flags or None in flags:
        return "", ""
    return ("yes" if all(flags) else "no"), "/".join(epochs)


# Training settings shared by the image notebooks (01, 02, 03), so that an arm they have in
# common (HiP with MAE, raster order, seed 0, ...) is one cached run, not three. Each row holds
# only what differs from TrainConfig's defaults (the notebooks' rows add to these).
IMAGE_PROFILES: dict[str, dict[str, Any]] = {
    # Every profile validates (hipcore.train.validation): on val_size of the training images its
    # limit_train leaves unused (TrainConfig's 6,000; smoke's and binder's a few hundred, to stay
    # light), else on 10% of its training images carved out. Learning curves, the checkpoint
    # chosen, and whether each run reached its plateau (hipcore.train.plateau) are read from it,
    # never from the test set.
    # CI: a few hundred images, one seed; checks the plumbing, not the finding. Batches of 8
    # give 32 steps an epoch: a FLOP-matched control's whole steps then come within 1% of its arm's
    # FLOPs (at 64, 4 steps an epoch, half a step is 5%).
    "smoke": dict(epochs=1, pretrain_epochs=1, limit_train=256, limit_test=256, batch_size=8, warmup_epochs=0.5,
                  val_fraction=0.1, val_size=64),
    # Binder (2 GB, a share of a CPU): 1,000 training images, 1 + 1 epochs, one seed.
    "binder": dict(epochs=1, pretrain_epochs=1, limit_train=1000, limit_test=500, batch_size=64, warmup_epochs=0.5,
                   val_fraction=0.1, val_size=250),
    # 2 CPU cores: 6,000 training images (and 6,000 others to validate on), 8 MAE + 2 epochs, 3 seeds:
    # early training. To its validation plateau (results/plateau_check/quick: seed 0, bf16 on a
    # 2-core Xeon with AMX) notebook 01's arms need 16-28 classification epochs of 11-16 s and MAE
    # pretraining more than its 40-epoch cap (21 s each): about 38 minutes per seed for 01's five
    # arms alone, so the plateau does not fit in quick's 90 minutes on 2 cores and every quick
    # table says so.
    "quick": dict(epochs=2, pretrain_epochs=8, limit_train=6000, limit_test=2000, warmup_epochs=0.5,
                  seeds=(0, 1, 2), val_fraction=0.1),
    # The whole of Fashion-MNIST, each stage to its validation plateau (epochs: the caps):
    # hours on CPU, minutes on a GPU.
    "full": dict(variant="small5", epochs=60, pretrain_epochs=100, pretrain_lr=1.5e-3, warmup_epochs=2,
                 seeds=(0, 1, 2), val_fraction=0.1, plateau=True),
    # Each stage until the plateau rule stops it (epochs: the caps), on quick's 6,000 training
    # images, the whole 10,000-image test set evaluated at the checkpoint chosen on validation;
    # five seeds for the arms of a paper row, `other_seeds` for controls. A constant learning
    # rate after warm-up: under a cosine to the cap, MAE's loss falls until the cap, so its rule
    # never stops it, and a higher cap would change every curve. Trained by the converged queue
    # (python -m hipcore converge), one (notebook, arm, seed) job at a time.
    "converged": dict(epochs=60, pretrain_epochs=60, limit_train=6000, warmup_epochs=0.5, schedule="constant",
                      seeds=(0, 1, 2, 3, 4), val_fraction=0.1, plateau=True),
    # The paper's ImageNet setting (HiP-16 at 224 x 224, dataset='imagefolder'); for a GPU cluster.
    "paper": dict(variant="hip16", epochs=110, pretrain_epochs=200, batch_size=1024, lr=2e-3, pretrain_lr=1.5e-3,
                  warmup_epochs=10, seeds=(0, 1, 2), val_fraction=0.1),
}
IMAGE_TABLE = profiles(IMAGE_PROFILES)


def run_arms(arms: list[Arm], seeds: tuple[int, ...], settings: Mapping[str, Any],
             **kwargs: Any) -> list[dict[str, Any]]:
    """run_arm for every arm and seed, printing one line per run; returns the rows."""
    return run_plan([(arm, seed) for arm in arms for seed in seeds], settings, **kwargs)


def run_plan(plan: list[tuple[Arm, int]], settings: Mapping[str, Any], *,
             splits: Callable[[Arm, int], tuple[Any, Any]] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """run_arm for every (arm, seed) of the plan in its order; returns the rows. After each run
    it prints progress.run_line (how far, arm, seed, accuracy, seconds), the line `sweep` and
    `reproduce` show on the console. `splits(arm, seed)`, if given, supplies (train, test)."""
    print(estimate_line(plan, settings, splits, **kwargs), flush=True)
    rows = []
    for done, (arm, seed) in enumerate(plan, 1):
        if splits is not None:
            kwargs["train_data"], kwargs["test_data"] = splits(arm, seed)
        matched = next((r for r in rows if r["arm"] == arm.matches and r["seed"] == seed), None)
        row = run_arm(arm, seed, settings, matched_row=matched, **kwargs)
        print(run_line(done, len(plan), arm.label, seed, score_of(row), row["total_seconds"]), flush=True)
        rows.append(row)
    return rows


def estimate_line(plan: list[tuple[Arm, int]], settings: Mapping[str, Any],
                  splits: Callable[[Arm, int], tuple[Any, Any]] | None = None, *, train_data=None, test_data=None,
                  **data: Any) -> str:
    """How long the plan's runs not yet in the run cache take here (`estimate.plan_line`)."""
    jobs = []
    for arm, seed in plan:
        pair = splits(arm, seed) if splits is not None else (train_data, test_data)
        configs = [c for c in train_configs(arm, seed, settings, **data) if c is not None]
        jobs.append((configs, *pair))
    return plan_line(jobs)


def reconstruction_figure(model, test_data, *, mask_ratio: float, seed: int, count: int = 4,
                          source: str | None = None):
    """input | masked | reconstruction of the first `count` test images by an MAE model,
    masked with the evaluation masks of `seed` (as its pretraining evaluated them)."""
    from ..train import plot_reconstructions, reconstruct_examples

    rec = reconstruct_examples(model, test_data, list(range(count)), mask_ratio=mask_ratio, seed=seed)
    return plot_reconstructions(rec, title=f"MAE, mask ratio {mask_ratio:g}, seed {seed}"
                                           + (f" ({source})" if source else ""))


def shipped_reconstructions(shipped, test_data, count: int = 4):
    """reconstruction_figure from the shipped MAE model (a `hipcore.pretrained.Pair`), masked as
    in its pretraining; the test data must read as the model was trained (check_fits)."""
    from ..model import check_fits

    mae, _ = shipped.models()
    check_fits(mae, test_data.modalities, "the test data")
    return reconstruction_figure(mae, test_data, mask_ratio=shipped.mask_ratio, seed=shipped.seed, count=count,
                                 source=f"shipped weights {shipped.mae}")


def metric_rows(rows: list[dict[str, Any]], metrics=("test_accuracy", "test_loss", "train_examples_per_s",
                                                        "total_seconds")) -> list[dict[str, Any]]:
    """Tidy metric rows (run_id = the arm's label) for notebook.write_metrics."""
    return [{"run_id": row["arm"], "seed": row["seed"], "split": "test", "metric": m, "value": row[m]}
            for row in rows for m in metrics if row.get(m) is not None]
