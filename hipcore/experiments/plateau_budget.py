"""How long an arm must train to reach its plateau on a profile's data, and what it reaches.

With several learning rates and warm-ups (`recipe_rows`), the same measurement is a recipe
check: each arm at each (lr, warm-up) to its plateau, one seed, so that no arm is compared
under a recipe tuned for another.

    python -m hipcore plateau-budget --arm hip-learned --profile quick --max-epochs 60

trains one arm for one seed with the profile's validation set (hipcore.train.validation) and
the plateau rule of `train.plateau`, its settings TrainConfig's (MAE pretraining too, on its
validation loss), then reports per stage: epochs run, whether the rule stopped it (or the cap
did), the best validation top-1 (or loss), the test top-1 of the best-validation epoch and the
seconds per epoch (wall time of the run, evaluations included, over its epochs). With
baselines=True the reference baselines train on the same training part and test set. With
--out, beside the stages' plateau.csv, curves.csv holds every epoch of every stage: train loss,
validation top-1 or loss, learning rate, seconds, and the rule's trend with its upper bound
against the threshold, so a reader sees why each run stopped where it did.

    python -m hipcore plateau-rates --profile quick

prints the rule's simulated error rates (`train.plateau.rates`) at a profile's settings: its
validation size, the caps its plateau runs have, TrainConfig's rule.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..argtypes import positive_int
from ..files import write_csv_atomic
from ..train import TrainConfig, plateau, read_metrics, train
from ..train.validation import SPARE, digest_size, source
from . import baselines, common
from .image_arms import HIP_CLASSIFICATION, HIP_FOURIER, HIP_MAE, perceiver_arms

PERCEIVER_FOURIER, PERCEIVER_LEARNED = perceiver_arms("perceiver_small")
# The image notebooks' own arms (image_arms), so a budget run measures exactly what they train.
ARMS = {"hip-learned": HIP_CLASSIFICATION, "hip-fourier": HIP_FOURIER, "hip-mae": HIP_MAE,
        "perceiver-learned": PERCEIVER_LEARNED, "perceiver-fourier": PERCEIVER_FOURIER}


DEFAULT_CAP = 60            # epochs of each stage, unless the profile's plateau runs have their own caps
# A train-loss row (with its learning rate) every step: each epoch's last step gives its rate.
LOG_EVERY = 1


def plateau_configs(arm: common.Arm, seed: int, settings: Mapping[str, Any], *, max_epochs: int,
                    min_epochs: int | None, val_fraction: float, dataset: str = "fashion_mnist",
                    runs_dir: Path | None = None):
    """The arm's (pretraining or None, supervised) configs under the plateau rule, capped at
    max_epochs each, in the run cache beside the profile's own runs (other run ids); the rule's
    settings are TrainConfig's (min_epochs too, where None). The learning rate is constant after
    warm-up, as in the converged profile: under a cosine to the cap, the cap would shape the curve
    and MAE's loss would fall until the cap."""
    ruled = {**settings, "epochs": max_epochs, "pretrain_epochs": max_epochs, "val_fraction": val_fraction,
             "plateau": True, "schedule": "constant", "log_every": LOG_EVERY,
             **({} if min_epochs is None else {"min_epochs": min_epochs})}
    return common.train_configs(arm, seed, ruled, dataset=dataset, runs_dir=runs_dir)


def stage_row(stage: str, result, cfg) -> dict[str, Any]:
    """One stage's summary, with its per-epoch `curve` (`curve_rows`)."""
    m = result.metrics
    return {"stage": stage, "epochs_run": result.epochs_run, "cap": cfg.epochs, "converged": result.converged,
            "selected_epoch": result.selected_epoch,
            "best_val": 100 * m["val_accuracy"] if "val_accuracy" in m else m.get("val_loss"),
            "test": 100 * m["test_accuracy"] if "test_accuracy" in m else m.get("test_loss"),
            "seconds_per_epoch": result.wall_time / max(result.epochs_run, 1),
            "curve": curve_rows(Path(result.run_dir), cfg)}


def _by_epoch(rows: list[dict[str, Any]], split: str, metric: str) -> dict[int, float]:
    return {r["epoch"]: r["value"] for r in rows if r["split"] == split and r["metric"] == metric}


def curve_rows(run_dir: Path, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Per epoch of a finished run: train loss, validation top-1 (%) or loss, the learning rate
    of its last step, its wall seconds (evaluations included), and the plateau rule's view: the
    trend over its window, the trend's upper bound and the threshold it must fall below."""
    rows, timing = read_metrics(run_dir), read_metrics(run_dir / "timing.csv")
    supervised = cfg.task == "supervised"
    mode, rule = ("accuracy" if supervised else "loss"), plateau.Rule.of(cfg)
    val = _by_epoch(rows, "val", "accuracy" if supervised else "loss")
    ends = {r["epoch"]: r["step"] for r in rows if r["split"] == "val"}
    lrs = {r["step"]: r["value"] for r in rows if r["split"] == "train" and r["metric"] == "lr"}
    losses, elapsed = _by_epoch(rows, "train_epoch", "loss"), _by_epoch(timing, "time", "elapsed_seconds")
    flags = _by_epoch(rows, "plateau", "converged")
    examples = digest_size(_validation_digest(run_dir))
    history, curve = [], []
    for epoch in sorted(val):
        history.append(val[epoch])
        point = {"epoch": epoch, "train_loss": losses.get(epoch), "val_metric": "top-1 %" if supervised else "loss",
                 "val": 100 * val[epoch] if supervised else val[epoch], "lr": lrs.get(ends[epoch]),
                 "seconds": elapsed.get(epoch, np.nan) - elapsed.get(epoch - 1, 0.0),
                 "threshold": rule.threshold(mode), "converged": flags.get(epoch) == 1.0}
        if len(history) >= rule.window:
            gain, se = plateau.trend(np.asarray(history[-rule.window:]), mode, examples, rule.loss_cv)
            point.update(trend=float(gain), trend_bound=float(gain + plateau.z_score(rule.confidence) * se))
        curve.append(point)
    return curve


def _validation_digest(run_dir: Path) -> str:
    return json.loads((run_dir / "run.json").read_text())["data"]["validation"]


def measure(arm_name: str, settings: Mapping[str, Any], *, seed: int = 0, max_epochs: int = DEFAULT_CAP,
            min_epochs: int | None = None, val_fraction: float = 0.1, with_baselines: bool = False,
            runs_dir: Path | None = None, train_data=None, test_data=None) -> dict[str, Any]:
    """{'arm', 'stages': [row per stage], 'baselines': [rows]} for one arm and seed."""
    if arm_name not in ARMS:
        raise ValueError(f"unknown arm {arm_name!r}; known: {', '.join(ARMS)}")
    arm = ARMS[arm_name]
    pre, sup = plateau_configs(arm, seed, settings, max_epochs=max_epochs, min_epochs=min_epochs,
                               val_fraction=val_fraction, runs_dir=runs_dir)
    stages = []
    if pre is not None:
        stages.append(stage_row("MAE pretraining (validation loss)", train(pre, train_data=train_data,
                                                                            test_data=test_data), pre))
    stages.append(stage_row("classification (validation top-1 %)", train(sup, train_data=train_data,
                                                                          test_data=test_data), sup))
    rows = []
    if with_baselines:
        start = time.perf_counter()
        rows = baselines.run_baselines({seed: sup}, family="images", train_data=train_data, test_data=test_data)
        rows.append({"model": "(all baselines)", "seconds": time.perf_counter() - start})
    return {"arm": arm.label, "stages": stages, "baselines": rows}


def report_lines(measured: dict[str, Any]) -> list[str]:
    lines = [f"{measured['arm']}:"]
    for s in measured["stages"]:
        state = "plateau" if s["converged"] else "cap reached, not converged"
        lines.append(f"  {s['stage']}: {s['epochs_run']} epochs of at most {s['cap']} ({state}); "
                     f"best validation {s['best_val']:.4g} at epoch {s['selected_epoch']}, test there "
                     f"{s['test']:.4g}; {s['seconds_per_epoch']:.1f} s per epoch")
    for r in measured["baselines"]:
        if "test_accuracy" in r:
            lines.append(f"  baseline {r['model']}: test top-1 {r['test_accuracy']:.1f} %, "
                         f"train {r['train_accuracy']:.1f} %, {r['seconds']:.1f} s")
    return lines


RECIPE_FIELDS = ("arm", "lr", "warmup_epochs", "stage", "epochs_run", "cap", "converged", "selected_epoch",
                 "best_val", "test", "seconds_per_epoch")
CURVE_FIELDS = ("arm", "recipe_lr", "warmup_epochs", "stage", "epoch", "train_loss", "val_metric", "val", "lr",
                "seconds", "trend", "trend_bound", "threshold", "converged")


def recipe_rows(arm_names: list[str], settings: Mapping[str, Any], *, lrs: list[float], warmups: list[float],
                **options: Any) -> list[dict[str, Any]]:
    """`measure` for every arm x lr x warm-up (options as for measure); one row per stage, with
    the arm's label, lr and warm-up (the MAE stage's lr is the pretraining's: pretrain_lr)."""
    rows = []
    for name, lr, warmup in itertools.product(arm_names, lrs, warmups):
        recipe = {**settings, "lr": lr, "pretrain_lr": lr, "warmup_epochs": warmup}
        measured = measure(name, recipe, **options)
        rows += [{"arm": measured["arm"], "lr": lr, "warmup_epochs": warmup, **stage} for stage in measured["stages"]]
        print(f"{measured['arm']}, lr {lr:g}, warm-up {warmup:g}: " + "; ".join(
            f"{s['stage']} {s['best_val']:.4g} (test {s['test']:.4g}, {s['epochs_run']} epochs)"
            for s in measured["stages"]), flush=True)
    return rows


def write_recipe(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """The recipe rows as a CSV (RECIPE_FIELDS), and beside it curves.csv: every epoch of every
    stage (CURVE_FIELDS), where the rows carry their curves."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    points = [{"arm": r["arm"], "recipe_lr": r["lr"], "warmup_epochs": r["warmup_epochs"], "stage": r["stage"], **p}
              for r in rows for p in r.get("curve", ())]
    if points:
        write_csv_atomic(path.with_name(CURVES_FILE), CURVE_FIELDS, points)
    return write_csv_atomic(path, RECIPE_FIELDS, rows)


CURVES_FILE = "curves.csv"


def cmd_plateau_budget(args) -> int:
    """Trains one arm of the image notebooks for one seed on a profile's data with its validation
    set (hipcore.train.validation) and the plateau rule (hipcore.train.plateau, TrainConfig's),
    capped at --max-epochs, then prints the epochs to the plateau, the best validation and its
    test top-1, and the seconds per epoch (MAE arms: for the pretraining as well); with --out,
    curves.csv beside the CSV holds every epoch."""
    settings = dict(common.IMAGE_TABLE[args.profile], quiet=True)
    options = dict(seed=args.seed, max_epochs=args.max_epochs, min_epochs=args.min_epochs,
                   val_fraction=args.val_fraction, runs_dir=args.runs_dir)
    if args.lr or args.warmup_epochs or args.out:
        rows = recipe_rows(args.arm, settings, lrs=args.lr or [settings["lr"]],
                           warmups=args.warmup_epochs or [settings["warmup_epochs"]], **options)
        if args.out:
            write_recipe_with_provenance(args, rows, settings)
        return 0
    for arm in args.arm:
        print("\n".join(report_lines(measure(arm, settings, with_baselines=args.baselines, **options))))
    return 0


def write_recipe_with_provenance(args, rows: list[dict[str, Any]], settings: Mapping[str, Any]) -> None:
    from .. import provenance

    path = write_recipe(args.out, rows)
    provenance.write(path.parent, settings, command=provenance.command(
        "plateau-budget", arm=args.arm, profile=args.profile, seed=args.seed, max_epochs=args.max_epochs,
        min_epochs=args.min_epochs, val_fraction=args.val_fraction, lr=args.lr,
        warmup_epochs=args.warmup_epochs) + f" --out {path.name}")
    print("wrote", path, f"its {CURVES_FILE} and its provenance.json")


def add_commands(sub) -> None:
    """`plateau-budget` on an argparse subparsers object."""
    from ..argtypes import non_negative_float, non_negative_int, positive_float
    from ..notebook import PROFILES

    budget = sub.add_parser("plateau-budget", help="epochs one image arm needs to reach its validation plateau",
                            description=cmd_plateau_budget.__doc__)
    budget.add_argument("--arm", required=True, nargs="+", choices=sorted(ARMS), help="which arm(s)")
    budget.add_argument("--lr", type=positive_float, nargs="+", default=None,
                        help="peak learning rates to try (a recipe check; default: the profile's)")
    budget.add_argument("--warmup-epochs", type=non_negative_float, nargs="+", default=None,
                        help="warm-ups to try, in epochs (a recipe check; default: the profile's)")
    budget.add_argument("--out", default=None, help="write the rows of every arm x lr x warm-up to this CSV")
    budget.add_argument("--profile", default="quick", choices=PROFILES, help="whose data and recipe (default quick)")
    budget.add_argument("--seed", type=non_negative_int, default=0, help="default 0")
    budget.add_argument("--max-epochs", type=positive_int, default=DEFAULT_CAP,
                        help=f"the cap of each stage (default {DEFAULT_CAP})")
    budget.add_argument("--min-epochs", type=positive_int, default=None,
                        help="the rule waits this long (default: TrainConfig's, and a whole window)")
    budget.add_argument("--val-fraction", type=float, default=0.1,
                        help="validation's switch, and the part of the training subset carved out where the "
                             "dataset has fewer spare images than val_size (default 0.1)")
    budget.add_argument("--baselines", action="store_true", help="also train the reference baselines on the same data")
    budget.add_argument("--runs-dir", default=None,
                        help="the run cache (default: the checkout's runs/ or $HIPCORE_RUNS)")
    budget.set_defaults(func=cmd_plateau_budget)
    add_rates_command(sub)


# ---- the rule's simulated error rates at a profile's settings ----

@dataclass(frozen=True)
class RateSetting:
    """What the rule's rates depend on at a profile: its rule, validation size and caps."""

    profile: str
    rule: plateau.Rule
    source: str                     # validation.SPARE or validation.CARVED
    examples: int                   # validation examples
    caps: dict[str, int]            # {'accuracy': classification cap, 'loss': MAE cap}


def rate_setting(profile: str, train_images: int, max_epochs: int | None = None) -> RateSetting:
    """The image profile's plateau setting on a dataset of `train_images` training images: its
    validation (hipcore.train.validation), and the caps of its plateau runs, or `max_epochs`
    (DEFAULT_CAP, plateau-budget's, where its rule is off)."""
    if profile not in common.IMAGE_TABLE:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(common.IMAGE_TABLE)}")
    settings = common.IMAGE_TABLE[profile]
    cfg = TrainConfig(**common.train_overrides(settings))
    if not cfg.val_fraction:
        raise ValueError(f"profile {profile!r} validates nothing (val_fraction 0): the rule has no curve to judge")
    used = min(cfg.limit_train or train_images, train_images)
    kind, examples = source(cfg.val_size, cfg.val_fraction, used, train_images - used)
    own = {"accuracy": settings["epochs"], "loss": settings["pretrain_epochs"]} if cfg.plateau else {}
    caps = {mode: max_epochs or own.get(mode, DEFAULT_CAP) for mode in plateau.MODES}
    return RateSetting(profile, plateau.Rule.of(cfg), kind, examples, caps)


def profile_rates(profile: str, *, max_epochs: int | None = None, runs: int = 400,
                  train_images: int | None = None) -> list[str]:
    """`plateau.rates_line` for validation top-1 and the MAE loss at the image profile's
    `rate_setting` (train_images: the dataset's, Fashion-MNIST's by default)."""
    if train_images is None:
        from ..data import load_dataset

        train_images = len(load_dataset("fashion_mnist", "train"))
    at = rate_setting(profile, train_images, max_epochs)
    where = "spare" if at.source == SPARE else "carved out of the training subset"
    lines = [f"{profile}: validation on {at.examples:,} images ({where}); the rule of TrainConfig: "
             f"window {at.rule.window}, confidence {at.rule.confidence:g}"]
    lines += ["  " + plateau.rates_line(at.rule, mode, at.examples, at.caps[mode], runs=runs) for mode in plateau.MODES]
    return lines


def add_rates_command(sub: argparse._SubParsersAction) -> None:
    """`python -m hipcore plateau-rates`: its parser, beside its code."""
    rates = sub.add_parser("plateau-rates", help="the plateau rule's simulated error rates at a profile's settings",
                           description="Simulates the plateau rule (hipcore.train.plateau) on saturating curves "
                                       "with binomial (top-1) or relative (MAE loss) noise at the profile's "
                                       "validation size, and prints how often a curve still rising at the "
                                       "threshold is stopped before its cap and how often a flat one stops "
                                       "within 10 epochs.")
    rates.add_argument("--profile", default="quick", choices=sorted(common.IMAGE_TABLE), help="default quick")
    rates.add_argument("--max-epochs", type=positive_int, default=None,
                       help=f"the cap (default: the profile's plateau caps, else {DEFAULT_CAP})")
    rates.add_argument("--runs", type=positive_int, default=400, help="simulated runs per curve (default 400)")
    rates.set_defaults(func=cmd_rates)


def cmd_rates(args: argparse.Namespace) -> int:
    print("\n".join(profile_rates(args.profile, max_epochs=args.max_epochs, runs=args.runs)))
    return 0
