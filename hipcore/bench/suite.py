"""The efficiency benchmark: every model at every image side, as far as each fits.

For each side, smallest first:
1. the FLOPs of a step are counted on the meta device; a model whose step would take longer
   than `max_step_s` even at 80% of the matmul peak is skipped without running;
2. each model trains alone in a fresh process (`warmup` + 1 steps): its peak memory, or
   'OOM' past `memory_limit_gb`, or 'skipped (too slow)' past `max_step_s`;
3. the models that passed train side by side in one process, taking turns for `repeats`
   steps; steps/s is 1 / the median step time.
A model that failed at one side is not tried at larger ones. The matmul peak is measured at
the start and at the end of the run, and the better of the two is the reference.

`PROFILES` holds each profile's settings (used by the notebook and the CLI).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..device import PrecisionError, machine, native_on_cpu, resolve
from ..notebook import ParameterError, choose_list
from .models import MODEL_NAMES, MODELS, available, count_flops
from .timing import OOM, TOO_SLOW, matmul_peak, measure

ALL_SIDES = (32, 64, 128, 224, 384, 512, 1024, 2048)
PAPER_MODELS = ("hip16", "hip256", "hip16_fourier", "perceiver_io")
BASELINES = ("perceiver_small", "perceiver_pytorch", "perceiver_matched")
SMALL_ONLY = {"perceiver_small": 512, "perceiver_pytorch": 512, "perceiver_matched": 512}

# batch: images per step, the same for every model (the ratios compare equal batches);
# loop_images / loop_batch: one epoch of the notebooks' training loops (notebook 05; 0: not
# measured, as on Binder, where the loops' own training process beside the kernel would take
# the notebook to 2.5 GB);
# min_side / max_side: the sides a model is tried at; threads: None = all cores.
PROFILES: dict[str, dict[str, Any]] = {
    # ~15 s: a tiny HiP at two small sides, to check that it all runs
    "smoke": dict(models=("hip_small",), sides=(16, 32), batch=1, warmup=1,
                  repeats=2, max_step_s=5.0, memory_limit_gb=4.0, peak_sizes=(512, 1024),
                  min_side={}, max_side={}, threads=1, seed=0, precision="auto",
                  loop_images=128, loop_batch=64),
    # Binder (2 GB, a share of a CPU): CPU-scale HiP and flat Perceivers up to 128 x 128; the
    # paper's models do not fit (HiP-16 with AdamW needs 1.6 GB before any activation)
    "binder": dict(models=("hip_small", "perceiver_small", "perceiver_matched"), sides=(32, 64, 128), batch=1,
                   warmup=1, repeats=2, max_step_s=20.0, memory_limit_gb=1.0, peak_sizes=(1024, 2048),
                   min_side={}, max_side={}, threads=None, seed=0, precision="auto", loop_images=0,
                   loop_batch=32),
    # ~10 min on 2 cores: up to 224 x 224, where the paper's 3.7x is measured (Perceiver IO,
    # 2.4 TFLOP a step at any side, only there)
    "quick": dict(models=PAPER_MODELS + BASELINES, sides=(32, 64, 128, 224), batch=2, warmup=1,
                  repeats=3, max_step_s=90.0, memory_limit_gb=18.0, peak_sizes=(2048, 3072, 4096),
                  min_side={"perceiver_io": 224}, max_side=SMALL_ONLY, threads=None, seed=0, precision="auto",
                  loop_images=2560, loop_batch=128),
    # every side up to 2048 x 2048 (Perceiver IO from the paper's 224 on): 36 min in bf16 on a
    # 2-core AMD EPYC Zen 4 (results/05_efficiency/full)
    "full": dict(models=PAPER_MODELS + BASELINES, sides=ALL_SIDES, batch=2, warmup=1, repeats=5,
                 max_step_s=150.0, memory_limit_gb=20.0, peak_sizes=(2048, 3072, 4096),
                 min_side={"perceiver_io": 224}, max_side=SMALL_ONLY, threads=None, seed=0, precision="auto",
                  loop_images=2560, loop_batch=128),
    # the paper's models and batch of 8 at its sides, for a machine with more cores and memory
    "paper": dict(models=PAPER_MODELS, sides=ALL_SIDES[3:], batch=8, warmup=2, repeats=10,
                  max_step_s=600.0, memory_limit_gb=120.0, peak_sizes=(2048, 3072, 4096),
                  min_side={}, max_side={}, threads=None, seed=0, precision="auto",
                  loop_images=2560, loop_batch=128),
}

COLUMNS = ("model", "package", "side", "inputs", "batch", "status", "steps_per_s", "images_per_s",
           "inputs_per_s", "step_s_median", "step_s_min", "step_s_max", "repeats",
           "peak_memory_gb", "params", "trained_params", "flops_per_step", "achieved_gflops",
           "fraction_of_peak", "peak_gflops", "threads", "precision", "fraction_of_best_peak",
           "best_peak_gflops")
STEP_COLUMNS = ("model", "side", "batch", "repeat", "seconds")


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Stop with a message that lists what is allowed (ParameterError) on a bad setting."""
    choose_list("models", settings["models"], MODEL_NAMES)
    for key in ("sides", ):
        values = settings[key]
        if isinstance(values, int) or not values or not all(isinstance(v, int) and v > 0 for v in values):
            raise ParameterError(f"{key} must be a non-empty list of positive ints, e.g. [224, 384], got {values!r}")
    for key in ("batch", "warmup", "repeats"):
        value = settings[key]
        if not isinstance(value, int) or value < (0 if key == "warmup" else 1):
            raise ParameterError(f"{key} must be an int >= {0 if key == 'warmup' else 1}, got {value!r}")
    for key in ("max_step_s", "memory_limit_gb"):
        if not isinstance(settings[key], (int, float)) or settings[key] <= 0:
            raise ParameterError(f"{key} must be a positive number, got {settings[key]!r}")
    threads = settings.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ParameterError(f"threads must be None (all cores) or an int >= 1, got {threads!r}")
    try:
        resolve(settings.get("precision", "auto"), "cpu")
    except PrecisionError as error:
        raise ParameterError(str(error)) from None
    return settings


@dataclass
class Results:
    """Rows of metrics.csv (one per model and side), of steps.csv (one per timed step), and
    what the run was: machine, load, matmul peak, settings."""

    rows: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)

    def row(self, model: str, side: int) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["model"] == model and r["side"] == side), None)


def load_average() -> float:
    """The 1-minute load average: how busy the cores were (nan where unknown)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def _row(model: str, side: int, batch: int, status: str, **values) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS)
    row.update(model=model, package=MODELS[model].package, side=side, inputs=side * side,
               batch=batch, status=status, **values)
    return row


def _groups_that_fit(memory: dict[str, float], limit: float) -> list[list[str]]:
    """Models split into groups whose peaks (GiB, measured alone) add up to under 90% of `limit`."""
    groups: list[list[str]] = []
    for name in sorted(memory, key=lambda n: -memory[n]):
        group = next((g for g in groups if sum(memory[n] for n in g) + memory[name] < 0.9 * limit), None)
        if group is None:
            groups.append([name])
        else:
            group.append(name)
    return groups


class _Run:
    """One benchmark run; `run()` below is its entry point."""

    def __init__(self, settings: dict[str, Any], threads: int, options: dict, log: Callable[[str], None]):
        self.s, self.threads, self.options, self.log = settings, threads, options, log
        self.precision = resolve(settings.get("precision", "auto"), "cpu")
        self.rows: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.failed: dict[str, str] = {}           # model -> the status that stops it at larger sides

    def hipcore_options(self, name: str) -> dict:
        return self.options if MODELS[name].package == "hipcore" else {}

    def peaks(self) -> dict[str, float]:
        """The matmul peak of every precision this CPU computes natively (fp32 always)."""
        return {p: matmul_peak(tuple(self.s["peak_sizes"]), threads=self.threads, precision=p)
                for p in native_precisions()}

    def job(self, models: list[str], side: int, *, warmup: int, repeats: int) -> dict:
        return {"models": models, "side": side, "batch": self.s["batch"], "warmup": warmup,
                "repeats": repeats, "threads": self.threads, "memory_limit_gb": self.s["memory_limit_gb"],
                "max_step_s": self.s["max_step_s"], "seed": self.s.get("seed", 0),
                "options_by_model": {n: self.hipcore_options(n) for n in models},
                "precision": self.precision}

    def measure(self, models: list[str], side: int, *, warmup: int, repeats: int) -> tuple[dict, float | None]:
        """({name: result}, peak memory GiB) of one fresh process training `models`."""
        job = self.job(models, side, warmup=warmup, repeats=repeats)
        out = measure(job, timeout=300 + 3 * (warmup + repeats) * len(models) * self.s["max_step_s"])
        failed = {"status": out.get("failed", "error: no result")}
        return {n: out.get("results", {}).get(n, failed) for n in models}, out.get("peak_memory_gb")

    def fail(self, name: str, side: int, status: str, **values) -> None:
        if status in (OOM, TOO_SLOW) or status.startswith("skipped"):
            self.failed[name] = status
        self.rows.append(_row(name, side, self.s["batch"], status, threads=self.threads, precision=self.precision,
                              **values))
        self.log(f"{side:5d} {name:18s} {status}")

    def side(self, side: int, names: list[str], peak: float) -> None:
        """Every model at one side: screen, measure alone, then time side by side."""
        counted = {}
        for name in names:
            model_options = {k: v for k, v in self.hipcore_options(name).items() if k != "checkpoint"}
            flops, params = count_flops(name, side, self.s["batch"], **model_options)   # no recompute
            counted[name] = {"flops_per_step": flops, "params": params}
            if name in self.failed or available(name):
                self.fail(name, side, self.failed.get(name) or f"skipped ({available(name)})", **counted[name])
            elif flops / (0.8 * peak * 1e9) > self.s["max_step_s"]:      # hopeless even at 80% of peak
                self.fail(name, side, TOO_SLOW, **counted[name])
        runnable = [n for n in names if n not in self.failed]
        if len(runnable) == 1:                 # alone already: one process does both
            results, memory = self.measure(runnable, side, warmup=self.s["warmup"], repeats=self.s["repeats"])
            self.record(side, results, {runnable[0]: memory}, counted)
            return
        memory = {}
        for name in runnable:
            results, memory[name] = self.measure([name], side, warmup=self.s["warmup"] + 1, repeats=0)
            if results[name]["status"] != "ok":
                self.fail(name, side, results[name]["status"], **counted[name])
                del memory[name]
        for group in _groups_that_fit(memory, self.s["memory_limit_gb"]):
            results, _ = self.measure(group, side, warmup=self.s["warmup"], repeats=self.s["repeats"])
            self.record(side, results, memory, counted)

    def record(self, side: int, results: dict[str, dict], memory: dict[str, float], counted: dict) -> None:
        batch = self.s["batch"]
        for name, result in results.items():
            seconds = result.get("times") or []
            if result["status"] != "ok" or not seconds:
                self.fail(name, side, result["status"] if result["status"] != "ok" else "error: no steps",
                          **counted[name])
                continue
            self.steps += [{"model": name, "side": side, "batch": batch, "repeat": i, "seconds": s}
                           for i, s in enumerate(seconds)]
            median, flops = statistics.median(seconds), counted[name]["flops_per_step"]
            self.rows.append(_row(
                name, side, batch, "ok", steps_per_s=1 / median, images_per_s=batch / median,
                inputs_per_s=batch * side * side / median, step_s_median=median, step_s_min=min(seconds),
                step_s_max=max(seconds), repeats=len(seconds), peak_memory_gb=memory[name],
                trained_params=result.get("trained_params"), achieved_gflops=flops / median / 1e9,
                threads=self.threads, precision=self.precision, **counted[name]))
            self.log(f"{side:5d} {name:18s} {1 / median:8.3f} steps/s  {memory[name]:6.2f} GiB  "
                     f"{flops / median / 1e9:6.1f} GFLOP/s")


def threads_of(settings: dict[str, Any]) -> int:
    """The torch threads a profile runs with (None: all cores)."""
    return settings.get("threads") or os.cpu_count() or 1


def native_precisions() -> tuple[str, ...]:
    """The precisions this CPU computes natively, fp32 first."""
    return tuple(p for p in ("fp32", "bf16", "fp16") if native_on_cpu(p))


def run(settings: dict[str, Any], *, options: dict | None = None,
        log: Callable[[str], None] = print) -> Results:
    """Run the benchmark with one profile's `settings` (see PROFILES); `options` are HiPConfig
    fields given to every hipcore model (e.g. {'checkpoint': True})."""
    check_settings(settings)
    threads = threads_of(settings)
    r = _Run(settings, threads, dict(options or {}), log)
    info = {"machine": machine(), "threads": threads, "load_start": load_average(),
            "settings": dict(settings), "options": r.options, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    peaks = [r.peaks()]
    log(f"{info['machine']['cpu']}, {threads} threads, batch {settings['batch']}, {r.precision}: matmul peak "
        + ", ".join(f"{p} {v:.0f}" for p, v in peaks[0].items()) + f" GFLOP/s, load average {info['load_start']:.2f}")
    for side in settings["sides"]:
        names = [n for n in settings["models"]
                 if settings.get("min_side", {}).get(n, 0) <= side <= settings.get("max_side", {}).get(n, math.inf)]
        r.side(side, names, peaks[0][r.precision])
    peaks.append(r.peaks())
    best_of = {p: max(run[p] for run in peaks) for p in peaks[0]}          # per precision, over both runs
    peak, best = best_of[r.precision], max(best_of.values())
    for row in r.rows:
        row.update(peak_gflops=peak, best_peak_gflops=best)
        if row["achieved_gflops"] is not None and peak:
            row["fraction_of_peak"] = row["achieved_gflops"] / peak
            row["fraction_of_best_peak"] = row["achieved_gflops"] / best
    info.update(precision=r.precision, peak_gflops=peak, best_peak_gflops=best, peaks_gflops=best_of,
                peak_gflops_runs=peaks, load_end=load_average(), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    log("matmul peak at the end " + ", ".join(f"{p} {v:.0f}" for p, v in peaks[-1].items())
        + f" GFLOP/s (reference {r.precision} {peak:.0f}, best {best:.0f}), load average {info['load_end']:.2f}")
    return Results(r.rows, r.steps, info)
