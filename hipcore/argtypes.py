"""Value types for argparse options, shared by every subcommand: each refuses a bad value with
a message argparse shows as `argument --x: must be ...`."""

from __future__ import annotations

import argparse
import math
import os


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_count(text: str) -> int:
    """A thread count no larger than the cores this process may use: more threads only contend,
    and a huge count exhausts the machine's thread limit (OpenMP then crashes the process)."""
    value = positive_int(text)
    cores = available_cores()
    if value > cores:
        raise argparse.ArgumentTypeError(f"must be at most {cores}, the cores this process may use, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _float_from(text: str, zero_allowed: bool) -> float:
    value = finite(text)
    if value < 0 or (value == 0 and not zero_allowed):
        raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero_allowed else 'above 0'}, got {text}")
    return value


def positive_float(text: str) -> float:
    return _float_from(text, zero_allowed=False)


def non_negative_float(text: str) -> float:
    return _float_from(text, zero_allowed=True)
