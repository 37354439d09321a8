"""Timing a training step, and a fresh process per measurement so that memory is its own.

A training step is: zero the gradients, logits from pixels [B, M, 3], cross-entropy against
labels (per pixel for a dense model: [B, M, 1] -> [B, M, K]), backward, one AdamW update
(fused). `Trainee.step` times it with `perf_counter`.

`measure(job)` runs `python -m hipcore.bench.worker <job as JSON>` and reads back its JSON.
In that fresh process (`run_job`):
- the allocator keeps freed memory (`keep_freed_memory`) unless the job says otherwise;
- the peak memory is the rise of the resident memory over its value after the imports
  (`PeakMemory`), so it counts parameters, gradients, optimiser state, inputs and
  activations of these models only;
- an address-space limit (`memory_limit_gb` over the baseline) turns an allocation beyond it
  into an 'OOM' result instead of swapping or waking the kernel's OOM killer;
- with several models, each takes `warmup` steps, then they take turns for `repeats` steps
  (interleaved, so a burst of load from other processes falls on all of them alike).
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..device import autocast
from .models import step_loss

RESULT_MARK = "HIPCORE_BENCH_RESULT "
OOM = "OOM"
TOO_SLOW = "skipped (too slow)"


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks up to 2 GiB from its heap and keep them when freed.

    By default every block over 32 MiB (and, adaptively, smaller ones) is a fresh mmap that
    the kernel must zero page by page on first touch, in every training step (~1.7 GB/s
    here, against ~10 GB/s to write memory already mapped). Blocks up to 2 GiB now come
    from the heap and stay there when freed. Returns False where this is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, int_max = -1, -3, 2**31 - 1     # mallopt takes a C int
    return bool(libc.mallopt(m_mmap_threshold, int_max) and libc.mallopt(m_trim_threshold, int_max))


def rss_gb() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def max_rss_gb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


class PeakMemory:
    """The peak resident memory above what it is on entry, in GiB (`.gb` after exit).

    ru_maxrss gives the exact peak once it passes the peak the imports left; below that, a
    thread sampling the resident memory every 2 ms stands in.
    """

    def __enter__(self) -> "PeakMemory":
        self.baseline, self.imports_peak, self.sampled = rss_gb(), max_rss_gb(), 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.sampled = max(self.sampled, rss_gb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        peak = max_rss_gb()
        self.gb = (peak if peak > self.imports_peak else max(self.sampled, rss_gb())) - self.baseline


def _virtual_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def limit_memory(gb: float) -> None:
    """Refuse allocations that would take the address space `gb` GiB over what it is now."""
    limit = _virtual_bytes() + int(gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))


def matmul_peak(sizes: tuple[int, ...] = (2048, 3072, 4096), repeats: int = 3,
                threads: int | None = None, precision: str = "fp32") -> float:
    """The machine's matmul rate in GFLOP/s for one precision ('fp32', 'bf16', 'fp16'): the
    best of a few large square products in that dtype."""
    from ..device import DTYPES

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    best = 0.0
    try:
        for n in sizes:
            a, b = torch.randn(n, n, dtype=DTYPES[precision]), torch.randn(n, n, dtype=DTYPES[precision])
            a @ b                                                  # first call: warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                a @ b
                best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    finally:
        torch.set_num_threads(previous)
    return best


def is_oom(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or "can't allocate memory" in str(error)


@dataclass
class Trainee:
    """One model, its optimiser and a fixed random batch, ready to take training steps."""

    name: str
    model: torch.nn.Module
    pixels: torch.Tensor            # [B, M, 3] ([B, M, 1]: a dense model)
    labels: torch.Tensor            # [B] ([B, M]: a dense model)
    optimizer: torch.optim.Optimizer
    precision: str = "fp32"         # resolved: the forward runs under its autocast
    times: list[float] = field(default_factory=list)

    @classmethod
    def build(cls, name: str, side: int, batch: int, *, seed: int = 0, classes: int = 1000,
              options: dict | None = None, precision: str = "fp32") -> "Trainee":
        from .models import example_batch, make_model

        torch.manual_seed(seed)
        model = make_model(name, side, classes, **(options or {})).train()
        pixels, labels = example_batch(name, side, batch, classes)        # [B, M, C], [B] or [B, M]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        return cls(name, model, pixels, labels, optimizer, precision)

    def step(self) -> float:
        """One training step; returns its wall-clock seconds."""
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.precision, self.pixels.device):
            logits = self.model(self.pixels)
        loss = step_loss(logits, self.labels)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start

    @property
    def trained_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.grad is not None)


def run_job(job: dict) -> dict:
    """Everything a fresh measuring process does; returns its results as a dict.

    job: models (names), side, batch, warmup, repeats, threads, memory_limit_gb, max_step_s,
    seed, options_by_model ({name: HiPConfig fields}), precision (resolved, default fp32),
    keep_freed_memory (default True).
    """
    torch.set_num_threads(job["threads"])
    kept = job.get("keep_freed_memory", True) and keep_freed_memory()
    importlib.import_module("torch._dynamo")    # the optimiser imports it lazily: not under the limit
    limit_memory(job["memory_limit_gb"])
    with PeakMemory() as memory:
        results = train_side_by_side(job)
    return {"results": results, "peak_memory_gb": memory.gb, "threads": torch.get_num_threads(),
            "allocator_tuned": kept}


def train_side_by_side(job: dict) -> dict[str, dict]:
    """Build and warm up each model, then let them take turns for `repeats` timed steps."""
    from .models import available

    results: dict[str, dict] = {}
    trainees: list[Trainee] = []
    for name in job["models"]:
        why = available(name)
        if why:
            results[name] = {"status": f"skipped ({why})"}
            continue
        try:
            t = Trainee.build(name, job["side"], job["batch"], seed=job.get("seed", 0),
                              options=job.get("options_by_model", {}).get(name),
                              precision=job.get("precision", "fp32"))
            warm = [t.step() for _ in range(job["warmup"])]
        except (RuntimeError, MemoryError) as error:
            results[name] = {"status": OOM if is_oom(error) else f"error: {error}"}
            continue
        slow = bool(warm) and warm[-1] > job["max_step_s"]
        results[name] = {"status": TOO_SLOW if slow else "ok", "warmup_s": warm, "trained_params": t.trained_params}
        if not slow:
            trainees.append(t)
        del t
    for _ in range(job["repeats"]):
        for t in trainees:
            t.times.append(t.step())
    for t in trainees:
        results[t.name]["times"] = t.times
    return results


def measure(job: dict, timeout: float) -> dict:
    """Run `job` in a fresh Python process; a process killed or out of time is reported as such."""
    command = [sys.executable, "-m", "hipcore.bench.worker", json.dumps(job)]
    root = str(Path(__file__).resolve().parents[2])               # the folder holding hipcore/
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]), PYTHONPATH=path)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"failed": TOO_SLOW}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    if done.returncode < 0 or "can't allocate memory" in done.stderr or "MemoryError" in done.stderr:
        return {"failed": OOM}                                   # e.g. SIGKILL by the OOM killer
    tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
    return {"failed": f"error: {tail[0]}"}
