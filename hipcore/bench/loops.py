"""Training speed of the real training loops (notebook 05): this package's command line,

    python -m hipcore train|pretrain --limit-train N --epochs 1 --threads T --quiet ...

one fresh process and run directory per loop and precision. Each run reports the training
examples per second its loop measured (steps only, no evaluation or start-up). Comparing
two commits side by side is a developer's tool: tools/bench_trees.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

THROUGHPUT = re.compile(r"throughput=([0-9.]+) examples/s")
IMPORT_ROOT = Path(__file__).resolve().parents[2]      # the folder holding this hipcore/
TASKS = {"supervised": "train", "pretrain": "pretrain"}


class LoopError(RuntimeError):
    """A training run failed or reported no throughput."""


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
        raise LoopError(f"{' '.join(command[2:])} in {tree} failed (exit {done.returncode}):\n"
                        f"{done.stderr[-2000:]}")
    return float(found.group(1))


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
