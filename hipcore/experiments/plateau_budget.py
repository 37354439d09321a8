"""How long an arm must train to reach its plateau on a profile's data, and what it reaches.

With several learning rates and warm-ups (`recipe_rows`), the same measurement is a recipe
check: each arm at each (lr, warm-up) to its plateau, one seed, so that no arm is compared
under a recipe tuned for another.

    python -m hipcore plateau-budget --arm hip-learned --profile quick --max-epochs 60

trains one arm for one seed with a validation set carved from the profile's training subset
and the plateau rule of `train.plateau` (MAE pretraining too, on its validation loss), then
reports per stage: epochs run, whether the rule stopped it (or the cap did), the best
validation top-1 (or loss), the test top-1 of the best-validation epoch and the seconds per
epoch (wall time of the run, evaluations included, over its epochs). With baselines=True the
reference baselines train on the same training part and test set, for comparison.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Mapping

from ..files import write_csv_atomic
from ..train import train
from . import baselines, common
from .image_arms import HIP_CLASSIFICATION, HIP_FOURIER, HIP_MAE, perceiver_arms

PERCEIVER_FOURIER, PERCEIVER_LEARNED = perceiver_arms("perceiver_small")
# The image notebooks' own arms (image_arms), so a budget run measures exactly what they train.
ARMS = {"hip-learned": HIP_CLASSIFICATION, "hip-fourier": HIP_FOURIER, "hip-mae": HIP_MAE,
        "perceiver-learned": PERCEIVER_LEARNED, "perceiver-fourier": PERCEIVER_FOURIER}


def plateau_configs(arm: common.Arm, seed: int, settings: Mapping[str, Any], *, max_epochs: int,
                    min_epochs: int, val_fraction: float, patience: int = 5, dataset: str = "fashion_mnist",
                    runs_dir: Path | None = None):
    """The arm's (pretraining or None, supervised) configs under the plateau rule, capped at
    max_epochs each, in the run cache beside the profile's own runs (other run ids)."""
    ruled = {**settings, "epochs": max_epochs, "pretrain_epochs": max_epochs, "val_fraction": val_fraction,
             "plateau": True, "min_epochs": min_epochs, "plateau_patience": patience}
    return common.train_configs(arm, seed, ruled, dataset=dataset, runs_dir=runs_dir)


def stage_row(stage: str, result, cfg) -> dict[str, Any]:
    m = result.metrics
    return {"stage": stage, "epochs_run": result.epochs_run, "cap": cfg.epochs, "converged": result.converged,
            "selected_epoch": result.selected_epoch,
            "best_val": 100 * m["val_accuracy"] if "val_accuracy" in m else m.get("val_loss"),
            "test": 100 * m["test_accuracy"] if "test_accuracy" in m else m.get("test_loss"),
            "seconds_per_epoch": result.wall_time / max(result.epochs_run, 1)}


def measure(arm_name: str, settings: Mapping[str, Any], *, seed: int = 0, max_epochs: int = 60,
            min_epochs: int = 4, val_fraction: float = 0.1, patience: int = 5, with_baselines: bool = False,
            runs_dir: Path | None = None, train_data=None, test_data=None) -> dict[str, Any]:
    """{'arm', 'stages': [row per stage], 'baselines': [rows]} for one arm and seed."""
    if arm_name not in ARMS:
        raise ValueError(f"unknown arm {arm_name!r}; known: {', '.join(ARMS)}")
    arm = ARMS[arm_name]
    pre, sup = plateau_configs(arm, seed, settings, max_epochs=max_epochs, min_epochs=min_epochs,
                               val_fraction=val_fraction, patience=patience, runs_dir=runs_dir)
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
    """The recipe rows as a CSV (RECIPE_FIELDS)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_csv_atomic(path, RECIPE_FIELDS, rows)


def cmd_plateau_budget(args) -> int:
    """Trains one arm of the image notebooks for one seed on a profile's data with a validation set
    carved from its training subset and the plateau rule (hipcore.train.plateau), capped at
    --max-epochs, then prints the epochs to the plateau, the best validation and its test
    top-1, and the seconds per epoch (MAE arms: for the pretraining as well)."""
    settings = dict(common.IMAGE_TABLE[args.profile], quiet=True)
    options = dict(seed=args.seed, max_epochs=args.max_epochs, min_epochs=args.min_epochs,
                   val_fraction=args.val_fraction, patience=args.patience, runs_dir=args.runs_dir)
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
        min_epochs=args.min_epochs, patience=args.patience, val_fraction=args.val_fraction, lr=args.lr,
        warmup_epochs=args.warmup_epochs) + f" --out {path.name}")
    print("wrote", path, "and its provenance.json")


def add_commands(sub) -> None:
    """`plateau-budget` on an argparse subparsers object."""
    from ..argtypes import non_negative_float, non_negative_int, positive_float, positive_int
    from ..notebook import PROFILES
    from ..train import TrainConfig

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
    budget.add_argument("--max-epochs", type=positive_int, default=60, help="the cap of each stage (default 60)")
    budget.add_argument("--min-epochs", type=positive_int, default=TrainConfig.min_epochs,
                        help=f"the rule waits this long (default {TrainConfig.min_epochs})")
    budget.add_argument("--patience", type=positive_int, default=5,
                        help="the rule judges at least this many last epochs (default 5)")
    budget.add_argument("--val-fraction", type=float, default=0.1,
                        help="of the training subset held out for validation (default 0.1)")
    budget.add_argument("--baselines", action="store_true", help="also train the reference baselines on the same data")
    budget.add_argument("--runs-dir", default=None,
                        help="the run cache (default: the checkout's runs/ or $HIPCORE_RUNS)")
    budget.set_defaults(func=cmd_plateau_budget)
