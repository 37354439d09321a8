"""The F7 geometry score: tables holding only the data's layout fail it, grid tables pass."""

import math

import pytest
import torch

from hipcore.data import load_dataset
from hipcore.geometry import GEOMETRY_PASS, data_similarity, holds_geometry, partial_geometry

GRID = (28, 28)


@pytest.fixture(scope="module")
def data():
    train = load_dataset("fashion_mnist", "train")
    inputs, labels = train.get_batch(torch.arange(2000))
    return inputs["image"][..., 0].double(), labels                   # [N, 784] raster order, [N]


def grid_positions():
    idx = torch.arange(GRID[0] * GRID[1])
    return torch.stack([idx // GRID[1], idx % GRID[1]], -1).double()  # [784, 2] (row, col)


def fourier(bands):
    rc = grid_positions() * math.pi / GRID[0]
    k = torch.arange(1, bands + 1).double()
    angles = (rc[:, :, None] * k).reshape(len(rc), -1)                # [784, 2 * bands]
    return torch.cat([angles.sin(), angles.cos()], 1)


def distance_table():
    """Rows whose cosine similarity is a function of grid distance alone: Gaussian bumps on
    an 8 x 8 lattice of centres."""
    centres = torch.stack(torch.meshgrid(torch.linspace(0, 27, 8), torch.linspace(0, 27, 8), indexing="ij"), -1)
    return torch.exp(-torch.cdist(grid_positions(), centres.reshape(-1, 2).double()) ** 2 / 16)


def content_tables(images, labels):
    mean = images.mean(0)                                             # [784] each pixel's mean intensity
    k = torch.arange(1, 17).double()
    centred = images - mean
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    return {
        "random": torch.randn(784, 64, generator=torch.Generator().manual_seed(0), dtype=torch.double),
        "sines of mean intensity": torch.cat([(3 * mean[:, None] * k).sin(), (3 * mean[:, None] * k).cos()], 1),
        "bumps of mean intensity": torch.exp(-(mean[:, None] - torch.linspace(0, 1, 32).double()) ** 2 / 0.01),
        "class-mean intensities": torch.stack([images[labels == c].mean(0) for c in range(10)], 1),
        "covariance loadings": v[:32].T,
        "covariance loadings, scaled": v[:32].T * s[:32],
    }


def test_content_only_tables_fail(data):
    images, labels = data
    for name, table in content_tables(images, labels).items():
        score = partial_geometry(table, images, GRID)
        assert not holds_geometry(score), f"{name} scores {score:+.3f}"


@pytest.mark.parametrize("name, table", [("Fourier, 4 bands", fourier(4)), ("Fourier, 16 bands", fourier(16)),
                                         ("pure grid distance", distance_table())])
def test_geometric_tables_pass(data, name, table):
    score = partial_geometry(table, data[0], GRID)
    assert holds_geometry(score) and score > GEOMETRY_PASS, f"{name} scores {score:+.3f}"


def test_the_score_follows_the_rows_in_any_input_order(data):
    images, _ = data
    order = torch.randperm(784, generator=torch.Generator().manual_seed(1))    # row r shows raster pixel order[r]
    table = distance_table()
    raster = partial_geometry(table, images, GRID, seed=3)
    shuffled = partial_geometry(table[order], images[:, order], GRID, pixels=order, seed=3)
    assert holds_geometry(shuffled) and abs(shuffled - raster) < 0.1
    assert not holds_geometry(partial_geometry(table[order], images[:, order], GRID, seed=3))   # wrong pixel map
    with pytest.raises(ValueError, match="positions"):
        partial_geometry(table[:100], images, GRID)


def test_data_similarity_is_a_correlation():
    x = torch.tensor([[0.0, 1.0, 2.0], [1.0, 3.0, 0.0], [2.0, 5.0, 1.0]])
    corr, cosine = data_similarity(x)
    assert corr[0, 1].item() == pytest.approx(1.0)
    assert torch.allclose(corr.diagonal(), torch.ones(3, dtype=torch.double))
    assert 0 < cosine[0, 2].item() < 1
