"""`python -m hipcore ...`: one entry point; each subcommand's parser lives beside the code it
runs (an `add_commands(subparsers)` in its module), and this module only gathers them."""

from __future__ import annotations

import argparse
import sys

from .errors import HipcoreError


def build_parser() -> argparse.ArgumentParser:
    from . import __version__, converge, digests, gpu_reproduce, provenance, summary, sweep, variants
    from .bench import cli as bench_commands
    from .data import cli as data_commands
    from .experiments import export, plateau_budget, precision_parity, scaling
    from .train import cli as train_commands

    parser = argparse.ArgumentParser(prog="python -m hipcore", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hipcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (variants, data_commands, train_commands, bench_commands, summary, sweep, precision_parity,
                   scaling, export, plateau_budget, gpu_reproduce, converge, provenance, digests):   # --help's order
        module.add_commands(sub)
    return parser


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
