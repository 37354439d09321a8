"""Whether a position table holds the image grid's geometry beyond the data's own layout.

A table can place near pixels close together for two reasons: it learned where each pixel is
on the grid (geometry, what F7 claims of MAE), or it learned what each pixel tends to hold
(content: near pixels of natural images hold similar values, so any table that encodes a
pixel's intensities, class means or covariance loadings is also smooth on the grid). The raw
correlation of row similarity with grid distance rewards both.

`partial_geometry` removes the content route: over pairs of pixels (i, j) it correlates the
cosine similarity of rows i and j with minus their grid distance after regressing both on
the data's pixel-to-pixel similarity, measured on training images in two forms: the
correlation of the two pixels' values across images (centred) and the cosine of their value
columns (uncentred, which carries the mean-intensity layout). What is left is the part of the
table's structure that the data's pixel statistics cannot explain linearly.

`GEOMETRY_PASS` is the level a table must exceed to be said to hold geometry, fixed from
control tables on Fashion-MNIST (tests/test_geometry.py): random and content-only tables
(smooth functions of each pixel's mean intensity, class-mean intensities, pixel-covariance
principal-component loadings) score below it, geometric ones (Fourier features, a table whose
row similarity is a pure function of grid distance) above it. On 2,000 training images the
controls score: random +0.00, mean-intensity sines -0.02 and bumps +0.03, class means -0.15,
covariance loadings +0.07 (scaled -0.07); Fourier features +0.47 (4 bands) and +0.16 (16
bands), grid-distance bumps +0.63. The level sits between the highest content score and the
lowest geometric one.

Pure torch; no experiment imports.
"""

from __future__ import annotations

import torch

GEOMETRY_PASS = 0.12          # partial score above which a table holds grid geometry
MAX_POSITIONS = 400           # pixels scored (a fixed random subset above this): 79,800 pairs


def data_similarity(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(correlation [M, M], uncentred cosine [M, M]) of the M pixels' values across the
    N images [N, M] (or [N, M, C], channels joined per pixel), in the images' own order."""
    x = images.detach().double()
    x = x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 1).reshape(x.shape[1], -1)     # [M, N * C]
    centred = x - x.mean(1, keepdim=True)
    corr = _unit(centred) @ _unit(centred).T
    cosine = _unit(x) @ _unit(x).T
    return corr, cosine


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _residual(values: torch.Tensor, covariates: list[torch.Tensor]) -> torch.Tensor:
    """values minus their least-squares fit on [1, covariates] (all [P])."""
    design = torch.stack([torch.ones_like(values), *covariates], 1)
    coef = torch.linalg.lstsq(design, values.unsqueeze(1)).solution
    return values - (design @ coef).squeeze(1)


def partial_geometry(table: torch.Tensor, images: torch.Tensor, grid: tuple[int, int],
                     pixels: torch.Tensor | None = None, *, max_positions: int = MAX_POSITIONS,
                     seed: int = 0) -> float:
    """The partial correlation, over pairs of rows, of the table's row similarity with minus
    grid distance, the data's pixel correlation and cosine removed (see the module docstring).

    table [M, E]: one row per input position; images [N, M] or [N, M, C]: training images in
    the same input order as the table's rows; pixels [M]: the raster index of each row on the
    (height, width) grid (None: raster order). 0 for no geometry beyond the data's layout,
    about 0.2-0.7 for tables built from grid positions."""
    m = table.shape[0]
    if images.shape[1] != m:
        raise ValueError(f"the images have {images.shape[1]} positions, the table {m}")
    pixels = torch.arange(m) if pixels is None else pixels
    if pixels.shape != (m,) or int(pixels.max()) >= grid[0] * grid[1]:
        raise ValueError(f"pixels must give one raster index on the {grid} grid per table row")
    gen = torch.Generator().manual_seed(seed)
    keep = torch.randperm(m, generator=gen)[:max_positions].sort().values if m > max_positions else torch.arange(m)
    i, j = torch.triu_indices(len(keep), len(keep), offset=1)
    rc = torch.stack([pixels[keep] // grid[1], pixels[keep] % grid[1]], -1).double()
    distance = torch.cdist(rc, rc)[i, j]                                        # [P]
    corr, cosine = data_similarity(images[:, keep])
    covariates = [corr[i, j], cosine[i, j]]
    rows = _unit(table[keep].detach().double())
    similarity = (rows @ rows.T)[i, j]                                          # [P]
    a, b = _residual(similarity, covariates), _residual(-distance, covariates)
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-12))


def holds_geometry(score: float) -> bool:
    """Whether a partial score says the table holds grid geometry (above GEOMETRY_PASS)."""
    return score > GEOMETRY_PASS
