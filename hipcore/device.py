"""The device a run computes on, its numeric precision, and a description of the machine.

    pick_device('auto' | 'cpu' | 'cuda' | 'cuda:1')   -> torch.device (CUDA when present)
    resolve(requested precision, device)            -> 'fp32' | 'bf16' | 'fp16', once per process
    machine()                                       -> CPU, cores, threads, memory, GPU, versions

Numeric precision of a run: float32, or bfloat16 / float16 autocast over float32 weights.

    requested  'auto' | 'fp32' | 'bf16' | 'fp16'   (TrainConfig.precision, --precision)
    resolved   'fp32' | 'bf16' | 'fp16'            (what the run computes; stored in its config)

Under 'bf16' and 'fp16' only the forward and backward passes run in low precision (torch's
autocast: matmuls and attention in 16 bits, reductions, norms and losses in float32). The
master weights, gradients, optimiser state and losses stay float32, so checkpoints are the
same whatever the precision. 'fp16' adds a gradient scaler against underflow.

`resolve` decides once per process and device:
- CUDA: 'auto' times a training step of a small HiP (batch 512) in fp32 and in bf16 (fp16 on
  a GPU without bf16, e.g. a T4) and takes the faster: on an H200 small3's step was launch-bound
  and slower in bf16 (15.5 ms) than in fp32 (12.7 ms) at batch 128.
- CPU: 'auto' is bf16 only where the processor computes it natively (AMX-BF16 or AVX512-BF16
  in /proc/cpuinfo's flags) AND a training step of a small HiP measures faster in bf16 than
  in fp32; otherwise fp32. An explicit 'bf16' or 'fp16' the CPU cannot compute natively is an
  error: torch would emulate it, slower than fp32, which is never what was meant.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
import time
from typing import Any, Callable

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# /proc/cpuinfo flags that make a CPU compute each low precision natively (matmul units).
NATIVE_CPU_FLAGS = {"bf16": ("amx_bf16", "avx512_bf16"), "fp16": ("amx_fp16", "avx512_fp16")}


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when present (one device per local rank), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device(name)


class PrecisionError(ValueError):
    """A precision that is unknown, or that the device cannot compute."""


def check_name(precision: str) -> str:
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    """The processor's model name, for messages and provenance."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_on_cpu(precision: str, flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU has matmul units for `precision` ('fp32' always)."""
    if precision == "fp32":
        return True
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in NATIVE_CPU_FLAGS[precision])


def supported(precision: str, device: torch.device) -> bool:
    """Whether `device` computes the resolved `precision` natively."""
    if precision == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    return device.type == "cpu" and native_on_cpu(precision)


def _why_not(precision: str, device: torch.device) -> str:
    if device.type == "cpu":
        return (f"this CPU ({cpu_name()}) has none of the flags {', '.join(NATIVE_CPU_FLAGS[precision])}, "
                f"so torch would emulate {precision}, slower than fp32")
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} does not compute {precision}"
    return f"{device.type} devices are not supported for {precision} here"


def resolve(requested: str, device: torch.device | str,
            measure: Callable[[], dict[str, float]] | None = None) -> str:
    """'auto' or an explicit precision -> the one this device computes (see the module doc).

    measure: for tests, replaces the step timing ({'fp32': s, 'bf16' (or 'fp16'): s})."""
    device = torch.device(device)
    check_name(requested)
    if requested != "auto":
        if not supported(requested, device):
            raise PrecisionError(f"precision {requested!r} is not available on {device}: "
                                 f"{_why_not(requested, device)}. Use --precision fp32 or auto.")
        return requested
    if device.type == "cuda":
        low = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif device.type == "cpu" and native_on_cpu("bf16"):
        low = "bf16"
    else:
        return "fp32"
    seconds = measure() if measure is not None else _measured_steps(str(device), low)
    return low if seconds[low] < seconds["fp32"] else "fp32"


@functools.lru_cache(maxsize=None)
def _steps_cached(device: str, low: str, threads: int) -> tuple[tuple[str, float], ...]:
    seconds = time_steps(torch.device(device), low)
    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"{cpu_name()}, {threads} threads"
    print(f"precision auto: a small3 training step takes {seconds['fp32'] * 1e3:.1f} ms in fp32 and "
          f"{seconds[low] * 1e3:.1f} ms in {low} on {where}: "
          f"training in {low if seconds[low] < seconds['fp32'] else 'fp32'}", file=sys.stderr)
    return tuple(seconds.items())


def _measured_steps(device: str, low: str) -> dict[str, float]:
    """The step timing of `device`, measured once per process (and per thread count)."""
    return dict(_steps_cached(device, low, torch.get_num_threads()))


def time_steps(device: torch.device, low: str = "bf16", batch: int = 64, repeats: int = 3) -> dict[str, float]:
    """Best seconds of a classification step (forward, backward, AdamW) of small3 on 28 x 28
    random images on `device`, in fp32 and under `low` autocast, interleaved. On a GPU the
    batch is 512 (a GPU's work at 64 is launch-bound whatever the precision)."""
    from .config import ModalitySpec, variant
    from .model import HiP

    gpu = device.type == "cuda"
    batch = 512 if gpu else batch
    generator = torch.Generator().manual_seed(0)
    x = {"image": torch.rand(batch, 784, 1, generator=generator).to(device)}
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)
    with torch.random.fork_rng(devices=[device] if gpu else []):   # never moves the caller's seeds
        torch.manual_seed(0)
        hip = HiP(variant("small3", num_classes=10), {"image": ModalitySpec(784, 1, (28, 28))}).to(device)
    optimizer = torch.optim.AdamW(hip.parameters(), lr=1e-4)

    def step(precision: str) -> float:
        if gpu:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast(precision, device):
            loss = torch.nn.functional.cross_entropy(hip(x, reconstruct=False).logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if gpu:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    best = {"fp32": float("inf"), low: float("inf")}
    for precision in best:
        step(precision)                                        # warm-up
    for _ in range(repeats):
        for precision in best:
            best[precision] = min(best[precision], step(precision))
    return best


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a forward (and its loss) runs in: autocast for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler that is active for fp16 only (a no-op object otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def memory_gb() -> float | None:
    """The machine's memory in GiB (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict[str, Any]:
    """What this machine is, for provenance, benchmarks and a run's versions.json: the CPU's
    name and its low-precision flags, cores, torch threads, memory, the GPU (None without one),
    the platform, and the Python and torch versions."""
    flags = sorted(f for names in NATIVE_CPU_FLAGS.values() for f in names if f in cpu_flags())
    return {"cpu": cpu_name(), "cpu_flags": flags, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "memory_gb": memory_gb(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(terse=True), "python": platform.python_version(),
            "torch": torch.__version__}
