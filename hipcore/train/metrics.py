"""What a run shows and leaves behind: tidy CSV rows, a progress bar, versions."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import machine
from ..errors import DiskFullError
from ..files import disk_full, temp_path, write_text_atomic
from ..version import __version__

COLUMNS = ("run_id", "seed", "epoch", "step", "split", "metric", "value")


class MetricsLogger:
    """Appends tidy rows (run_id, seed, epoch, step, split, metric, value) to a CSV file,
    flushed at every write so that a killed run loses nothing it logged. Disabled loggers
    (ranks other than 0) write nothing."""

    def __init__(self, path: str | os.PathLike, run_id: str, seed: int, enabled: bool = True):
        self.path, self.run_id, self.seed, self.enabled = Path(path), run_id, seed, enabled
        self._file = None

    def start(self, keep_until_step: int | None = None, drop_split: str | None = None) -> None:
        """Open the file: empty (a fresh run) or keeping only rows with step <= keep_until_step
        (a resumed run; later rows came after its checkpoint and will be logged again), less
        those of `drop_split` (rows the checkpoint does not record yet, logged again too)."""
        if not self.enabled:
            return
        rows = []
        if keep_until_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.reader(f) if len(r) == len(COLUMNS) and r[3].isdigit()
                        and int(r[3]) <= keep_until_step and r[4] != drop_split]
        tmp = temp_path(self.path)
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([COLUMNS, *rows])
        os.replace(tmp, self.path)
        self._file = open(self.path, "ab", buffering=0)      # unbuffered: each log() is one write

    def log(self, epoch: int, step: int, split: str, **metrics: float) -> None:
        """Append one row per metric, all in one write: a failed write (a full disk) is cut back
        to the file's previous end, so no half row survives, and is a DiskFullError naming it."""
        if not self.enabled:
            return
        text = io.StringIO(newline="")
        csv.writer(text).writerows((self.run_id, self.seed, epoch, step, split, name, repr(float(value)))
                                   for name, value in metrics.items())
        data, fd = text.getvalue().encode(), self._file.fileno()
        end = os.fstat(fd).st_size
        try:
            done = 0
            while done < len(data):                       # a raw write may take part of the bytes
                done += os.write(fd, data[done:])
        except OSError as error:
            os.ftruncate(fd, end)                         # no half row: back to the last whole one
            if disk_full(error, self.path.parent):
                raise DiskFullError(f"{self.path}: disk full while appending metrics rows; the file keeps "
                                    "every whole row logged before: free some space and rerun to resume") from None
            raise OSError(error.errno, f"{self.path}: cannot append metrics rows ({error.strerror})") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a metrics.csv (or a run directory's), values as floats."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update(seed=int(r["seed"]), epoch=int(r["epoch"]), step=int(r["step"]), value=float(r["value"]))
    return rows


def show_metric(name: str, value) -> str:
    """How the console shows one metric: accuracies (logged as fractions) as percentages,
    other floats with 4 significant digits, the rest as they are."""
    if isinstance(value, float) and name.endswith("accuracy"):
        return f"{100 * value:.2f}%"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---- progress ----

def in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return type(ip).__name__ == "ZMQInteractiveShell"


def quiet_environment() -> bool:
    """No progress bar under CI, papermill, or with stderr not a terminal (outside Jupyter)."""
    if os.environ.get("CI") or os.environ.get("PAPERMILL_EXECUTION"):
        return True
    return not in_jupyter() and not sys.stderr.isatty()


def progress_bar(total: int, initial: int, desc: str, quiet: bool):
    """A tqdm bar (tqdm.auto: a widget in Jupyter) over optimiser steps; ETA comes with it."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                disable=quiet or quiet_environment(), leave=True)


# ---- provenance ----

def versions(device: torch.device, world_size: int) -> dict[str, Any]:
    info = {**machine(), "numpy": np.__version__, "hipcore": __version__, "threads": torch.get_num_threads(),
            "device": str(device), "world_size": world_size}
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
