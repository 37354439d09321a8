"""Accuracy parity of low precision: HiP + MAE trained in fp32 and in the machine's fastest
precision, seed by seed, on the image notebooks' settings.

The arm is notebook 01's "HiP, MAE-learned positions" (MAE pretraining, then classification),
trained once per precision and seed. The verdict is the equivalence rule of `hipcore.report`
(two one-sided tests against `MARGINS`), so parity is *shown* only when the interval of the
top-1 difference lies inside the margin; noise makes that harder, not easier. The MAE loss
curves of both precisions are drawn over each other.

Where fp32 is already the fastest precision (a CPU without AMX-BF16 or AVX512-BF16), the
comparison does not apply and nothing is trained: `fastest_precision` says so.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd

from ..device import pick_device, resolve
from ..plots import save_figure
from ..report import append_comparison, findings
from . import common
from .image_arms import HIP_MAE, load_splits

FINDING = "Precision parity: top-1, fastest precision minus fp32"
LOG_EVERY = 2            # a train-loss row every 2 steps: a curve even at smoke's 4 steps


def fastest_precision(device: str = "auto") -> str:
    """The precision 'auto' resolves to on this machine (by its hardware: hipcore.device.resolve)."""
    return resolve("auto", pick_device(device))


def settings_for(profile: str, precision: str) -> dict[str, Any]:
    """The image notebooks' settings of `profile`, in `precision`, with a dense loss log."""
    if profile not in common.IMAGE_TABLE:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(common.IMAGE_TABLE)}")
    return {**common.IMAGE_TABLE[profile], "precision": precision, "log_every": LOG_EVERY}


def run(profile: str, *, seeds: tuple[int, ...] | None = None, against: str | None = None,
        data_dir: str | None = None, runs_dir: Path | None = None) -> pd.DataFrame:
    """Train HIP_MAE in fp32 and in `against` (default: the fastest precision) for each seed.
    Returns one row per (precision, seed): test_accuracy (%), test_loss, pretrain_test_loss,
    examples/s of the classification and the MAE runs, seconds, and both run folders."""
    against = against or fastest_precision()
    seeds = tuple(common.IMAGE_TABLE[profile]["seeds"] if seeds is None else seeds)
    train_data, test_data = load_splits("fashion_mnist", data_dir, {})
    rows = []
    for precision in dict.fromkeys(("fp32", against)):
        settings = settings_for(profile, precision)
        for seed in seeds:
            row = common.run_arm(HIP_MAE, seed, settings, dataset="fashion_mnist", data_dir=data_dir,
                                 runs_dir=runs_dir, train_data=train_data, test_data=test_data)
            pre, _ = common.train_configs(HIP_MAE, seed, settings, dataset="fashion_mnist",
                                          data_dir=data_dir, runs_dir=runs_dir)
            rows.append({"precision": precision, **row, "pretrain_run_dir": pre.run_dir})
            print(f"    {precision}, seed {seed}: {row['test_accuracy']:.2f}% ({row['total_seconds']:.0f} s)",
                  flush=True)
    return pd.DataFrame(rows)


def mae_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """The MAE runs' train-loss rows: precision, seed, step, loss (from their metrics.csv)."""
    parts = []
    for _, row in rows.iterrows():
        metrics = pd.read_csv(Path(row["pretrain_run_dir"]) / "metrics.csv")
        train = metrics[(metrics["split"] == "train") & (metrics["metric"] == "loss")]
        parts.append(pd.DataFrame({"precision": row["precision"], "seed": row["seed"],
                                   "step": train["step"].to_numpy(), "loss": train["value"].to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def record(out: str | Path, rows: pd.DataFrame) -> Path:
    """comparisons.csv in `out`: one 'same' row per seed (top-1 of the fast precision against
    fp32; our own check, no paper key). Returns its path."""
    path = Path(out) / "comparisons.csv"
    path.unlink(missing_ok=True)
    fast = [p for p in rows["precision"].unique() if p != "fp32"]
    if not fast:
        raise ValueError("parity needs a precision other than fp32 to compare with")
    base = rows[rows["precision"] == "fp32"].set_index("seed")["test_accuracy"]
    treat = rows[rows["precision"] == fast[0]].set_index("seed")["test_accuracy"]
    for seed in sorted(set(base.index) & set(treat.index)):
        append_comparison(path, finding=FINDING, claim="same", paper_key="", metric="top-1 %",
                          seed=int(seed), baseline=float(base[seed]), treatment=float(treat[seed]),
                          converged="n/a")        # the same recipe in two precisions: no plateau needed
    return path


def verdict_table(path: str | Path) -> pd.DataFrame:
    """The parity finding as one row: seeds, mean difference, 90% interval, margin, verdict."""
    with open(path, newline="") as f:
        found = findings(list(csv.DictReader(f)), reference={})
    return pd.DataFrame([{"finding": x.finding, "seeds": x.seeds, "fp32 top-1 %": round(x.baseline, 2),
                          "fast top-1 %": round(x.treatment, 2), "difference": round(x.effect, 2),
                          "90% interval": f"[{x.low:+.2f}, {x.high:+.2f}]", "margin": f"±{x.margin:g}",
                          "verdict": x.verdict} for x in found])


def draw(rows: pd.DataFrame, curves: pd.DataFrame) -> plt.Figure:
    """Left: MAE train loss against step, each precision and seed. Right: top-1 per seed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    colours = dict(zip(rows["precision"].unique(), ("tab:blue", "tab:orange", "tab:green")))
    for (precision, seed), c in curves.groupby(["precision", "seed"], sort=False):
        left.plot(c["step"], c["loss"], color=colours[precision], alpha=0.8,
                  label=precision if seed == curves["seed"].min() else None)
    left.set(xlabel="MAE optimiser step", ylabel="MAE train loss (masked-pixel MSE)", title="MAE loss curves")
    left.legend()
    for precision, r in rows.groupby("precision", sort=False):
        right.plot(r["seed"], r["test_accuracy"], "o", color=colours[precision], label=precision)
    right.set(xlabel="seed", ylabel="test top-1 %", title="after fine-tuning", xticks=sorted(rows["seed"].unique()))
    right.legend()
    fig.tight_layout()
    return fig


def write(out: str | Path, rows: pd.DataFrame, meta: Mapping[str, Any] | None = None) -> list[Path]:
    """parity.csv (tidy: precision, seed, metric, value), curves.csv, comparisons.csv and the
    figure parity.png/.svg into `out`; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = ("test_accuracy", "test_loss", "pretrain_test_loss", "train_examples_per_s", "total_seconds")
    tidy = rows.melt(id_vars=["precision", "seed"], value_vars=[m for m in metrics if m in rows],
                     var_name="metric", value_name="value")
    tidy.to_csv(out / "parity.csv", index=False)
    curves = mae_curves(rows)
    curves.to_csv(out / "curves.csv", index=False)
    fig = draw(rows, curves)
    paths = [out / "parity.csv", out / "curves.csv", record(out, rows), *save_figure(fig, out / "parity")]
    plt.close(fig)
    return paths


def cmd_parity(args) -> int:
    """Trains notebook 01's HiP + MAE arm in fp32 and in the machine's fastest precision (or
    --against) for each seed, judges the top-1 difference by the equivalence rule and draws
    the MAE loss curves. Writes results/05_efficiency/<profile>/parity/ (or --out)."""
    import time

    from .. import device, provenance
    from ..locations import results_dir
    from ..results import markdown

    fast = args.against or fastest_precision()
    if fast == "fp32":
        print("precision parity does not apply here: fp32 is this machine's fastest precision "
              f"({device.cpu_name()}); it needs a GPU or a CPU with AMX-BF16 or AVX512-BF16")
        return 0
    out = Path(args.out) if args.out else results_dir() / "05_efficiency" / args.profile / "parity"
    start = time.perf_counter()
    rows = run(args.profile, seeds=tuple(args.seeds) if args.seeds else None, against=fast)
    paths = write(out, rows)
    provenance.write(out, settings_for(args.profile, fast), wall_seconds=time.perf_counter() - start,
                     command=provenance.command("parity", profile=args.profile, seeds=args.seeds,
                                                against=args.against))
    print(markdown(verdict_table(out / "comparisons.csv")))
    print("wrote " + ", ".join(provenance.relative(p) for p in paths))
    return 0


def add_commands(sub) -> None:
    """`parity` on an argparse subparsers object."""
    from ..argtypes import non_negative_int

    parity = sub.add_parser("parity", help="top-1 and MAE loss of HiP + MAE in fp32 against the fastest precision",
                            description=cmd_parity.__doc__)
    parity.add_argument("--profile", default="quick", choices=("smoke", "binder", "quick", "full"),
                        help="the image notebooks' settings to train at (default quick)")
    parity.add_argument("--against", default=None, choices=("bf16", "fp16"),
                        help="the precision to compare with fp32 (default: what 'auto' picks here)")
    parity.add_argument("--seeds", nargs="+", type=non_negative_int, default=None,
                        help="default: the profile's seeds")
    parity.add_argument("--out", default=None,
                        help="the folder to write (default results/05_efficiency/<profile>/parity)")
    parity.set_defaults(func=cmd_parity)
