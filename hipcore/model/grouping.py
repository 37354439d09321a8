"""Grouping: modalities [B, M, E] -> groups [B, G, N, E], and regrouping between levels.

Each modality gets a number of contiguous groups in proportion to its size; a group never
mixes modalities. A modality whose length is not divisible by its group count is padded at
its end, and groups shorter than the longest group are padded at their end; a key mask marks
real elements so that padding is never attended to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange


def allot_groups(num_groups: int, sizes: list[int]) -> list[int]:
    """Groups per modality: one each, then greedily to the modality with the largest groups."""
    if len(sizes) > num_groups:
        raise ValueError(f"{len(sizes)} modalities cannot share {num_groups} groups: "
                         "a group never mixes modalities")
    counts = [1] * len(sizes)
    for _ in range(num_groups - len(sizes)):
        largest = max(range(len(sizes)), key=lambda i: sizes[i] / counts[i])
        counts[largest] += 1
    return counts


@dataclass(frozen=True)
class ModalityGroups:
    name: str
    size: int         # M
    groups: int       # groups given to this modality
    per_group: int    # real-or-end-padded elements per group, ceil(M / groups)


@dataclass(frozen=True)
class GroupLayout:
    """Where every modality lies in the grouped array [B, G, N, E]."""

    modalities: tuple[ModalityGroups, ...]
    group_size: int   # N, the longest group

    @classmethod
    def build(cls, sizes: dict[str, int], num_groups: int) -> "GroupLayout":
        counts = allot_groups(num_groups, list(sizes.values()))
        mods = tuple(ModalityGroups(name, m, g, math.ceil(m / g))
                     for (name, m), g in zip(sizes.items(), counts))
        return cls(mods, max(mod.per_group for mod in mods))

    @property
    def num_groups(self) -> int:
        return sum(mod.groups for mod in self.modalities)

    @property
    def padded(self) -> bool:
        return any(mod.per_group * mod.groups != mod.size or mod.per_group != self.group_size
                   for mod in self.modalities)

    def key_mask(self, device: torch.device | None = None) -> torch.Tensor | None:
        """[G, N] bool, True at real elements; None when nothing is padded."""
        if not self.padded:
            return None
        ones = {mod.name: torch.ones(1, mod.size, 1, dtype=torch.bool, device=device)
                for mod in self.modalities}
        return self.group(ones)[0, ..., 0]

    def group(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """{name: [B, M, C]} -> [B, G, N, C], zero padded."""
        parts = []
        for mod in self.modalities:
            x = _pad_end(values[mod.name], 1, mod.per_group * mod.groups - mod.size)
            x = rearrange(x, "b (g n) c -> b g n c", g=mod.groups)     # a view
            parts.append(_pad_end(x, 2, self.group_size - mod.per_group))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def ungroup(self, grouped: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, G, N, C] -> {name: [B, M, C]}, padding removed."""
        out, start = {}, 0
        for mod in self.modalities:
            x = grouped[:, start:start + mod.groups, :mod.per_group]
            out[mod.name] = rearrange(x, "b g n c -> b (g n) c")[:, :mod.size]
            start += mod.groups
        return out


def _pad_end(x: torch.Tensor, dim: int, amount: int) -> torch.Tensor:
    """Zero-pad `amount` elements at the end of `dim`; x itself (no copy) when amount is 0."""
    if amount == 0:
        return x
    return F.pad(x, (0, 0) * (x.dim() - 1 - dim) + (0, amount))


def regroup(z: torch.Tensor, groups: int, kind: str = "reshape") -> torch.Tensor:
    """Latents [B, G, K, D] -> [B, G', G*K/G', D] for the next level.

    'reshape' concatenates neighbouring groups' latents; 'transpose_reshape' interleaves all
    groups instead (latent k of every group before latent k+1).
    """
    batch, g, k, d = z.shape
    if (g * k) % groups:
        raise ValueError(f"cannot regroup {g} groups x {k} latents into {groups} groups")
    if kind == "transpose_reshape":
        z = z.transpose(1, 2)
    elif kind != "reshape":
        raise ValueError(f"unknown regroup type {kind!r}")
    return z.reshape(batch, groups, g * k // groups, d)
