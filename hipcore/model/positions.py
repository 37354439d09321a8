"""Positional embeddings: learned low-dimensional tables, or Fourier features of the grid.

Both give, per modality, an [M, E] array that is added to the embedded inputs and is also
the query of the reconstruction head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModalitySpec
from .layers import init_table, linear


class LearnedPositions(nn.Module):
    """One learned [M, P] table per modality, each with a bias-free P -> E map when projected.

    The official model builds one projection per modality of a call (its comment says
    shared, but Haiku names each new module apart), so we do the same.
    """

    def __init__(self, modalities: dict[str, ModalitySpec], channels: int, embed_channels: int,
                 project: bool = False):
        super().__init__()
        self.tables = nn.ParameterDict({
            name: nn.Parameter(init_table(torch.empty(spec.num_inputs, channels)))
            for name, spec in modalities.items()})
        self.projections = nn.ModuleDict({
            name: linear(channels, embed_channels, bias=False)
            if project or channels != embed_channels else nn.Identity()
            for name in modalities})

    def forward(self, name: str) -> torch.Tensor:
        return self.projections[name](self.tables[name])              # [M, E]


def fourier_features(n: int, bands: int) -> torch.Tensor:
    """[n, 2*bands + 1]: position in [-1, 1], then sin and cos at bands frequencies up to n/2."""
    pos = torch.linspace(-1.0, 1.0, n)
    freqs = torch.linspace(1.0, max(n / 2.0, 1.0), bands)
    angles = math.pi * pos[:, None] * freqs[None, :]                   # [n, bands]
    return torch.cat([pos[:, None], angles.sin(), angles.cos()], dim=-1)


class FourierPositions(nn.Module):
    """Fixed Fourier features of each modality's grid, projected to E by a learned map.

    The features of a grid point concatenate the features of its coordinates, so the
    projection is a sum of per-axis projections: an [H, W] image costs [H, E] + [W, E]
    products and one broadcast add, never the [H*W, 2*(2*bands+1)] feature array.
    """

    def __init__(self, modalities: dict[str, ModalitySpec], bands: int, embed_channels: int):
        super().__init__()
        self.grids = {name: spec.grid for name, spec in modalities.items()}
        self.projections = nn.ModuleDict({
            name: linear(len(spec.grid) * (2 * bands + 1), embed_channels, bias=False)
            for name, spec in modalities.items()})
        for name, spec in modalities.items():
            for axis, n in enumerate(spec.grid):
                self.register_buffer(f"features_{name}_{axis}", fourier_features(n, bands),
                                     persistent=False)
            if spec.order is not None:
                self.register_buffer(f"order_{name}", spec.order.clone(), persistent=False)

    def features(self, name: str) -> torch.Tensor:
        """The raw [M, P] features in input order (for inspection; forward never builds it)."""
        grid = self.grids[name]
        axes = [getattr(self, f"features_{name}_{a}") for a in range(len(grid))]
        mesh = torch.meshgrid(*[torch.arange(n) for n in grid], indexing="ij")
        feats = torch.cat([f[m.reshape(-1)] for f, m in zip(axes, mesh)], dim=-1)
        order = getattr(self, f"order_{name}", None)
        return feats if order is None else feats[order]

    def forward(self, name: str) -> torch.Tensor:
        grid = self.grids[name]
        weights = self.projections[name].weight.split(
            [getattr(self, f"features_{name}_{a}").shape[1] for a in range(len(grid))], dim=1)
        out = 0
        for axis, w in enumerate(weights):
            per_axis = getattr(self, f"features_{name}_{axis}") @ w.T          # [n_axis, E]
            shape = [1] * len(grid) + [w.shape[0]]
            shape[axis] = grid[axis]
            out = out + per_axis.reshape(shape)                                 # [*grid, E]
        out = out.reshape(-1, weights[0].shape[0])                              # [M, E] raster
        order = getattr(self, f"order_{name}", None)
        return out if order is None else out[order]
