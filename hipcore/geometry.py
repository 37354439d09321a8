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

A fixed level does not separate the two: per-pixel tables built from image content alone
score well above 0 on Fashion-MNIST (three sets of 1,000 training images: pixel mean, sd and a
constant +0.18 to +0.19, class-mean intensities +0.14 to +0.18, PCA loadings with 8 components
+0.12 to +0.16), above the level of 0.12 that F7 once used. So a table holds geometry only against controls
scored beside it (`holds_geometry`): `content_controls` builds per-pixel tables from the same
training images (pixel statistics, class-mean images, PCA loadings), `permuted` the table's own
rows on other pixels (the same values, no tie to the grid), and the table must beat the best of
them, seed by seed, by more than the seeds' spread allows by chance: the lower end of the 95% t
interval of (table minus best control) over seeds above 0. `fourier_table`, a 2-D Fourier
table, is the positive control: it scores +0.48 (4 bands) and passes; every content-only table
fails (tests/test_geometry.py, on Fashion-MNIST).

Torch and hipcore.stats; no experiment imports.
"""

from __future__ import annotations

import math

import torch

from .stats import t_interval

MAX_POSITIONS = 400           # pixels scored (a fixed random subset above this): 79,800 pairs
PCA_COMPONENTS = 8            # the PCA-loadings control's components
PIXEL_STATISTICS, CLASS_MEANS, PERMUTED = "pixel mean, sd and constant", "class-mean images", "its rows permuted"
PCA_LOADINGS = f"PCA loadings ({PCA_COMPONENTS} components)"


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


# ---- controls: tables that hold content and no geometry, and one that holds geometry ----

def _per_pixel(images: torch.Tensor) -> torch.Tensor:
    """[N, M] or [N, M, C] -> [N, M, C] in double."""
    x = images.detach().double()
    return x.reshape(x.shape[0], x.shape[1], -1)


def content_controls(images: torch.Tensor, labels: torch.Tensor,
                     components: int = PCA_COMPONENTS) -> dict[str, torch.Tensor]:
    """{name: table [M, E]} built from the training images' content alone (images [N, M] or
    [N, M, C] in the table's input order, labels [N]): each pixel's mean, sd and a constant;
    its intensity in each class's mean image (from the darkest value); its loadings on the first `components` principal
    components of the images. None of them knows where a pixel is."""
    x = _per_pixel(images)                                                   # [N, M, C]
    n, m, c = x.shape
    classes = labels.unique(sorted=True)
    intensity = x - x.amin((0, 1))                 # from the darkest value, as raw intensities are
    centred = (x - x.mean(0)).reshape(n, m * c)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)                 # v [K, M C]
    k = min(components, v.shape[0])
    return {
        PIXEL_STATISTICS: torch.cat([x.mean(0), x.std(0), torch.ones(m, 1, dtype=x.dtype)], 1),   # [M, 2C + 1]
        CLASS_MEANS: torch.cat([intensity[labels == y].mean(0) for y in classes], 1),             # [M, classes C]
        PCA_LOADINGS: v[:k].reshape(k, m, c).permute(1, 0, 2).reshape(m, k * c),                  # [M, k C]
    }


def permuted(table: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The table's rows on randomly permuted pixels [M, E]: its values, no tie to the grid."""
    return table[torch.randperm(table.shape[0], generator=torch.Generator().manual_seed(seed))]


def fourier_table(grid: tuple[int, int], pixels: torch.Tensor | None = None, bands: int = 4) -> torch.Tensor:
    """A 2-D Fourier table [M, 4 bands]: sin and cos of row and column at frequencies
    k pi / side, k = 1..bands, for each row's raster pixel (None: raster order)."""
    h, w = grid
    pixels = torch.arange(h * w) if pixels is None else pixels
    rc = torch.stack([pixels // w / h, pixels % w / w], -1).double() * math.pi    # [M, 2]
    angles = (rc[:, :, None] * torch.arange(1, bands + 1).double()).reshape(len(pixels), -1)
    return torch.cat([angles.sin(), angles.cos()], 1)


def holds_geometry(scores: list[float], controls: dict[str, list[float]]) -> bool:
    """Whether a table's partial scores (one per seed) beat every content-only control's
    ({name: score per seed}) by a margin set from the seeds' spread: the 95% t interval of
    (score minus the best control), over the seeds, lies above 0. One seed shows no spread,
    so it never says so."""
    if not controls:
        raise ValueError("holds_geometry needs at least one control to beat")
    if any(len(v) != len(scores) for v in controls.values()):
        raise ValueError(f"every control needs one score per seed ({len(scores)})")
    gaps = [s - max(v[i] for v in controls.values()) for i, s in enumerate(scores)]
    return len(gaps) >= 2 and t_interval(gaps).low > 0
