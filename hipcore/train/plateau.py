"""When a run has learned what it will: the plateau rule, a trend test with known error rates.

    reached(history, mode, examples, rule) -> bool         rule = Rule.of(train_config)

`history` holds one validation score per epoch run so far: top-1 as a fraction (supervised),
mIoU as a fraction (segment: judged as top-1 is, `examples` its validation canvases; see
hipcore.train.dense) or the reconstruction loss (MAE); `examples` is the validation set's size. Over the last
`window` epochs (TrainConfig.plateau_window) a least-squares line gives the curve's gain per
epoch, g, and its standard error from the validation set's own noise:

    top-1   g in points per epoch; one epoch's noise is binomial, 100 sqrt(p (1 - p) / n)
            at the window's mean top-1 p on n validation images
    loss    g is the relative decrease per epoch (the loss over its window mean, falling);
            one epoch's noise is plateau_loss_cv / sqrt(n), the per-image spread of the loss
            over its mean (0.42: notebook 03's quick MAE curves, validation against test)

    SE(g) = noise / sqrt(sum over the window of (epoch - mean epoch)^2)

The run has reached its plateau when g + z SE(g) < threshold: the trend is confidently (one
side, z at plateau_confidence) below plateau_slope top-1 points per epoch, or below a relative
loss decrease of plateau_loss_slope per epoch, and not before min_epochs and a whole window.
The test reads only the logged scores, so a resumed run (whose checkpoint holds the history)
decides exactly as an uninterrupted one.

Its error rates, simulated (`rates`; `python -m hipcore plateau-rates --profile P` prints them
at a profile's settings) on saturating curves with binomial (top-1) or relative (loss) noise at
the validation size, 400 runs per curve, TrainConfig's rule (window 12, 0.2 top-1 points and
0.25% of the loss per epoch, confidence 0.9995), plateaus at 80% top-1 and a loss of 0.2:

                                            still rising at the threshold,   flat (gaining under a
                                            stopped before the cap           quarter of it): stopped
                                                                             within 10 epochs
    quick, 6,000 spare images, cap 60       top-1 2.8%,  loss 2.2%           top-1 95.0%, loss 99.2%
    full, 6,000 carved of 60,000, caps      top-1 2.8% (60), loss 4.2% (100) top-1 95.0%, loss 99.5%
    quick at results/plateau_check's 40     top-1 0.8%,  loss 1.8%           top-1 96.0%, loss 99.0%

(the first column grows with the cap: more epochs are judged; fewer validation images stop
flat curves later: at a cap of 60, 78% of flat top-1 curves in time on 4,000, 45% on 2,000). tests/test_train_plateau.py
holds the rule to <= 5% and >= 90% at these settings, and shows that the earlier rule (the
last quarter's gain over the best before it, patience 5, on 600 validation images) fails them:
it stops 99% of top-1 curves still rising by 0.2 points per epoch before a cap of 40. On 600
images (binomial SE 1.6 points per epoch) a 12-epoch trend cannot tell 0.2 points per epoch
from noise either: this rule stops only 6.5% of flat top-1 curves in time there. Validation
therefore comes from the training images a run does not train on (hipcore.train.validation),
6,000 of them by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

MODES = ("accuracy", "loss")
FLAT_FRACTION = 0.25          # a curve has gone flat once its gain per epoch is below this part of the threshold
WITHIN_EPOCHS = 10            # ... and the rule should stop it within this many epochs of that


@dataclass(frozen=True)
class Rule:
    """The plateau rule's settings, read from a TrainConfig (their one home)."""

    min_epochs: int
    window: int
    slope: float              # top-1 points per epoch
    loss_slope: float         # relative validation-loss decrease per epoch
    loss_cv: float            # per-image sd over mean of the validation loss
    confidence: float         # one-sided level

    @classmethod
    def of(cls, cfg) -> "Rule":
        return cls(min_epochs=cfg.min_epochs, window=cfg.plateau_window, slope=cfg.plateau_slope,
                   loss_slope=cfg.plateau_loss_slope, loss_cv=cfg.plateau_loss_cv,
                   confidence=cfg.plateau_confidence)

    def threshold(self, mode: str) -> float:
        check_mode(mode)
        return self.slope if mode == "accuracy" else self.loss_slope


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def trend(scores: np.ndarray, mode: str, examples: int, loss_cv: float) -> tuple[np.ndarray, np.ndarray]:
    """(gain per epoch, its standard error) of each row of scores [..., w] (the last w epochs):
    top-1 points per epoch (scores in fractions), or the relative loss decrease per epoch."""
    check_mode(mode)
    scores = np.asarray(scores, dtype=float)
    w = scores.shape[-1]
    if w < 3 or examples < 1:
        raise ValueError(f"a trend needs a window of 3 or more epochs and a validation set, got {w} and {examples}")
    x = np.arange(w) - (w - 1) / 2                                   # [w], centred epochs
    spread = math.sqrt(float((x * x).sum()))
    mean = scores.mean(-1)                                           # [...]
    if mode == "accuracy":
        y, p = 100.0 * scores, np.clip(mean, 0.0, 1.0)
        noise = 100.0 * np.sqrt(p * (1 - p) / examples)
    else:
        y = -scores / np.maximum(np.abs(mean), 1e-12)[..., None]     # falling loss: rising y
        noise = np.full_like(mean, loss_cv / math.sqrt(examples))
    gain = (y * x).sum(-1) / spread ** 2
    return gain, noise / spread


def reached(history: Sequence[float], mode: str, examples: int, rule: Rule) -> bool:
    """Whether the validation curve `history` has reached its plateau (see the module's rule)."""
    return bool(trend_test(np.asarray(history, dtype=float)[None], mode, examples, rule)[0])


def z_score(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


# ---- simulated error rates ----

def stops(curve: np.ndarray, mode: str, examples: int, rule: Rule, runs: int, seed: int,
          decide: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The epoch [runs] at which a rule stops each noisy copy of the true curve [cap] (the cap
    where it never does): binomial top-1 noise, or relative loss noise, at `examples`.
    decide(scores [runs, epochs so far]) -> stop [runs]; default: `rule`'s trend test."""
    rng = np.random.default_rng(seed)
    cap = len(curve)
    if mode == "accuracy":
        seen = rng.binomial(examples, np.clip(curve, 0, 1), size=(runs, cap)) / examples   # [runs, cap]
    else:
        seen = curve * (1 + rule.loss_cv / math.sqrt(examples) * rng.standard_normal((runs, cap)))
    decide = decide or (lambda scores: trend_test(scores, mode, examples, rule))
    stop = np.full(runs, cap)
    for epoch in range(1, cap):                                      # the cap ends a run anyway
        stop = np.where((stop == cap) & decide(seen[:, :epoch]), epoch, stop)
    return stop


def trend_test(scores: np.ndarray, mode: str, examples: int, rule: Rule) -> np.ndarray:
    """The rule on each row of scores [runs, epochs so far] -> reached [runs]."""
    if scores.shape[-1] < max(rule.min_epochs, rule.window):
        return np.zeros(scores.shape[:-1], dtype=bool)
    gain, se = trend(scores[..., -rule.window:], mode, examples, rule.loss_cv)
    return gain + z_score(rule.confidence) * se < rule.threshold(mode)


def curve_from_gains(gains: np.ndarray, mode: str, level: float, remaining: float = 0.0) -> np.ndarray:
    """The true curve [cap] whose gain per epoch is `gains` [cap] (points, or relative loss
    decrease), ending `remaining` short of `level` (top-1 fraction, or loss)."""
    still = remaining + np.cumsum(gains[::-1])[::-1] - gains      # what the epochs after each one gain
    return level - still / 100 if mode == "accuracy" else level * np.exp(still)


def rising(cap: int, rate: float, mode: str, level: float, bend: float | None) -> np.ndarray:
    """A curve still gaining `rate` per epoch at its cap: saturating (its gain per epoch decays
    over `bend` epochs, so it is larger before) or linear (bend None)."""
    epochs = np.arange(1, cap + 1)
    gains = rate * (np.ones(cap) if bend is None else np.exp((cap - epochs) / bend))
    return curve_from_gains(gains, mode, level)


def flattening(cap: int, rise: float, bend: float, flat_below: float, mode: str,
               level: float) -> tuple[np.ndarray, int]:
    """(A saturating curve gaining `rise` in all with gains decaying over `bend` epochs, the
    first epoch whose gain is below `flat_below`: where it has gone flat)."""
    epochs = np.arange(1, cap + 1)
    gains = rise * (1 - math.exp(-1 / bend)) * np.exp(-(epochs - 1) / bend)
    flat = int(np.argmax(gains < flat_below)) + 1 if (gains < flat_below).any() else cap + 1
    return curve_from_gains(gains, mode, level, remaining=rise * math.exp(-cap / bend)), flat


# Simulated curves: where they end (top-1 fraction; loss), how far the flattening ones rise
# (points; log loss), and over how many epochs their gains bend (None: linear; a fraction of
# the cap for the rising ones).
LEVELS = {"accuracy": 0.80, "loss": 0.20}
RISES = {"accuracy": 30.0, "loss": 1.0}
RISING_BENDS = (None, 1.0, 0.5)
FLAT_BENDS = (2.0, 4.0, 8.0)


def rates(rule: Rule, mode: str, examples: int, cap: int, *, runs: int = 400, seed: int = 0,
          level: float | None = None, decide: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, float]:
    """The rule's simulated error rates for `mode` at `examples` validation images and a cap:
    'rising stopped' (the largest share, over RISING_BENDS, of curves still gaining the
    threshold per epoch at the cap that the rule stops before it) and 'flat stopped in time' (the
    smallest share, over FLAT_BENDS, of flattening curves it stops within WITHIN_EPOCHS epochs
    of going flat). `decide`: another rule to simulate instead (see `stops`)."""
    level = LEVELS[mode] if level is None else level
    threshold = rule.threshold(mode)
    rising_rates, flat_rates = [], []
    for i, bend in enumerate(RISING_BENDS):
        curve = rising(cap, threshold, mode, level, None if bend is None else bend * cap)
        rising_rates.append(float((stops(curve, mode, examples, rule, runs, seed + i, decide) < cap).mean()))
    for i, bend in enumerate(FLAT_BENDS):
        curve, flat = flattening(cap, RISES[mode], bend, FLAT_FRACTION * threshold, mode, level)
        if flat + WITHIN_EPOCHS > cap:                 # goes flat too late to judge before the cap
            continue
        stopped = stops(curve, mode, examples, rule, runs, seed + 100 + i, decide)
        flat_rates.append(float((stopped <= flat + WITHIN_EPOCHS).mean()))
    if not flat_rates:
        raise ValueError(f"a cap of {cap} epochs leaves no simulated curve {WITHIN_EPOCHS} epochs after it goes flat")
    return {"rising stopped": max(rising_rates), "flat stopped in time": min(flat_rates)}


def rates_line(rule: Rule, mode: str, examples: int, cap: int, **options) -> str:
    """One sentence of `rates`, in the rule's units."""
    r = rates(rule, mode, examples, cap, **options)
    still = (f"rising by {rule.slope:g} top-1 points" if mode == "accuracy"
             else f"falling by {100 * rule.loss_slope:g}% of itself")
    what = "validation top-1" if mode == "accuracy" else "validation loss (MAE)"
    return (f"{what}, {examples:,} validation examples, cap {cap} epochs: a curve still {still} per "
            f"epoch is stopped before its cap in {100 * r['rising stopped']:.1f}% of runs; a flat one stops "
            f"within {WITHIN_EPOCHS} epochs in {100 * r['flat stopped in time']:.1f}%")
