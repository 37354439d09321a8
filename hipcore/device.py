"""The device a run computes on, its numeric precision, and a description of the machine.

    pick_device('auto' | 'cpu' | 'cuda' | 'cuda:1')   -> torch.device (CUDA when present)
    resolve(requested precision, device)            -> 'fp32' | 'bf16' | 'fp16', by the hardware
    machine()                                       -> CPU, cores, threads, memory, GPU, versions

Numeric precision of a run: float32, or bfloat16 / float16 autocast over float32 weights.

    requested  'auto' | 'fp32' | 'bf16' | 'fp16'   (TrainConfig.precision, --precision)
    resolved   'fp32' | 'bf16' | 'fp16'            (what the run computes; stored in its config)

Under 'bf16' and 'fp16' only the forward and backward passes run in low precision (torch's
autocast: matmuls and attention in 16 bits, reductions, norms and losses in float32). The
master weights, gradients, optimiser state and losses stay float32, so checkpoints are the
same whatever the precision. 'fp16' adds a gradient scaler against underflow.

`resolve` is the one place a precision is decided; every caller asks it, and a run records
what it answered in its config.json. 'auto' is decided by the hardware alone, never by timing:
- CPU: bf16 where the processor computes it natively (AMX-BF16 or AVX512-BF16 among
  /proc/cpuinfo's flags), fp32 elsewhere, and fp32 where the flags are unknown (no
  /proc/cpuinfo, e.g. macOS).
- CUDA: bf16 where torch.cuda.is_bf16_supported(), fp32 elsewhere (fp16 only when asked for).
An explicit 'bf16' or 'fp16' the CPU cannot compute natively is an error: torch would
emulate it, slower than fp32, which is never what was meant.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from typing import Any

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
        device = torch.device(name if ":" in name else f"cuda:{local_rank}")
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA "
                             f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return device
    return torch.device(name)


class PrecisionError(ValueError):
    """A precision that is unknown, or that the device cannot compute."""


def check_name(precision: str) -> str:
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@functools.lru_cache(maxsize=None)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open(cpuinfo) as f:
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


def resolve(requested: str, device: torch.device | str) -> str:
    """'auto' or an explicit precision -> the one `device` computes (see the module doc)."""
    device = torch.device(device)
    check_name(requested)
    if requested != "auto":
        if not supported(requested, device):
            raise PrecisionError(f"precision {requested!r} is not available on {device}: "
                                 f"{_why_not(requested, device)}. Use --precision fp32 or auto.")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and native_on_cpu("bf16") else "fp32"


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
