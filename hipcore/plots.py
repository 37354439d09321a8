"""Figures the notebooks share: groups on an image, attention maps, learned position tables.

Every function that draws returns the matplotlib Figure; `save_figure` writes PNG and SVG.
Values in a flattened input order are put back on the pixel grid with `data.orderings.to_grid`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from .data.orderings import to_grid


def save_figure(fig: plt.Figure, stem: str | Path) -> list[Path]:
    """Write `stem.png` (150 dpi) and `stem.svg`; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def group_map(num_inputs: int, num_groups: int, order: torch.Tensor | None, height: int, width: int) -> np.ndarray:
    """[H, W] group index of every pixel when the flattened input is cut into contiguous groups."""
    per_group = -(-num_inputs // num_groups)
    groups = torch.arange(num_inputs) // per_group                     # [M], in input order
    return to_grid(groups[:, None].float(), order, height, width)[..., 0].numpy()


def draw_groups(image: np.ndarray, num_groups: int, order: torch.Tensor | None = None,
                title: str = "") -> plt.Figure:
    """The image beside its first-level groups (each colour one group)."""
    h, w = image.shape[:2]
    groups = group_map(h * w, num_groups, order, h, w)
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None)
    axes[0].set_title("input")
    axes[1].imshow(groups, cmap="tab20", interpolation="nearest")
    axes[1].set_title(f"{num_groups} groups")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    return fig


def latent_attention_map(weights: torch.Tensor, group: int, latent: int, group_size: int,
                         order: torch.Tensor | None, height: int, width: int) -> np.ndarray:
    """[H, W] first-level attention of one latent of one group, zero outside its group.

    weights: [G, heads, K, N] for one example (the recorded first cross-attention).
    """
    m = height * width
    row = torch.zeros(weights.shape[0] * group_size)
    row[group * group_size:(group + 1) * group_size] = weights[group, :, latent].mean(0)
    return to_grid(row[:m, None], order, height, width)[..., 0].numpy()


def pca_rgb(table: torch.Tensor, order: torch.Tensor | None, height: int, width: int) -> np.ndarray:
    """First three principal components of a position table [M, P], as RGB on the grid."""
    x = table.detach().float()
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    comps = x @ v[:3].T                                                 # [M, 3]
    lo, hi = comps.amin(0, keepdim=True), comps.amax(0, keepdim=True)
    comps = (comps - lo) / (hi - lo).clamp_min(1e-12)
    return to_grid(comps, order, height, width).numpy()


def similarity_maps(table: torch.Tensor, order: torch.Tensor | None, height: int, width: int,
                    pixels: list[tuple[int, int]]) -> list[np.ndarray]:
    """Cosine similarity of every position's embedding to that of each chosen (row, col) pixel."""
    x = torch.nn.functional.normalize(table.detach().float(), dim=-1)
    grid = to_grid(x, order, height, width)                             # [H, W, P]
    return [(grid @ grid[r, c]).numpy() for r, c in pixels]


def draw_position_tables(tables: dict[str, torch.Tensor], order: torch.Tensor | None, height: int,
                         width: int, pixels: list[tuple[int, int]]) -> plt.Figure:
    """One row per table: PCA as RGB, then a similarity map per chosen pixel (marked)."""
    fig, axes = plt.subplots(len(tables), 1 + len(pixels), squeeze=False,
                             figsize=(2.2 * (1 + len(pixels)), 2.3 * len(tables)))
    for row, (name, table) in zip(axes, tables.items()):
        row[0].imshow(pca_rgb(table, order, height, width), interpolation="nearest")
        row[0].set_ylabel(name)
        row[0].set_title("PCA -> RGB", fontsize=8)
        for ax, (r, c), sim in zip(row[1:], pixels, similarity_maps(table, order, height, width, pixels)):
            ax.imshow(sim, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
            ax.plot(c, r, "r+", markersize=8)
            ax.set_title(f"similarity to ({r}, {c})", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
