"""Figures the notebooks share: groups on an image, attention maps, learned position tables.

Every function that draws returns the matplotlib Figure; `save_figure` writes PNG and SVG.
Values in a flattened input order are put back on the pixel grid with `data.orderings.to_grid`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from .data.orderings import to_grid

# How titles name datasets and model variants (never their code names).
NAMES = {"fashion_mnist": "Fashion-MNIST", "imagefolder": "image folder", "shapes3d": "3-D shapes",
         "parts3d": "3-D part assemblies", "modelnet40": "ModelNet40", "small3": "small HiP (16-1-16 groups)",
         "small5": "small 5-block HiP", "hip16": "HiP-16", "hip256": "HiP-256", "mini": "HiP Mini",
         "perceiver_small": "small flat Perceiver IO",
         "perceiver_io_imagenet": "Perceiver IO (ImageNet configuration)"}


def readable(name: str) -> str:
    """A dataset's or variant's name for a title: 'fashion_mnist' -> 'Fashion-MNIST'."""
    return NAMES.get(name, name.replace("_", " "))


def wrap_labels(labels: list[str], width: int = 16) -> list[str]:
    """Tick labels broken at spaces into lines of at most `width` characters, so neighbours
    never overlap."""
    return ["\n".join(textwrap.wrap(label, width, break_on_hyphens=False)) for label in labels]


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


def draw_attention(image: np.ndarray, maps: list[np.ndarray], titles: list[str], title: str) -> plt.Figure:
    """The input beside attention maps on the pixel grid, each with its colour bar."""
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(2.9 * (1 + len(maps)), 2.9), layout="constrained")
    axes[0].imshow(image.squeeze(), cmap="gray")
    axes[0].set_title("input", fontsize=9)
    for ax, amap, name in zip(axes[1:], maps, titles):
        shown = ax.imshow(amap, cmap="magma", interpolation="nearest")
        fig.colorbar(shown, ax=ax, shrink=0.8, label="attention weight")
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig


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
    """One row per table: PCA as RGB, then a similarity map per chosen pixel (marked), with
    one colour bar for every similarity map (cosine similarity, -1 to 1)."""
    fig, axes = plt.subplots(len(tables), 1 + len(pixels), squeeze=False, layout="constrained",
                             figsize=(2.2 * (1 + len(pixels)) + 0.8, 2.3 * len(tables)))
    for row, (name, table) in zip(axes, tables.items()):
        row[0].imshow(pca_rgb(table, order, height, width), interpolation="nearest")
        row[0].set_ylabel(name)
        row[0].set_title("PCA -> RGB", fontsize=8)
        for ax, (r, c), sim in zip(row[1:], pixels, similarity_maps(table, order, height, width, pixels)):
            shown = ax.imshow(sim, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
            ax.plot(c, r, "r+", markersize=8)
            ax.set_title(f"similarity to ({r}, {c})", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    if pixels:
        fig.colorbar(shown, ax=axes[:, 1:].ravel().tolist(), shrink=0.6, label="cosine similarity")
    return fig


def draw_baselines(arms: dict[str, list[float]], baselines: list[dict], title: str,
                   chance: float | None = None) -> plt.Figure:
    """The arms' test top-1 (one dot per seed, a bar at the mean) beside the reference baselines
    as horizontal lines at their mean over seeds (rows as experiments.baselines writes them:
    model, seed, test_accuracy in %), so the regime of a comparison is visible at a glance."""
    if not arms:
        raise ValueError("draw_baselines needs at least one arm")
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(arms), 3.6), layout="constrained")
    for i, (label, values) in enumerate(arms.items()):
        ax.scatter([i] * len(values), values, color="C0", s=18, zorder=3)
        if values:
            ax.hlines(np.mean(values), i - 0.25, i + 0.25, color="C0", lw=2, zorder=3)
    models = list(dict.fromkeys(r["model"] for r in baselines))
    for j, model in enumerate(models):
        mean = np.mean([r["test_accuracy"] for r in baselines if r["model"] == model])
        ax.axhline(mean, color=f"C{j + 1}", ls="--", lw=1, label=f"{model} ({mean:.1f})")
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", lw=1, label=f"chance ({chance:.0f})")
    ax.set_xticks(range(len(arms)), wrap_labels(list(arms)))
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title, fontsize=9)
    if models or chance is not None:
        ax.legend(fontsize=7, loc="best", title="reference baselines", title_fontsize=7)
    return fig


def draw_learning_curves(curves: dict[str, list[dict]], title: str) -> plt.Figure:
    """Per arm, validation top-1 and loss per epoch (solid lines), and the test set's, evaluated
    once on the checkpoint validation selected, as a star at that epoch, from a run's tidy
    metrics rows (`train.read_metrics(run_dir)`: split 'val' / 'test', metric 'accuracy' /
    'loss', epoch filled in). Runs from before the test set was evaluated once hold a test row
    per epoch: drawn dashed. An MAE run (no accuracy) draws its losses only."""
    if not curves:
        raise ValueError("draw_learning_curves needs at least one arm")
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for i, (label, rows) in enumerate(curves.items()):
        for ax, metric, scale in ((acc, "accuracy", 100.0), (loss, "loss", 1.0)):
            for split in ("val", "test"):
                points = sorted((r["epoch"], r["value"]) for r in rows
                                if r["split"] == split and r["metric"] == metric)
                if not points:
                    continue
                epochs, values = zip(*points)
                once = split == "test" and len(points) == 1
                style = {"ls": "-", "marker": "."} if split == "val" else (
                    {"ls": "", "marker": "*", "markersize": 10} if once else {"ls": "--", "marker": "."})
                name = "validation" if split == "val" else "test, selected epoch" if once else "test"
                ax.plot(epochs, np.asarray(values) * scale, color=f"C{i}", label=f"{label}, {name}", **style)
    acc.set_ylabel("top-1 (%)")
    loss.set_ylabel("loss")
    for ax in (acc, loss):
        ax.set_xlabel("epoch")
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig
