"""Data-throughput benchmark: how fast BatchLoader serves batches, per dataset and ordering."""

from __future__ import annotations

import time
from typing import Callable

import torch

from hipcore.data.loader import BatchLoader
from hipcore.data.orderings import IMAGE_ORDERINGS, POINT_ORDERINGS
from hipcore.data.registry import load_dataset

DEFAULT_CASES = ([("fashion_mnist", o, {}) for o in IMAGE_ORDERINGS]
                 + [("fashion_mnist", "raster", {"hflip": True})]
                 + [("shapes3d", o, {}) for o in POINT_ORDERINGS]
                 + [("fashion_mnist_points", o, {}) for o in ("stored", "hilbert")])


def benchmark(name: str, ordering: str, options: dict | None = None, *, batch_size: int = 128,
              batches: int = 300, train: bool = True, seed: int = 0) -> dict:
    """Load the train split, then time `batches` shuffled batches through a BatchLoader."""
    start = time.perf_counter()
    ds = load_dataset(name, "train", ordering=ordering, seed=seed, **(options or {}))
    load_s = time.perf_counter() - start
    loader = BatchLoader(ds, batch_size, shuffle=True, seed=seed, train=train, drop_last=True)
    served, start = 0, time.perf_counter()
    while served < batches:
        for inputs, labels in loader:
            served += 1
            if served == batches:
                break
    elapsed = time.perf_counter() - start
    return {"dataset": name, "ordering": ordering, "options": options or {}, "train": train,
            "batch_size": batch_size, "batches": batches, "load_s": round(load_s, 3),
            "batches_per_s": round(batches / elapsed, 1),
            "examples_per_s": round(batches * batch_size / elapsed)}


def run_benchmarks(cases=DEFAULT_CASES, *, batch_size: int = 128, batches: int = 300,
                   threads: int | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """Benchmark each (dataset, ordering, options) case and log one line per case.

    threads: torch intra-op threads for the run (default: leave as is). Timings on a machine
    whose cores are busy with other processes drop sharply with more than one thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch_size}, "
        f"{batches} batches per case, train=True (augmentation on where the dataset has it)")
    results = []
    try:
        for name, ordering, options in cases:
            r = benchmark(name, ordering, options, batch_size=batch_size, batches=batches)
            r["threads"] = torch.get_num_threads()
            results.append(r)
            extra = "".join(f" {k}={v}" for k, v in r["options"].items())
            log(f"{name:22s} {ordering:9s}{extra:12s} load {r['load_s']:6.2f} s  "
                f"{r['batches_per_s']:8.1f} batches/s  {r['examples_per_s']:9d} examples/s")
    finally:
        torch.set_num_threads(previous)
    return results
