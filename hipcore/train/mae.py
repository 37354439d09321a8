"""Masked auto-encoding with groupwise masks: one within-group pattern, shared by every group.

    noise [B, N]                      N = group size of the first block
      -> random_masking               visible [B, N'] (kept positions), mask [B, N] (True: hidden)
      -> model(inputs, visible=...)   reconstruction {name: [B, M, C]} for every position
      -> modality_masks               mask {name: [B, M]}: the grouped mask on each modality
      -> forward_loss                 MSE over hidden positions only

A fresh pattern per example at train time; at evaluation the pattern of an example depends
only on (seed, example index), so test losses do not depend on batching or sharding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import ModalitySpec
from ..model.grouping import GroupLayout


def num_visible(group_size: int, mask_ratio: float) -> int:
    """Positions per group the encoder sees: round(N * (1 - ratio)), at least 1, at most N - 1."""
    return max(1, min(group_size - 1, round(group_size * (1 - mask_ratio))))


def random_masking(noise: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """noise [B, N] -> visible [B, N'] (ascending positions of lowest noise), mask [B, N] bool."""
    b, n = noise.shape
    visible = noise.argsort(dim=1)[:, :num_visible(n, mask_ratio)].sort(dim=1).values
    mask = torch.ones(b, n, dtype=torch.bool, device=noise.device).scatter_(1, visible, False)
    return visible, mask


def fixed_noise(indices: torch.Tensor, group_size: int, seed: int) -> torch.Tensor:
    """[B, N] noise that depends only on (seed, example index): the evaluation masks."""
    rows = [torch.rand(group_size, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(i)))
            for i in indices]
    return torch.stack(rows)


def modality_masks(layout: GroupLayout, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """mask [B, N] -> {name: [B, M]}: repeated in every group, padding positions dropped."""
    b, n = mask.shape
    grouped = mask[:, None, :, None].expand(b, layout.num_groups, n, 1)        # [B, G, N, 1]
    return {name: m[..., 0] for name, m in layout.ungroup(grouped).items()}


def normalise_targets(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per example and channel: zero mean, unit variance over the M positions. [B, M, C]."""
    mean, var = x.mean(dim=1, keepdim=True), x.var(dim=1, keepdim=True, unbiased=False)
    return (x - mean) / (var + eps).sqrt()


def forward_loss(inputs: dict[str, torch.Tensor], reconstruction: dict[str, torch.Tensor],
                 masks: dict[str, torch.Tensor], norm_pix: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over hidden positions (all modalities) of the per-position MSE -> (loss, count)."""
    total = count = 0
    for name, x in inputs.items():
        target = normalise_targets(x) if norm_pix else x
        error = (reconstruction[name].float() - target).square().mean(dim=-1)   # [B, M]
        hidden = masks[name].float()                                            # [B, M]
        total, count = total + (error * hidden).sum(), count + hidden.sum()
    return total / count.clamp(min=1), count


def mae_loss(model, layout: GroupLayout, inputs: dict[str, torch.Tensor], noise: torch.Tensor,
             mask_ratio: float, norm_pix: bool = False):
    """One MAE pass -> (loss, count of hidden positions, reconstruction, masks).

    `model` may be the HiP or its DistributedDataParallel wrapper; `layout` is the HiP's
    layout for these modalities; noise [B, N] decides which positions stay visible."""
    visible, mask = random_masking(noise, mask_ratio)
    reconstruction = model(inputs, visible=visible).reconstruction
    masks = modality_masks(layout, mask)
    loss, count = forward_loss(inputs, reconstruction, masks, norm_pix)
    return loss, count, reconstruction, masks


# ---- for figures ----

@dataclass
class Reconstructions:
    """Examples on their grid, in dataset units: arrays [n, *grid, C] (mask [n, *grid])."""

    input: np.ndarray
    masked: np.ndarray          # the input with hidden positions set to NaN
    reconstruction: np.ndarray
    mask: np.ndarray            # True where hidden from the encoder
    modality: str
    grid: tuple[int, ...]


def to_grid(x: torch.Tensor, spec: ModalitySpec) -> torch.Tensor:
    """[n, M, ...] in input order -> [n, *grid, ...] in raster order."""
    if spec.order is not None:
        raster = torch.empty_like(x)
        raster[:, spec.order] = x
        x = raster
    return x.reshape(x.shape[0], *spec.grid, *x.shape[2:])


@torch.no_grad()
def reconstruct_examples(model, dataset, indices, *, mask_ratio: float = 0.85, seed: int = 0,
                         norm_pix: bool = False, modality: str | None = None) -> Reconstructions:
    """(input, masked input, reconstruction) of test examples `indices` for one modality.

    The masks are the evaluation masks (fixed by seed and index). With norm_pix the model
    predicts normalised targets; they are mapped back with each example's own statistics,
    as MAE's figures do."""
    indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    inputs, _ = dataset.get_batch(indices)
    device = next(model.parameters()).device
    inputs = {n: x.to(device) for n, x in inputs.items()}
    layout = model.layout(tuple(n for n in model.modalities if n in inputs))
    was_training = model.training
    model.eval()
    noise = fixed_noise(indices, layout.group_size, seed).to(device)
    _, _, reconstruction, masks = mae_loss(model, layout, inputs, noise, mask_ratio, norm_pix)
    model.train(was_training)
    name = modality or next(iter(inputs))
    x, rec, hidden = inputs[name].float(), reconstruction[name].float(), masks[name]
    if norm_pix:
        rec = rec * (x.var(dim=1, keepdim=True, unbiased=False) + 1e-6).sqrt() + x.mean(dim=1, keepdim=True)
    mean, std = getattr(dataset, "mean", {}).get(name), getattr(dataset, "std", {}).get(name)
    if mean is not None and std is not None:
        x, rec = x * std.to(device) + mean.to(device), rec * std.to(device) + mean.to(device)
    masked = x.masked_fill(hidden[..., None], float("nan"))
    spec = model.modalities[name]
    x, masked, rec, hidden = (to_grid(t.cpu(), spec).numpy() for t in (x, masked, rec, hidden))
    return Reconstructions(x, masked, rec, hidden, name, spec.grid)
