"""`python -m hipcore data ...`: fetch datasets, describe them, benchmark the data path."""

from __future__ import annotations

import argparse
import json
import sys

from hipcore.argtypes import positive_int as _positive_int
from hipcore.argtypes import thread_count
from hipcore.data.base import DataNotFoundError


def add_commands(subparsers) -> argparse.ArgumentParser:
    """Add the `data` command (fetch | info | bench) to an argparse subparsers object.

    The parsed namespace's `func(args) -> int` runs the chosen subcommand.
    """
    parser = subparsers.add_parser("data", help="fetch, describe and benchmark datasets")
    _populate(parser)
    return parser


def _populate(parser: argparse.ArgumentParser) -> None:
    from hipcore.data.orderings import IMAGE_ORDERINGS, POINT_ORDERINGS
    from hipcore.data.registry import DATASETS, dataset_name

    sub = parser.add_subparsers(dest="data_command", required=True)
    fetch = sub.add_parser("fetch", help="make a dataset available locally")
    fetch.add_argument("dataset", choices=["fashion-mnist", "fashion_mnist"], help="the dataset to fetch")
    fetch.add_argument("--no-download", action="store_true", help="do not try the official URL")
    fetch.add_argument("--no-install", action="store_true", help="do not try apt-get")
    fetch.add_argument("--timeout", type=float, default=15.0, help="download timeout in seconds (default 15)")
    fetch.add_argument("--into", default=None, metavar="DIR",
                       help="download into this folder (any you can write; no root needed) instead of the user "
                            "cache; set HIPCORE_DATA=DIR unless it is the user cache")
    fetch.add_argument("--base-url", default=None, metavar="URL",
                       help="a mirror of the official files (file:// works; default $HIPCORE_FASHION_MNIST_URL, "
                            "else the official address)")
    fetch.set_defaults(func=_fetch)
    info = sub.add_parser("info", help="load a dataset split and print its description")
    info.add_argument("dataset", type=dataset_name, choices=DATASETS, help="the dataset")
    info.add_argument("--split", default="train", choices=("train", "test"), help="default train")
    info.add_argument("--ordering", default=None, choices=tuple(dict.fromkeys(IMAGE_ORDERINGS + POINT_ORDERINGS)),
                      help=f"input order: images {'|'.join(IMAGE_ORDERINGS)}, points {'|'.join(POINT_ORDERINGS)} "
                           "(default: the dataset's)")
    info.add_argument("--data-dir", default=None, help="folder of the dataset's files (default: its usual places)")
    info.add_argument("--resolution", type=_positive_int, default=None,
                      help="imagefolder only (required there): the side images are resized to")
    info.set_defaults(func=_info)
    bench = sub.add_parser("bench", help="measure batches/s served (Fashion-MNIST, shapes3d)")
    bench.add_argument("--batch-size", type=_positive_int, default=128, help="examples per batch (default 128)")
    bench.add_argument("--batches", type=_positive_int, default=300, help="batches timed per case (default 300)")
    bench.add_argument("--threads", type=thread_count, default=None, help="torch threads (default: as is)")
    bench.add_argument("--json", default=None, help="also write the results to this file")
    bench.set_defaults(func=_bench)


def _fetch(args) -> int:
    from hipcore.data.fashion_mnist import fetch_fashion_mnist
    try:
        fetch_fashion_mnist(download=not args.no_download, install=not args.no_install,
                            timeout=args.timeout, into=args.into, base_url=args.base_url)
    except (DataNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _info(args) -> int:
    from hipcore.data.registry import load_dataset
    if (args.resolution is not None) != (args.dataset == "imagefolder"):
        problem = ("imagefolder needs --resolution, the side its images are resized to" if args.dataset == "imagefolder"
                   else f"--resolution applies to imagefolder only, not {args.dataset}")
        print(f"error: {problem}", file=sys.stderr)
        return 2
    options = {"resolution": args.resolution} if args.resolution else {}
    try:
        ds = load_dataset(args.dataset, args.split, ordering=args.ordering, data_dir=args.data_dir, **options)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(ds.describe(), indent=2))
    return 0


def _bench(args) -> int:
    from hipcore.data.bench import run_benchmarks
    try:
        results = run_benchmarks(batch_size=args.batch_size, batches=args.batches, threads=args.threads)
    except DataNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `hipcore data <fetch|info|bench> ...` from an argument list (without 'data')."""
    parser = argparse.ArgumentParser(prog="python -m hipcore data", description=__doc__)
    _populate(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
