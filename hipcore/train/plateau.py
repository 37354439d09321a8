"""When a run has learned what it will: the plateau rule, in one place.

    reached(history, mode="accuracy", *, min_epochs, points, relative, patience) -> bool
    (the defaults are TrainConfig's min_epochs, plateau_points, plateau_relative, plateau_patience)

`history` holds one validation score per epoch run so far: top-1 as a fraction (supervised)
or the reconstruction loss (MAE). After e >= min_epochs epochs, the last quarter of them
(w = ceil(e / 4) epochs, and at least `patience`) is compared with the epochs before it:

    top-1   converged when  best(last w) - best(before) < points / 100
            (less than `points` top-1 points gained over the last quarter of the epochs)
    loss    converged when  (lowest(before) - lowest(last w)) / lowest(before) < relative
            (the validation loss fell by less than that fraction of itself)

Comparing bests, not last values, keeps a noisy flat curve from looking like progress and a
single bad epoch from looking like a plateau. The rule reads only the logged validation
scores, so a resumed run (whose checkpoint holds the history) decides exactly as an
uninterrupted one. A run stops at the end of the epoch where the rule first holds, or at its
cap (TrainConfig.epochs) without having converged.

`patience` (TrainConfig.plateau_patience) keeps a noisy early curve from stopping a run: with
patience 1, HiP small3 on quick's 5,400 training images stopped after 6 epochs at 67-69%
validation top-1 and its MAE pretraining after 4 (a curve that goes on rising for 20 epochs
and more); the profiles that train to the plateau judge at least the last 5 epochs.
"""

from __future__ import annotations

import math
from typing import Sequence

from .config import PLATEAU_DEFAULTS

MODES = ("accuracy", "loss")


def window(epochs: int, patience: int = 1) -> int:
    """The epochs judged: the last quarter of `epochs`, rounded up, and at least `patience`."""
    return max(patience, math.ceil(epochs / 4))


def gain(history: Sequence[float], mode: str, patience: int = 1) -> float:
    """What the last quarter of the epochs gained over the ones before: top-1 points for
    'accuracy' (history in fractions), the relative loss decrease for 'loss'."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if len(history) < 2:
        raise ValueError(f"a gain needs at least two epochs, got {len(history)}")
    w = window(len(history), patience)
    if w >= len(history):
        raise ValueError(f"{len(history)} epochs leave none before the last {w} to compare with")
    before, last = history[:-w], history[-w:]
    if mode == "accuracy":
        return 100.0 * (max(last) - max(before))
    low = min(before)
    return (low - min(last)) / max(abs(low), 1e-12)


def reached(history: Sequence[float], mode: str = "accuracy", *, min_epochs: int = PLATEAU_DEFAULTS["min_epochs"],
            points: float = PLATEAU_DEFAULTS["plateau_points"], relative: float = PLATEAU_DEFAULTS["plateau_relative"],
            patience: int = PLATEAU_DEFAULTS["plateau_patience"]) -> bool:
    """Whether the validation curve `history` has reached its plateau (see the module's rule)."""
    if len(history) < max(2, min_epochs, patience + 1):
        return False
    return gain(history, mode, patience) < (points if mode == "accuracy" else relative)
