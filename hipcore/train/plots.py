"""Figures of a run: MAE reconstructions (input, masked input, reconstruction)."""

from __future__ import annotations

import numpy as np

from .mae import Reconstructions

MASK_COLOUR = (0.15, 0.45, 0.85)          # hidden pixels in the masked column: blue, not background


def plot_reconstructions(rec: Reconstructions, *, cmap: str = "gray", title: str | None = None):
    """One row per example: input | masked input | reconstruction. 2-D grids are drawn as
    images (1 or 3 channels); 1-D modalities of 3 channels as point clouds, seen from above
    (hidden points light grey in the masked column). Hidden pixels are drawn in MASK_COLOUR.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    shades = plt.get_cmap(cmap).with_extremes(bad=MASK_COLOUR)
    n, columns = len(rec.input), ("input", "masked", "reconstruction")
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        for j, (name, data) in enumerate(zip(columns, (rec.input, rec.masked, rec.reconstruction))):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title("masked (hidden: blue)" if name == "masked" and len(rec.grid) == 2 else name,
                             fontsize=9)
            if len(rec.grid) == 2:
                image = data[i]
                if image.shape[-1] == 1:
                    ax.imshow(image[..., 0], cmap=shades, vmin=np.nanmin(rec.input), vmax=np.nanmax(rec.input))
                else:
                    hidden = np.isnan(image).any(-1, keepdims=True)
                    ax.imshow(np.where(hidden, np.asarray(MASK_COLOUR), np.clip(np.nan_to_num(image), 0, 1)))
            elif data.shape[-1] == 3:
                points = rec.input[i] if name == "masked" else data[i]
                colour = np.where(rec.mask[i], "0.85", "C0") if name == "masked" else "C0"
                ax.scatter(points[:, 0], points[:, 1], s=2, c=colour)
                ax.set_aspect("equal")
            else:
                raise ValueError(f"cannot draw modality {rec.modality!r} with grid {rec.grid} "
                                 f"and {data.shape[-1]} channels")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
