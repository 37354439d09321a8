"""Training examples/s of this checkout against another commit, measured side by side.

    python tools/bench_trees.py --against REV [--tasks supervised pretrain] [--repeats 2]

Exports REV's committed tree (`git archive`) into a scratch folder, then runs the real command
line of each tree in turn (`hipcore.bench.loops.run_once`), alternating the trees for
`repeats` rounds, each run in a fresh process and a fresh run directory, so that a burst of
load from elsewhere falls on both alike. The result is the median per tree and task, and the
ratio of the medians. A developer's tool: not part of the installed package.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent.parent          # the checkout holding tools/ and hipcore/
sys.path.insert(0, str(HERE))

from hipcore.bench.loops import LoopError, run_once  # noqa: E402
from hipcore.device import cpu_flags, cpu_name  # noqa: E402


class TreeError(RuntimeError):
    """A tree could not be exported, or one of its runs failed."""


def export(rev: str, into: Path, repo: Path | None = None) -> Path:
    """REV's committed tree from the checkout's git (`hipcore.locations`), unpacked under
    `into` (nothing of the working tree)."""
    repo = HERE if repo is None else repo
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev],
                             capture_output=True)
    if archive.returncode:
        raise TreeError(f"cannot export {rev!r}: {archive.stderr.decode().strip()}")
    into.mkdir(parents=True, exist_ok=True)
    archive_path = into / "tree.tar"
    archive_path.write_bytes(archive.stdout)
    with tarfile.open(archive_path) as tar:
        tar.extractall(into, filter="data")
    archive_path.unlink()
    return into


def compare(against: str, *, tasks: tuple[str, ...] = ("supervised", "pretrain"), repeats: int = 2,
            limit_train: int = 2560, threads: int = 2, extra: dict[str, list[str]] | None = None,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Rows {task, tree, round, examples_per_s}, trees alternating within every round.

    extra: more command-line arguments per tree ('base', 'head'), e.g. a precision."""
    extra = extra or {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="hipcore-trees-") as scratch:
        trees = {"base": export(against, Path(scratch) / "base"), "head": HERE}
        for round_ in range(repeats):
            for task in tasks:
                for name, tree in trees.items():
                    run_dir = Path(scratch) / f"run-{task}-{name}-{round_}"
                    rate = run_once(tree, task, run_dir, limit_train=limit_train, threads=threads,
                                    extra=extra.get(name, []))
                    rows.append({"task": task, "tree": name, "round": round_, "examples_per_s": rate})
                    log(f"round {round_ + 1}/{repeats} {task:<10} {name}: {rate:.1f} examples/s")
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task: the median examples/s of each tree and head / base."""
    out = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        med = {tree: statistics.median(r["examples_per_s"] for r in rows if r["task"] == task and r["tree"] == tree)
               for tree in ("base", "head")}
        out[task] = {**med, "ratio": med["head"] / med["base"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/bench_trees.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, metavar="REV", help="the commit to compare with, e.g. c1ee28c")
    parser.add_argument("--tasks", nargs="+", choices=("supervised", "pretrain"), default=["supervised", "pretrain"],
                        help="which loops to time (default: both)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of alternating runs (default 2)")
    parser.add_argument("--limit-train", type=int, default=2560, help="training images per run (default 2560)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                        help="this checkout's --precision (the other commit runs as it did)")
    args = parser.parse_args(argv)
    for name in ("repeats", "limit_train", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    flags = sorted(f for f in cpu_flags() if "bf16" in f or "fp16" in f or f.startswith("amx"))
    print(f"CPU: {cpu_name()}; low-precision flags: {', '.join(flags) or 'none'}")
    extra = {"head": ["--precision", args.precision]} if args.precision else {}
    try:
        rows = compare(args.against, tasks=tuple(args.tasks), repeats=args.repeats,
                       limit_train=args.limit_train, threads=args.threads, extra=extra)
    except (TreeError, LoopError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for task, r in ratios(rows).items():
        print(f"{task:<10} {args.against}: {r['base']:.1f}  this checkout: {r['head']:.1f} examples/s "
              f"(median of {args.repeats}): {r['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
