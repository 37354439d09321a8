"""One process per device: torchrun's environment -> a process group, and the helpers the
loop needs. Without torchrun (WORLD_SIZE unset or 1) everything is a no-op on one process.

    torchrun --nproc_per_node 2 -m hipcore train --dataset fashion_mnist ...

Backend: NCCL when the processes use CUDA devices, gloo on CPU. Rank 0 writes metrics and
checkpoints; every rank evaluates a 1/world_size shard of the test set and the sums are
all-reduced, so evaluation costs the same wall time on any number of ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..device import pick_device


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool       # this code created the process group (and destroys it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> Context:
    """Join torchrun's process group when WORLD_SIZE > 1 (or use one already created)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    owns = False
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        owns = True
    if dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), local_rank, dev, owns)
    return Context(0, 1, 0, dev, False)


def cleanup(ctx: Context) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_objects(obj: Any, ctx: Context) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()
