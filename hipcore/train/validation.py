"""The training subset and the validation set: never the test set, never what the run trains on.

    train_set = limit(dataset, cfg.limit_train, cfg.seed)   # a seeded subset; it keeps the rest as spare
    train_set, val_set = split_validation(train_set, cfg)   # val_set None when cfg.val_fraction == 0

Where limit_train leaves at least cfg.val_size training examples unused (Fashion-MNIST's
60,000 at quick's 6,000), the validation set is cfg.val_size of those spare examples, so the
training subset is not shrunk and the validation set is large enough to see the slope the
plateau rule judges (hipcore.train.plateau). Otherwise (the whole training split, or an image
folder with too few spare images) round(val_fraction * n) examples (at least one) of the n
training examples are carved out, as before. Both draws are seeded from cfg.seed alone, so the
same run always validates on the same examples and another seed on others; `origin` says which
happened (the run's first line shows it). The run records `split_digest` of the validation
indices beside the data's fingerprints, so a resumption on other validation data is refused;
val_fraction and val_size are part of the run's identity (TrainConfig.run_id) as well.
"""

from __future__ import annotations

import hashlib

import torch

from ..data.base import Subset

SPLIT_SEED = 7_919                      # keeps the carve-out's generator apart from the others
SPARE, CARVED = "spare", "carved"


def limit(dataset, n: int | None, seed: int = 0):
    """A random subset of n examples drawn with `seed`, or the dataset itself. The subset keeps
    the other examples, in the same random order, as `spare` (what validation may take)."""
    if n is None or n >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    subset = Subset(dataset, order[:n].sort().values)
    subset.spare = order[n:]
    return subset


def spare_of(train_set) -> torch.Tensor | None:
    """The examples `limit` left out of this training subset (indices into its dataset), if any."""
    return vars(train_set).get("spare") if isinstance(train_set, Subset) else None


def source(val_size: int, val_fraction: float, train_size: int, spare: int) -> tuple[str, int]:
    """(SPARE or CARVED, validation examples) for a training subset of train_size with `spare`
    unused examples: val_size spare ones where there are as many, else the carve-out."""
    if spare >= val_size:
        return SPARE, val_size
    return CARVED, carved(val_fraction, train_size)


def carved(fraction: float, n: int) -> int:
    """How many of n training examples the carve-out holds out: round(fraction * n), at least one."""
    return max(1, round(fraction * n))


def validation_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices), each ascending, of n examples: the carve-out."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1) to carve a validation set, got {fraction}")
    count = carved(fraction, n)
    if count >= n:
        raise ValueError(f"val_fraction {fraction} of {n} training examples leaves none to train on")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED * 1_000_003 + seed))
    return order[count:].sort().values, order[:count].sort().values


def split_validation(train_set, cfg):
    """(training part, validation part or None) of a run's training subset (see the module)."""
    if not cfg.val_fraction:
        return train_set, None
    spare = spare_of(train_set)
    kind, count = source(cfg.val_size, cfg.val_fraction, len(train_set), 0 if spare is None else len(spare))
    if kind == SPARE:
        held_out = spare[:count].sort().values
        val_part = Subset(train_set.dataset, held_out)
        val_part.split_digest = split_digest(held_out, len(train_set.dataset), spare=True)
        val_part.origin = f"of the {len(spare):,} training examples it does not train on"
        return train_set, val_part
    keep, held_out = validation_indices(len(train_set), cfg.val_fraction, cfg.seed)
    train_part, val_part = Subset(train_set, keep), Subset(train_set, held_out)
    val_part.split_digest = split_digest(held_out, len(train_set))
    val_part.origin = ("carved out of the training subset" + ("" if spare is None else
                       f": {len(spare):,} spare examples are fewer than val_size {cfg.val_size:,}"))
    return train_part, val_part


def split_digest(held_out: torch.Tensor, n: int, spare: bool = False) -> str:
    """Which of the n examples (of the training subset, or with spare=True of the dataset the
    subset was drawn from) are held out, as a short hash."""
    h = hashlib.sha1(f"{n}:{'spare:' if spare else ''}".encode())
    h.update(held_out.to(torch.int64).numpy().tobytes())
    return f"val{len(held_out)}{'from' if spare else 'of'}{n}-{h.hexdigest()[:12]}"


def digest_size(digest: str) -> int:
    """The number of validation examples a split_digest names ('val600of6000-...' -> 600)."""
    head = digest.split("-", 1)[0]
    count = head[3:].split("from" if "from" in head else "of", 1)[0]
    if not head.startswith("val") or not count.isdigit():
        raise ValueError(f"{digest!r} is not a validation split's digest (val<n>of<N>-<hash>)")
    return int(count)
