"""BatchLoader: deterministic, resumable, rank-sharded batches from a Dataset."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from hipcore.data.base import Dataset


def derive_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from a tuple of non-negative ints."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint64)[0] >> 1)


class BatchLoader:
    """Iterate `(inputs, labels)` batches: inputs {modality: float32 [b, M, C]}, labels [b].

    Order: epoch e visits the dataset in a permutation that depends on (seed, e) only
    (identity when shuffle=False). Its global batches have batch_size * world_size rows;
    `batch_size` is the per-rank batch and rank r takes rows [r*b, (r+1)*b) of each global
    batch, so world_size ranks together see exactly the batches of one process with batch
    b * world_size. With drop_last=False the final, partial global batch is split as evenly as
    possible (torch.tensor_split), so with world_size > 1 a rank may get a smaller or even
    empty last batch: use drop_last=True for distributed training.

    Augmentation (train=True) is drawn from a generator seeded by (seed, epoch, batch, rank),
    so it is reproducible and survives resumption; it is not shared across ranks, so with
    world_size > 1 the rows are the single-process rows but their augmentation draws differ.

    Epochs: iterating to the end advances to the next epoch; `set_epoch(e)` jumps to epoch e
    (a no-op when e is the current epoch, so that a resumed position survives the usual
    `loader.set_epoch(epoch)` at the top of a training loop). `state_dict()` records
    {'epoch', 'position' (batches already served this epoch), 'seed'}; a loader given it by
    `load_state_dict` continues with exactly the batches the original would have served.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_last: bool = False, train: bool = False, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.drop_last, self.train, self.rank, self.world_size = drop_last, train, rank, world_size
        self.global_batch = batch_size * world_size
        if drop_last and len(dataset) < self.global_batch:
            raise ValueError(f"dataset of {len(dataset)} examples holds no full global batch of "
                             f"{self.global_batch} with drop_last=True")
        self.epoch, self.position = 0, 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The permutation [N] of dataset indices that epoch `epoch` visits."""
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(self.seed, epoch)))

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not 0 <= int(state["position"]) <= len(self):
            raise ValueError(f"position {state['position']} outside [0, {len(self)}]")
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), int(state["seed"])

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        epoch, order = self.epoch, self.epoch_order(self.epoch)
        while self.epoch == epoch and self.position < len(self):
            step = self.position
            rows = order[step * self.global_batch:(step + 1) * self.global_batch]
            indices = torch.tensor_split(rows, self.world_size)[self.rank]
            generator = None
            if self.train:
                generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, step, self.rank))
            batch = self.dataset.get_batch(indices, train=self.train, generator=generator)
            self.position = step + 1
            yield batch
        if self.epoch == epoch and self.position >= len(self):
            self.epoch, self.position = epoch + 1, 0
