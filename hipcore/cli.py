"""`python -m hipcore ...`: one entry point; each subcommand lives beside the code it runs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from .errors import HipcoreError

SWEEP_EXAMPLE = "python -m hipcore sweep 03 -p mask_ratio 0.75 0.85 --seeds 0 1 2 --profile quick"


def dataset_name(text: str) -> str:
    """'fashion-mnist' -> 'fashion_mnist'."""
    return text.replace("-", "_")


def parse_shape(text: str) -> tuple[int, ...]:
    """'28x28x1' -> (28, 28, 1): a grid then channels."""
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 28x28x1 (grid then channels), got {text!r}")
    if len(shape) < 2 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"shape needs a grid and channels, all positive, got {text!r}")
    return shape


DEFAULT_CLASSES = 1000          # info's read-out when neither --classes nor --dataset is given: ImageNet's


def cmd_info(args: argparse.Namespace) -> int:
    """Parameters of every variant (or the ones named) for one input shape and head."""
    import torch

    from . import VARIANT_NAMES, ModalitySpec, build
    from .config import variant
    from .data.registry import num_classes

    names = args.variants or VARIANT_NAMES
    for name in names:
        variant(name)                                   # unknown names fail before any output
    classes = args.classes or DEFAULT_CLASSES
    head = f"{classes} classes" + ("" if args.classes else " (the default; --classes N or --dataset NAME sets it)")
    if args.dataset == "imagefolder" and args.data_dir is None:
        raise ValueError("--dataset imagefolder counts the class folders of --data-dir: give it, "
                         "or --classes N instead")
    if args.dataset is not None:
        classes = num_classes(args.dataset, args.data_dir)
        head = f"{classes} classes ({args.dataset})"
    elif args.data_dir is not None:
        raise ValueError("--data-dir goes with --dataset imagefolder")
    *grid, channels = args.input
    m = 1
    for n in grid:
        m *= n
    mods = {"image": ModalitySpec(m, channels, tuple(grid))}
    print(f"input {'x'.join(map(str, grid))} x {channels} = {m} inputs, {head}")
    print(f"{'variant':<24}{'blocks':>7}  {'groups per block':<34}{'parameters':>14}")
    for name in names:
        with torch.device("meta"):
            model = build(name, mods, num_classes=classes)
        groups = "-".join(str(b.groups) for b in model.config.blocks)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name:<24}{len(model.config.blocks):>7}  {groups:<34}{n:>14,}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """One forward and backward pass of a small HiP on random 28 x 28 images."""
    import torch

    from . import ModalitySpec, build

    torch.manual_seed(args.seed)
    model = build(args.variant, {"image": ModalitySpec(784, 1, (28, 28))}, num_classes=10)
    x = {"image": torch.randn(args.batch_size, 784, 1)}
    start = time.perf_counter()
    out = model(x)
    loss = out.logits.logsumexp(-1).mean() + out.reconstruction["image"].square().mean()
    loss.backward()
    seconds = time.perf_counter() - start
    print(f"{args.variant}: {sum(p.numel() for p in model.parameters()):,} parameters")
    for i, z in enumerate(out.latents):
        print(f"  block {i}: latents {tuple(z.shape)}  [B, G, K, D]")
    print(f"  reconstruction {tuple(out.reconstruction['image'].shape)}, logits {tuple(out.logits.shape)}")
    print(f"  forward + backward, batch {args.batch_size}: {seconds:.3f} s")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .summary import update_readme, write_summary

    if not Path(args.results_dir).is_dir():
        raise ValueError(f"--results-dir {args.results_dir} is not a folder")
    print(f"wrote {write_summary(args.results_dir, args.profile, args.out)}")
    if args.profile == "quick" and args.out is None and args.readme:
        status = update_readme(args.readme, args.results_dir, args.profile)
        if status:
            print(f"{args.readme}: its generated blocks {status}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import parse_value, sweep

    grid = {}
    for name, *values in args.param or []:
        if not values:
            raise ValueError(f"-p {name} needs at least one value")
        if name in grid:
            raise ValueError(f"-p {name} is given twice; list all its values after one -p")
        grid[name] = [parse_value(v) for v in values]
    target = sweep(args.notebook, grid, args.seeds, args.out, profile=args.profile)
    print(f"wrote {target}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .sweep import reproduce

    reproduce(args.profile)
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    from . import device, provenance
    from .experiments import precision_parity as parity
    from .locations import results_dir
    from .results import markdown

    fast = args.against or parity.fastest_precision()
    if fast == "fp32":
        print("precision parity does not apply here: fp32 is this machine's fastest precision "
              f"({device.cpu_name()}); it needs a GPU or a CPU with AMX-BF16 or AVX512-BF16")
        return 0
    out = Path(args.out) if args.out else results_dir() / "05_efficiency" / args.profile / "parity"
    start = time.perf_counter()
    rows = parity.run(args.profile, seeds=tuple(args.seeds) if args.seeds else None, against=fast)
    paths = parity.write(out, rows)
    provenance.write(out, parity.settings_for(args.profile, fast), wall_seconds=time.perf_counter() - start,
                     command=provenance.command("parity", profile=args.profile, seeds=args.seeds,
                                                     against=args.against))
    print(markdown(parity.verdict_table(out / "comparisons.csv")))
    print("wrote " + ", ".join(provenance.relative(p) for p in paths))
    return 0


def cmd_scaling(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import provenance
    from .experiments import regime, scaling
    from .locations import results_dir
    from .results import markdown

    settings = dict(scaling.TABLE[args.profile])
    if args.sides:
        settings["sides"] = tuple(args.sides)
    seeds = tuple(args.seeds) if args.seeds else tuple(settings["seeds"])
    out = Path(args.out) if args.out else results_dir() / "06_scaling" / args.profile
    start = time.perf_counter()
    if args.merge:
        missing = [p for p in args.merge if not Path(p).is_file()]
        if missing:
            raise ValueError(f"--merge: no such curve file(s): {', '.join(missing)}")
        parts = []
        for path in args.merge:
            try:
                parts.append(pd.read_csv(path))
            except (pd.errors.ParserError, UnicodeDecodeError):
                raise ValueError(f"--merge: {path} is not a CSV file") from None
        curve = scaling.merge(parts, names=list(args.merge))
    else:
        grid = scaling.run_grid(settings, seeds, runs_dir=args.runs_dir)
        curve = grid.curve
    maps = scaling.draw_longest(settings, seed=seeds[0], runs_dir=args.runs_dir) if args.maps else None
    written = scaling.write(out, curve, maps)
    if not args.merge:            # the regime beside the curve (parts run apart keep theirs in their folders)
        regime.write(out, grid.runs, grid.references, regime.curve_rows(grid.runs))
    merged = f"({len(args.merge)} parts)" if args.merge else None
    provenance.write(out, settings, wall_seconds=time.perf_counter() - start, command=provenance.command(
        "scaling", profile=args.profile, sides=args.sides, seeds=args.seeds, merge=merged, maps=args.maps))
    table = written.effects
    print(markdown(table.round(2)))
    print("first MAE length from which F1 is reproduced, per side:", scaling.first_reproduced(table))
    print("wrote " + ", ".join(provenance.relative(p) for p in written.paths))
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from . import provenance
    from .experiments.export import export, written_names
    from .pretrained import describe

    paths = export(args.profile, seed=args.seed, runs_dir=args.runs_dir, out=args.out)
    for name in written_names(paths):
        print(describe(name, paths[-1].parent))
    print("wrote " + ", ".join(provenance.relative(p) for p in paths))
    return 0


def cmd_reproduce_gpu(args: argparse.Namespace) -> int:
    from .gpu_reproduce import run

    outcome = run(args.profile, out=args.out, budget_seconds=args.budget_seconds, device=args.device,
                  seeds=None if args.seeds is None else tuple(args.seeds), parallel=args.parallel,
                  checkpoint_every=args.checkpoint_every, batch=args.batch)
    return 0 if not outcome["left"] else 3         # 3: stopped at the budget, run again to go on


def cmd_provenance_env(args: argparse.Namespace) -> int:
    from . import provenance

    state = provenance.git_state()
    if not state["commit"]:
        raise ValueError("provenance-env needs a git checkout: it names HEAD for a copy of this tree")
    if state["dirty"]:
        raise ValueError("the tree differs from HEAD: commit first, so the copy runs a commit's code")
    fingerprint = provenance.commit_fingerprint(state["commit"])
    print(f"{provenance.COMMIT_ENV}={state['commit']} {provenance.FINGERPRINT_ENV}={fingerprint}")
    return 0


def cmd_plateau_budget(args: argparse.Namespace) -> int:
    from .experiments import common, plateau_budget

    settings = dict(common.IMAGE_TABLE[args.profile], quiet=True)
    options = dict(seed=args.seed, max_epochs=args.max_epochs, min_epochs=args.min_epochs,
                   val_fraction=args.val_fraction, patience=args.patience, runs_dir=args.runs_dir)
    if args.lr or args.warmup_epochs or args.out:         # a recipe check: every arm x lr x warm-up
        rows = plateau_budget.recipe_rows(args.arm, settings, lrs=args.lr or [settings["lr"]],
                                          warmups=args.warmup_epochs or [settings["warmup_epochs"]], **options)
        if args.out:
            from . import provenance

            path = plateau_budget.write_recipe(args.out, rows)
            provenance.write(path.parent, settings, command=provenance.command(
                "plateau-budget", arm=args.arm, profile=args.profile, seed=args.seed, max_epochs=args.max_epochs,
                min_epochs=args.min_epochs, patience=args.patience, val_fraction=args.val_fraction, lr=args.lr,
                warmup_epochs=args.warmup_epochs) + f" --out {path.name}")
            print("wrote", path, "and its provenance.json")
        return 0
    for arm in args.arm:
        measured = plateau_budget.measure(arm, settings, with_baselines=args.baselines, **options)
        print("\n".join(plateau_budget.report_lines(measured)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import VARIANT_NAMES
    from .data.registry import DATASETS
    from .notebook import PROFILES

    parser = argparse.ArgumentParser(prog="python -m hipcore", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hipcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="parameter counts of the model variants",
                          description="Parameters of each variant for an input shape and a read-out head: "
                                      "--classes N, or a dataset's classes with --dataset.")
    info.add_argument("--input", type=parse_shape, default=(224, 224, 3),
                      help="input grid and channels, e.g. 28x28x1 (default 224x224x3)")
    head = info.add_mutually_exclusive_group()
    head.add_argument("--classes", type=positive_int, default=None,
                      help=f"classes of the read-out (default {DEFAULT_CLASSES}, ImageNet's)")
    head.add_argument("--dataset", type=dataset_name, choices=DATASETS,
                      help="count the read-out of this dataset's classes (imagefolder: with --data-dir)")
    info.add_argument("--data-dir", default=None,
                      help="the image folder whose class folders --dataset imagefolder counts")
    info.add_argument("variants", nargs="*", help=f"variant names (default: all): {', '.join(VARIANT_NAMES)}")
    info.set_defaults(func=cmd_info)

    demo = sub.add_parser("demo", help="one batch through a small HiP, with shapes and timing")
    demo.add_argument("--variant", default="small3", choices=VARIANT_NAMES, help="the model (default small3)")
    demo.add_argument("--batch-size", type=positive_int, default=32, help="random 28 x 28 images (default 32)")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="weights and inputs (default 0)")
    demo.set_defaults(func=cmd_demo)

    from .data.cli import add_subparser as add_data_commands

    add_data_commands(sub)

    from .train.cli import add_commands as add_train_commands

    add_train_commands(sub)

    from .bench.cli import add_commands as add_bench_commands

    add_bench_commands(sub)

    summary = sub.add_parser("summary", help="regenerate a profile's summary from its comparisons CSVs",
                             description="Writes results/SUMMARY.md for --profile quick (and the README's "
                                         "times), results/SUMMARY_<profile>.md for any other profile, or --out.")
    summary.add_argument("--results-dir", default="results", help="the results folder (default results)")
    summary.add_argument("--profile", default="quick", choices=PROFILES, help="whose results (default quick)")
    summary.add_argument("--out", default=None, help="write the summary here instead")
    summary.add_argument("--readme", default="README.md",
                         help="README whose generated times block to refresh (quick profile only; '' for none)")
    summary.set_defaults(func=cmd_summary)

    sweep = sub.add_parser("sweep", help="run a notebook over a grid of parameters and seeds",
                           description=f"Example: {SWEEP_EXAMPLE}. Every -p name must be one of the "
                                       "notebook's parameters; --seeds goes to its seed or seeds parameter. "
                                       "Writes one executed notebook and results folder per point and "
                                       "<out>/sweep_metrics.csv.")
    sweep.add_argument("notebook", help="path, or a name prefix such as 02")
    sweep.add_argument("-p", "--param", nargs="+", action="append", metavar=("NAME", "VALUE"),
                       help="a parameter and its values, read as Python literals where they parse (repeatable)")
    sweep.add_argument("--seeds", nargs="+", type=non_negative_int, default=None,
                       help="one point per seed (default: the notebook's own seeds)")
    sweep.add_argument("--profile", default=None, choices=PROFILES, help="default: the notebook's own")
    sweep.add_argument("--out", default="results/sweeps", help="folder for executed notebooks and results")
    sweep.set_defaults(func=cmd_sweep)

    parity = sub.add_parser("parity", help="top-1 and MAE loss of HiP + MAE in fp32 against the fastest precision",
                            description="Trains notebook 01's HiP + MAE arm in fp32 and in the machine's fastest "
                                        "precision (or --against) for each seed, judges the top-1 difference "
                                        "by the equivalence rule and draws the MAE loss curves. Writes "
                                        "results/05_efficiency/<profile>/parity/ (or --out).")
    parity.add_argument("--profile", default="quick", choices=("smoke", "binder", "quick", "full"),
                        help="the image notebooks' settings to train at (default quick)")
    parity.add_argument("--against", default=None, choices=("bf16", "fp16"),
                        help="the precision to compare with fp32 (default: what 'auto' picks here)")
    parity.add_argument("--seeds", nargs="+", type=non_negative_int, default=None,
                        help="default: the profile's seeds")
    parity.add_argument("--out", default=None,
                        help="the folder to write (default results/05_efficiency/<profile>/parity)")
    parity.set_defaults(func=cmd_parity)

    scaling = sub.add_parser("scaling", help="the F1 effect and position structure against MAE length and image side",
                             description="Trains the grid of notebook 06 (MAE epochs x image sides x seeds, with "
                                         "FLOP-matched controls) or merges curve.csv parts run apart (--merge), "
                                         "then writes curve.csv, effects.csv, structure.csv and the figures to "
                                         "results/06_scaling/<profile>/ (or --out).")
    scaling.add_argument("--profile", default="quick", choices=PROFILES, help="the grid and settings (default quick)")
    scaling.add_argument("--sides", nargs="+", type=positive_int, default=None,
                         help="image sides to run (default: the profile's; 28 is Fashion-MNIST's own)")
    scaling.add_argument("--seeds", nargs="+", type=non_negative_int, default=None, help="default: the profile's seeds")
    scaling.add_argument("--merge", nargs="+", default=None, metavar="CURVE_CSV",
                         help="merge these curve.csv files instead of training")
    scaling.add_argument("--maps", action="store_true",
                         help="also draw the position tables of the longest MAE run (needs its runs in the cache)")
    scaling.add_argument("--runs-dir", default=None,
                         help="the run cache (default: the checkout's runs/ or $HIPCORE_RUNS)")
    scaling.add_argument("--out", default=None, help="the folder to write (default results/06_scaling/<profile>)")
    scaling.set_defaults(func=cmd_scaling)

    weights = sub.add_parser("weights", help="export the shipped pretrained weights from the notebooks' run cache",
                             description="Writes the MAE-pretrained and the fine-tuned HiP of notebook 01's arm "
                                         "'HiP, MAE-learned positions' (one seed, from the run cache at --profile) "
                                         "to hipcore/weights/ with their manifest (checksums, configuration, test "
                                         "metric, source run), for hipcore.pretrained(name). Trains nothing: run "
                                         "notebook 01 at that profile first (make reproduce for quick).")
    weights.add_argument("--profile", default="quick", choices=("smoke", "binder", "quick", "full", "paper"),
                         help="the image notebooks' settings the runs were trained at (default quick)")
    weights.add_argument("--seed", type=non_negative_int, default=0, help="which seed's runs to export (default 0)")
    weights.add_argument("--runs-dir", default=None,
                         help="the run cache to read (default: $HIPCORE_RUNS, else runs/ of the checkout)")
    weights.add_argument("--out", default=None,
                         help="the folder to write (default: hipcore/weights/ of this checkout)")
    weights.set_defaults(func=cmd_weights)

    budget = sub.add_parser("plateau-budget", help="epochs one image arm needs to reach its validation plateau",
                            description="Trains one arm of the image notebooks for one seed on a profile's data "
                                        "with a validation set carved from its training subset and the plateau "
                                        "rule (hipcore.train.plateau), capped at --max-epochs, then prints the "
                                        "epochs to the plateau, the best validation and its test top-1, and the "
                                        "seconds per epoch (MAE arms: for the pretraining as well).")
    budget.add_argument("--arm", required=True, nargs="+", choices=sorted(plateau_budget_arms()), help="which arm(s)")
    budget.add_argument("--lr", type=positive_float, nargs="+", default=None,
                        help="peak learning rates to try (a recipe check; default: the profile's)")
    budget.add_argument("--warmup-epochs", type=non_negative_float, nargs="+", default=None,
                        help="warm-ups to try, in epochs (a recipe check; default: the profile's)")
    budget.add_argument("--out", default=None, help="write the rows of every arm x lr x warm-up to this CSV")
    budget.add_argument("--profile", default="quick", choices=PROFILES, help="whose data and recipe (default quick)")
    budget.add_argument("--seed", type=non_negative_int, default=0, help="default 0")
    budget.add_argument("--max-epochs", type=positive_int, default=60, help="the cap of each stage (default 60)")
    budget.add_argument("--min-epochs", type=positive_int, default=4, help="the rule waits this long (default 4)")
    budget.add_argument("--patience", type=positive_int, default=5,
                        help="the rule judges at least this many last epochs (default 5)")
    budget.add_argument("--val-fraction", type=float, default=0.1,
                        help="of the training subset held out for validation (default 0.1)")
    budget.add_argument("--baselines", action="store_true", help="also train the reference baselines on the same data")
    budget.add_argument("--runs-dir", default=None,
                        help="the run cache (default: the checkout's runs/ or $HIPCORE_RUNS)")
    budget.set_defaults(func=cmd_plateau_budget)

    gpu = sub.add_parser("reproduce-gpu", help="notebooks 01 and 03's verdict pairs, to their plateau, in time-boxed "
                                               "stretches (a GPU session's one command)",
                         description="Trains HiP + MAE, HiP with classification-learned positions and Perceiver "
                                     "IO (Fourier) for each seed, each stage to its validation plateau, several "
                                     "at a time, into OUT/runs; stops before --budget-seconds (exit 3) and goes "
                                     "on from OUT when run again; once all are done writes "
                                     "OUT/results/<notebook>/<profile>/ with provenance. Set the variables "
                                     "`python -m hipcore provenance-env` prints first, so the results name a "
                                     "verified commit.")
    gpu.add_argument("--profile", default="full", choices=("smoke", "binder", "quick", "full", "paper"),
                     help="the image notebooks' settings (default full)")
    gpu.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    gpu.add_argument("--out", required=True, help="the folder of runs and results; run again with it to go on")
    gpu.add_argument("--budget-seconds", type=float, required=True, help="stop before this much wall time")
    gpu.add_argument("--seeds", nargs="+", type=non_negative_int, default=None, help="default: the profile's")
    gpu.add_argument("--parallel", type=positive_int, default=2, help="jobs training at once (default 2)")
    gpu.add_argument("--batch", type=positive_int, default=128,
                     help="batch size; above 128 the large-batch recipe scales the learning rates by "
                          "sqrt(batch / 128) (hipcore.gpu_reproduce.large_batch)")
    gpu.add_argument("--checkpoint-every", type=positive_int, default=200,
                     help="steps between checkpoints inside an epoch: the most a stop can lose (default 200)")
    gpu.set_defaults(func=cmd_reproduce_gpu)

    env = sub.add_parser("provenance-env", help="the variables that let a copy of this tree prove its commit",
                         description="Prints HIPCORE_COMMIT=<HEAD> HIPCORE_CODE_FINGERPRINT=<its fingerprint> "
                                     "for a clean checkout. Set them before a run on a machine whose copy of "
                                     "the tree carries other git metadata (a GPU machine): its results are "
                                     "then recorded as verified when the code that ran is that commit's.")
    env.set_defaults(func=cmd_provenance_env)

    reproduce = sub.add_parser("reproduce", help="run every notebook at a profile into results/executed/<profile>/, "
                                                 "then regenerate that profile's summary")
    reproduce.add_argument("--profile", default="quick", choices=PROFILES, help="default quick")
    reproduce.set_defaults(func=cmd_reproduce)
    return parser


def plateau_budget_arms() -> tuple[str, ...]:
    from .experiments.plateau_budget import ARMS

    return tuple(ARMS)


# What a user can act on: the package's own errors, the ValueErrors it raises for values it
# refuses, and files that are missing or unreadable. A TypeError or KeyError is a bug in the
# package and keeps its traceback.
USER_ERRORS = (HipcoreError, ValueError, OSError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
