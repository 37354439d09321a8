"""The validation split: examples carved out of a run's training subset, never the test set.

    train_set, val_set = split_validation(train_set, cfg)   # val_set None when cfg.val_fraction == 0

round(val_fraction * n) examples (at least one) of the n training examples, drawn with a
generator seeded from cfg.seed alone, so the same run always holds out the same examples and
another seed holds out others. The run records `split_digest` of the held-out indices beside
the data's fingerprints, so a resumption with another split is refused; `val_fraction` is
part of the run's identity (TrainConfig.run_id) as well.
"""

from __future__ import annotations

import hashlib

import torch

from ..data.base import Subset

SPLIT_SEED = 7_919                      # keeps the split's generator apart from the others


def validation_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices), each ascending, of n examples."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1) to carve a validation set, got {fraction}")
    count = max(1, round(fraction * n))
    if count >= n:
        raise ValueError(f"val_fraction {fraction} of {n} training examples leaves none to train on")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED * 1_000_003 + seed))
    return order[count:].sort().values, order[:count].sort().values


def split_validation(train_set, cfg):
    """(training part, validation part or None) of a run's training subset."""
    if not cfg.val_fraction:
        return train_set, None
    keep, held_out = validation_indices(len(train_set), cfg.val_fraction, cfg.seed)
    train_part, val_part = Subset(train_set, keep), Subset(train_set, held_out)
    val_part.split_digest = split_digest(held_out, len(train_set))
    return train_part, val_part


def split_digest(held_out: torch.Tensor, n: int) -> str:
    """Which of the n training examples are held out, as a short hash."""
    h = hashlib.sha1(f"{n}:".encode())
    h.update(held_out.to(torch.int64).numpy().tobytes())
    return f"val{len(held_out)}of{n}-{h.hexdigest()[:12]}"
