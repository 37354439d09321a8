"""Student's t distribution and the intervals the verdicts use, in the standard library alone.

The t CDF is the regularised incomplete beta function (evaluated by its continued fraction);
its quantile is found by bisection. Accurate to about 1e-10, far below what an interval
over a handful of seeds needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz), x < (a+1)/(a+b+2)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t))    # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=None)
def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, for 0 < p < 1."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
        if high - low < 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Interval:
    """A mean over n replicates and its two-sided t interval at `level`."""

    mean: float
    sd: float           # sample standard deviation of the replicates
    n: int
    level: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return self.high - self.mean


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    """Mean ± t_{(1+level)/2, n-1} x sd / sqrt(n); needs 2 or more finite values."""
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError(f"an interval needs 2 or more values, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"values must be finite, got {values}")
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))     # two-pass, in floats
    half = t_quantile((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, sd, n, level, mean - half, mean + half)


def binomial_se(accuracy: float, examples: int) -> float:
    """The standard error, in points, of one top-1 of `accuracy` (a fraction in [0, 1]) measured
    on `examples` test examples: the test set's own sampling noise."""
    p = min(max(accuracy, 0.0), 1.0)
    return 100 * math.sqrt(p * (1 - p) / examples)
