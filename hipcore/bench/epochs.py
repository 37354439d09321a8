"""Where a training epoch's time goes, and whether a queue of runs finishes sooner as two jobs
of one thread each or as one job of two threads (notebook 05, the converged queue).

    epoch_rows(variants, precisions)     -> one row per (variant, precision): an epoch's seconds
    queue_rows(variants, precisions)     -> one row per (variant, precision, arrangement)

Both run the real command line, `python -m hipcore train`, in fresh processes at quick's sizes
(6,000 Fashion-MNIST training images, 6,000 others to validate on, batch 128). An epoch's row
reads the run's timing.csv at its last epoch (the first one also holds the process's start-up):

    wall        the epoch's wall seconds (elapsed_seconds from one epoch's end to the next)
    steps       forward, backward and update (train_seconds less load_seconds)
    loading     waiting for the batches (load_seconds)
    validation  the validation set's evaluation (eval_seconds)
    other       the rest: checkpoints, logs
    overhead    wall / (steps + validation) - 1: what the loop costs beyond its work

A queue's row trains `jobs` runs like a converged job's first epochs (quick's sizes, validation
every epoch), one after another at two threads (`one`), or all at once at one thread each (`two`,
as many processes as jobs), and reports the queue's wall seconds, start-up included (a few
seconds a process: short runs would measure mostly start-up, which `two` overlaps).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..device import cpu_name
from ..files import read_json
from ..results import read_csv
from ..train.validation import digest_size
from .loops import IMPORT_ROOT, LoopError

VARIANTS = ("small3", "perceiver_small")
PRECISIONS = ("fp32", "bf16")
EPOCH_COLUMNS = ("variant", "precision", "threads", "batch", "train_images", "validation_images", "steps_per_epoch",
                 "wall_s", "steps_s", "loading_s", "validation_s", "other_s", "overhead", "examples_per_s")
QUEUE_COLUMNS = ("variant", "precision", "arrangement", "jobs", "threads_per_job", "images_per_job", "epochs",
                 "wall_s", "examples_per_s")
ARRANGEMENTS = {"one": 2, "two": 1}          # name -> threads per job (two cores)


def train_command(variant: str, precision: str, run_dir: Path, *, threads: int, images: int, epochs: int,
                  validate: bool, batch: int = 128) -> list[str]:
    """`python -m hipcore train` of `variant` on `images` Fashion-MNIST images (quick's test subset)."""
    return [sys.executable, "-m", "hipcore", "train", "--variant", variant, "--precision", precision,
            "--limit-train", str(images), "--limit-test", "2000", "--epochs", str(epochs),
            "--batch-size", str(batch), "--threads", str(threads), "--val-fraction", "0.1" if validate else "0",
            "--quiet", "--run-dir", str(run_dir)]


def start(command: list[str], threads: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(IMPORT_ROOT), OMP_NUM_THREADS=str(threads))
    return subprocess.Popen(command, cwd=IMPORT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(process: subprocess.Popen) -> None:
    """Wait for a run; a failure is a LoopError with the end of its stderr."""
    _, err = process.communicate()
    if process.returncode:
        raise LoopError(f"{' '.join(process.args[2:])} failed (exit {process.returncode}):\n{err[-2000:]}")


def timing(run_dir: Path) -> dict[int, dict[str, float]]:
    """timing.csv's 'time' rows: {epoch: {metric: value}}."""
    rows: dict[int, dict[str, float]] = {}
    with open(run_dir / "timing.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "time":
                rows.setdefault(int(row["epoch"]), {})[row["metric"]] = float(row["value"])
    return rows


def breakdown(epochs: dict[int, dict[str, float]]) -> dict[str, float]:
    """The last epoch's seconds (module docstring) from timing.csv's cumulative rows."""
    last = max(epochs)
    now, before = epochs[last], epochs[last - 1]
    wall = now["elapsed_seconds"] - before["elapsed_seconds"]
    loading = now["load_seconds"] - before["load_seconds"]
    steps = now["train_seconds"] - before["train_seconds"] - loading
    validation = now["eval_seconds"]
    return {"wall_s": wall, "steps_s": steps, "loading_s": loading, "validation_s": validation,
            "other_s": wall - steps - loading - validation, "overhead": wall / (steps + validation) - 1}


def epoch_row(variant: str, precision: str, *, threads: int = 2, images: int = 6000, epochs: int = 2,
              batch: int = 128) -> dict[str, Any]:
    """One run of `epochs` epochs with validation; its last epoch's breakdown."""
    with tempfile.TemporaryDirectory(prefix="hipcore-epochs-") as scratch:
        run_dir = Path(scratch) / "run"
        finish(start(train_command(variant, precision, run_dir, threads=threads, images=images, epochs=epochs,
                                   validate=True, batch=batch), threads))
        parts = breakdown(timing(run_dir))
        validation_images = digest_size(read_json(run_dir / "run.json")["data"]["validation"])
    steps_per_epoch = images // batch
    return {"variant": variant, "precision": precision, "threads": threads, "batch": batch, "train_images": images,
            "validation_images": validation_images, "steps_per_epoch": steps_per_epoch, **parts,
            "examples_per_s": steps_per_epoch * batch / parts["wall_s"]}


def queue_row(variant: str, precision: str, arrangement: str, *, jobs: int = 2, images: int = 6000,
              epochs: int = 2) -> dict[str, Any]:
    """`jobs` runs with validation, one after another (`one`) or side by side (`two`)."""
    threads = ARRANGEMENTS[arrangement]
    with tempfile.TemporaryDirectory(prefix="hipcore-queue-") as scratch:
        commands = [train_command(variant, precision, Path(scratch) / f"job{k}", threads=threads, images=images,
                                  epochs=epochs, validate=True) for k in range(jobs)]
        started = time.perf_counter()
        if arrangement == "one":
            for command in commands:
                finish(start(command, threads))
        else:
            for process in [start(command, threads) for command in commands]:
                finish(process)
        wall = time.perf_counter() - started
    return {"variant": variant, "precision": precision, "arrangement": arrangement, "jobs": jobs,
            "threads_per_job": threads, "images_per_job": images, "epochs": epochs, "wall_s": wall,
            "examples_per_s": jobs * images * epochs / wall}


def epoch_rows(variants=VARIANTS, precisions=PRECISIONS, **kwargs: Any) -> list[dict[str, Any]]:
    return [epoch_row(v, p, **kwargs) for v in variants for p in precisions]


def queue_rows(variants=VARIANTS, precisions=PRECISIONS, *, rounds: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
    """Both arrangements `rounds` times, alternating, so that a burst of load elsewhere falls on both."""
    return [queue_row(v, p, a, **kwargs) for _ in range(rounds) for v in variants for p in precisions
            for a in ARRANGEMENTS]


def write_csv(rows: list[dict[str, Any]], path: Path, columns: tuple[str, ...]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({c: round(r[c], 4) if isinstance(r[c], float) else r[c] for c in columns} for r in rows)
    return path


def cpu_slug(cpuinfo: str = "/proc/cpuinfo") -> str:
    """A folder name for this CPU: its model name, family and model ('amd-epyc-f25-m17'), since
    a virtual machine's model name alone ('AMD EPYC') does not tell Zen 1 from Zen 4."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    name = "-".join("".join(c if c.isalnum() else " " for c in cpu_name().lower()).split()) or "cpu"
    family, model = fields.get("cpu family"), fields.get("model")
    return name + (f"-f{family}-m{model}" if family and model else "")


def frame(rows: list[dict[str, Any]], columns: tuple[str, ...]):
    """The rows as a table, seconds to two decimals."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(columns))
    return table.round({c: 2 for c in columns if c.endswith("_s")} | {"overhead": 3})


def read_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows a write_csv wrote (`results.read_csv`: signed, with `columns`), numbers as numbers."""
    import pandas as pd

    frame = read_csv(path, columns)
    for column in columns:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if not numbers.isna().any():
            frame[column] = numbers
    return frame.to_dict("records")


def epochs_text(folder: Path, made_on: str) -> str:
    """The README's sentences on one CPU's folder: the loop's overhead and the queue's arrangement."""
    epochs = read_rows(folder / "epochs.csv", EPOCH_COLUMNS)
    overheads = [r["overhead"] for r in epochs]
    small = next((r for r in epochs if r["variant"] == "small3" and r["precision"] == "bf16"), epochs[0])
    text = (f"Where an epoch's time goes (`python -m hipcore bench-epochs`, `results/05_efficiency/epochs/"
            f"{folder.name}/`, {made_on}): at quick's sizes ({small['steps_per_epoch']} steps of "
            f"{small['batch']}, {small['validation_images']:,} validation images) an epoch is its steps plus "
            f"validation within {100 * min(overheads):.1f}-{100 * max(overheads):.1f}% (small3 {small['precision']}: "
            f"{small['wall_s']:.1f} s, of which steps {small['steps_s']:.1f} s, validation "
            f"{small['validation_s']:.1f} s, waiting for batches {small['loading_s']:.2f} s).")
    if (folder / "queue.csv").is_file():
        queue = read_rows(folder / "queue.csv", QUEUE_COLUMNS)
        walls = {(r["variant"], r["precision"], r["arrangement"]): r["wall_s"] for r in queue}
        gains = [f"{v} {p} {walls[(v, p, 'one')] / walls[(v, p, 'two')]:.2f}x"
                 for v, p, a in walls if a == "two" and (v, p, "one") in walls]
        text += (" Two 1-thread jobs side by side against one 2-thread job at a time, a queue of two runs of "
                 f"{queue[0]['epochs']} epochs: {', '.join(gains)} sooner; the converged queue runs one job "
                 "per core.")
    return text
