"""`python -m hipcore bench`: training speed and memory of HiP and flat Perceivers (the paper's F5)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..argtypes import thread_count


def add_commands(subparsers) -> None:
    """Add `bench` to an argparse subparsers object; its `func(args) -> int` runs it."""
    from .models import MODEL_NAMES
    from .suite import PROFILES

    bench = subparsers.add_parser(
        "bench", help="time a training step of HiP and Perceiver models against image size",
        description="Time one training step (forward, backward, AdamW) of each model at each image "
                    "side, with its peak memory and FLOPs; write metrics.csv, steps.csv, "
                    "summary.json and speed.png/svg to <results-dir>/05_efficiency/<profile>/.")
    bench.add_argument("--profile", default="quick", choices=tuple(PROFILES),
                       help="settings to start from (default quick; see hipcore.bench.suite.PROFILES)")
    bench.add_argument("--models", nargs="+", choices=MODEL_NAMES, help="models to run (default: the profile's)")
    bench.add_argument("--sides", nargs="+", type=int, help="image sides, e.g. 224 384")
    bench.add_argument("--batch", type=int, help="images per step")
    bench.add_argument("--repeats", type=int, help="timed steps per model and side")
    bench.add_argument("--max-step-s", type=float, help="skip a model whose step takes longer")
    bench.add_argument("--memory-limit-gb", type=float, help="report OOM past this much memory")
    bench.add_argument("--threads", type=thread_count,
                       help="torch threads (default: the profile's, else all cores)")
    bench.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                       help="precision of the steps (default: the profile's, auto: bf16 where this CPU "
                            "computes it natively, else fp32)")
    bench.add_argument("--checkpoint", action="store_true",
                       help="activation checkpointing in hipcore models (less memory, more time)")
    bench.add_argument("--results-dir", default="results", help="default: results")
    bench.set_defaults(func=run_bench)
    add_epochs_command(subparsers)


def add_epochs_command(subparsers) -> None:
    from .epochs import ARRANGEMENTS, PRECISIONS, VARIANTS

    epochs = subparsers.add_parser(
        "bench-epochs", help="where a training epoch's time goes; two 1-thread jobs against one 2-thread job",
        description="Train with python -m hipcore train at quick's sizes and split each epoch's wall time "
                    "into steps, loading, validation and the rest (epochs.csv); time a queue of runs as "
                    f"one job at a time or side by side ({', '.join(ARRANGEMENTS)}: queue.csv). Writes "
                    "<results-dir>/05_efficiency/epochs/<cpu>/ with its provenance.json.")
    epochs.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"default: {' '.join(VARIANTS)}")
    epochs.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=("fp32", "bf16"),
                        help=f"default: {' '.join(PRECISIONS)}")
    epochs.add_argument("--images", type=int, default=6000, help="training images of an epoch's run (default 6000)")
    epochs.add_argument("--queue-images", type=int, default=6000,
                        help="training images of each queued run, 2 epochs with validation (default 6000; "
                             "0: no queue timing)")
    epochs.add_argument("--rounds", type=int, default=1, help="queue timings per arrangement (default 1)")
    epochs.add_argument("--results-dir", default="results", help="default: results")
    epochs.set_defaults(func=run_epochs)


def run_epochs(args: argparse.Namespace) -> int:
    from .. import provenance
    from ..results import markdown
    from . import epochs

    out = Path(args.results_dir) / "05_efficiency" / "epochs" / epochs.cpu_slug()
    rows = epochs.epoch_rows(args.variants, args.precisions, images=args.images)
    paths = [epochs.write_csv(rows, out / "epochs.csv", epochs.EPOCH_COLUMNS)]
    print(markdown(epochs.frame(rows, epochs.EPOCH_COLUMNS)))
    if args.queue_images:
        queue = epochs.queue_rows(args.variants, args.precisions, rounds=args.rounds, images=args.queue_images)
        paths.append(epochs.write_csv(queue, out / "queue.csv", epochs.QUEUE_COLUMNS))
        print(markdown(epochs.frame(queue, epochs.QUEUE_COLUMNS)))
    paths.append(provenance.write(out, command=provenance.command(
        "bench-epochs", variants=args.variants, precisions=args.precisions, images=args.images,
        queue_images=args.queue_images, rounds=args.rounds)))
    print("\nwrote", ", ".join(str(p) for p in paths))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from .. import provenance
    from ..notebook import ParameterError
    from . import results, suite

    overrides = {"models": args.models, "sides": args.sides, "batch": args.batch, "repeats": args.repeats,
                 "max_step_s": args.max_step_s, "memory_limit_gb": args.memory_limit_gb, "threads": args.threads,
                 "precision": args.precision}
    settings = dict(suite.PROFILES[args.profile])
    settings.update({k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items() if v is not None})
    try:
        suite.check_settings(settings)
    except ParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run = suite.run(settings, options={"checkpoint": True} if args.checkpoint else None)
    out = Path(args.results_dir) / "05_efficiency" / args.profile
    paths = results.save(run, out)
    paths.append(provenance.write(out, {"precision": run.info["precision"]}, profile=args.profile,
                                  command=provenance.command("bench", profile=args.profile, models=args.models,
                                                             sides=args.sides, batch=args.batch,
                                                             repeats=args.repeats, threads=args.threads,
                                                             precision=args.precision,
                                                             checkpoint=args.checkpoint)))
    print(results.markdown_table(run))
    print()
    print(results.markdown_targets(results.targets(run)))
    print("\nwrote", ", ".join(str(p) for p in paths))
    return 0
