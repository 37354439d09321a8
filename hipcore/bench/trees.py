"""Training speed of the real training loops: this checkout alone (`loop_rates`, per
precision, for notebook 05), or against another commit, measured side by side (`compare`).

`python -m hipcore bench-trees --against REV` exports REV's tree (`git archive`) next to a
scratch folder, then runs the real command line of each tree in turn,

    python -m hipcore train|pretrain --limit-train N --epochs 1 --threads T --quiet ...

alternating the trees for `repeats` rounds, each run in a fresh process and a fresh run
directory, so that a burst of load from elsewhere falls on both alike. Each run reports the
training examples per second its loop measured (steps only, no evaluation or start-up); the
result is the median per tree and task, and the ratio of the medians.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable

THROUGHPUT = re.compile(r"throughput=([0-9.]+) examples/s")
IMPORT_ROOT = Path(__file__).resolve().parents[2]      # the folder holding this hipcore/
TASKS = {"supervised": "train", "pretrain": "pretrain"}


class TreeError(RuntimeError):
    """A tree could not be exported, or one of its runs failed."""


def export(rev: str, into: Path, repo: Path | None = None) -> Path:
    """REV's committed tree from the checkout's git (`hipcore.locations`), unpacked under
    `into` (nothing of the working tree)."""
    if repo is None:
        from ..locations import home

        repo = home()
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


def run_once(tree: Path, task: str, run_dir: Path, *, limit_train: int, threads: int,
             extra: list[str], batch: int = 128) -> float:
    """Examples/s of one `python -m hipcore <task>` run of `tree` (a fresh process)."""
    command = [sys.executable, "-m", "hipcore", TASKS[task], "--limit-train", str(limit_train),
               "--limit-test", "256", "--epochs", "1", "--batch-size", str(batch), "--threads", str(threads),
               "--quiet", "--run-dir", str(run_dir), *extra]
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads))
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    found = THROUGHPUT.search(done.stdout)
    if done.returncode or not found:
        raise TreeError(f"{' '.join(command[2:])} in {tree} failed (exit {done.returncode}):\n"
                        f"{done.stderr[-2000:]}")
    return float(found.group(1))


def compare(against: str, *, tasks: tuple[str, ...] = ("supervised", "pretrain"), repeats: int = 2,
            limit_train: int = 2560, threads: int = 2, extra: dict[str, list[str]] | None = None,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Rows {task, tree, round, examples_per_s}, trees alternating within every round.

    extra: more command-line arguments per tree ('base', 'head'), e.g. a precision."""
    extra = extra or {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="hipcore-trees-") as scratch:
        trees = {"base": export(against, Path(scratch) / "base"), "head": IMPORT_ROOT}
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


def loop_rates(*, limit_train: int, threads: int, precisions: tuple[str, ...] = ("fp32",),
               tasks: tuple[str, ...] = ("supervised", "pretrain"), batch: int = 128) -> list[dict[str, Any]]:
    """Rows {task, precision, batch, examples_per_s} of this hipcore's training command (small3
    on Fashion-MNIST, one epoch of `limit_train` images), one fresh process each."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="hipcore-loops-") as scratch:
        for precision in precisions:
            for task in tasks:
                rate = run_once(IMPORT_ROOT, task, Path(scratch) / f"{task}-{precision}", limit_train=limit_train,
                                threads=threads, extra=["--precision", precision], batch=batch)
                rows.append({"task": task, "precision": precision, "batch": batch, "examples_per_s": rate})
    return rows


def markdown_loops(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    from ..results import markdown

    frame = pd.DataFrame(rows)
    return markdown(pd.DataFrame({
        "loop": frame["task"].map({"supervised": "classification", "pretrain": "MAE pretraining"}),
        "precision": frame["precision"], "training examples/s": frame["examples_per_s"].map("{:.1f}".format)}))
