"""Flattening orders: permutations, inverses, drawing back on the grid, curve locality."""

import numpy as np
import pytest
import torch

from hipcore.data.orderings import (
    IMAGE_ORDERINGS,
    hilbert_index,
    image_order,
    invert_order,
    morton_index,
    point_order,
    to_grid,
)


def is_permutation(order: torch.Tensor, n: int) -> bool:
    return order.dtype == torch.long and torch.equal(order.sort().values, torch.arange(n))


@pytest.mark.parametrize("name", IMAGE_ORDERINGS)
@pytest.mark.parametrize("height,width", [(28, 28), (16, 16), (5, 7), (1, 9)])
def test_image_orders_are_permutations_with_inverses(name, height, width):
    order = image_order(name, height, width, seed=3)
    assert is_permutation(order, height * width)
    inverse = invert_order(order)
    assert torch.equal(order[inverse], torch.arange(height * width))
    assert torch.equal(inverse[order], torch.arange(height * width))


@pytest.mark.parametrize("name", IMAGE_ORDERINGS)
def test_to_grid_undoes_the_flattening(name):
    h, w, c = 6, 10, 2
    image = torch.randn(3, h, w, c)                                 # [B, H, W, C]
    order = image_order(name, h, w, seed=1)
    flat = image.reshape(3, h * w, c)[:, order]                     # element m = pixel order[m]
    assert torch.equal(to_grid(flat, order, h, w), image)
    assert torch.equal(to_grid(flat[0], order, h, w), image[0])


def test_raster_and_column_orders():
    assert image_order("raster", 2, 3).tolist() == [0, 1, 2, 3, 4, 5]
    assert image_order("column", 2, 3).tolist() == [0, 3, 1, 4, 2, 5]


def test_shuffled_depends_on_seed_only():
    assert torch.equal(image_order("shuffled", 28, 28, seed=5), image_order("shuffled", 28, 28, seed=5))
    assert not torch.equal(image_order("shuffled", 28, 28, seed=5), image_order("shuffled", 28, 28, seed=6))


def steps(order: torch.Tensor, width: int) -> torch.Tensor:
    rows, cols = order // width, order % width
    return rows.diff().abs() + cols.diff().abs()                     # Manhattan step lengths


@pytest.mark.parametrize("size", [2, 4, 8, 32, 64])
def test_hilbert_steps_are_grid_neighbours_on_power_of_two_squares(size):
    assert torch.all(steps(image_order("hilbert", size, size), size) == 1)


@pytest.mark.parametrize("height,width", [(28, 28), (24, 40), (7, 5)])
def test_hilbert_is_local_on_any_size(height, width):
    s = steps(image_order("hilbert", height, width), width).float()
    assert (s == 1).float().mean() > 0.95                             # only a few jumps
    assert s.mean() < 1.2
    assert steps(image_order("shuffled", height, width), width).float().mean() > 3


def test_hilbert_3d_visits_a_cube_in_unit_steps():
    grid = np.stack(np.meshgrid(*[np.arange(8)] * 3, indexing="ij"), -1).reshape(-1, 3)
    key = hilbert_index(grid, 3)
    assert sorted(key.tolist()) == list(range(512))
    path = grid[np.argsort(key)]
    assert np.all(np.abs(np.diff(path, axis=0)).sum(1) == 1)


def test_morton_interleaves_bits():
    assert morton_index(np.array([[0, 1], [1, 0], [1, 1], [0, 2]]), 2).tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("name", ["stored", "morton", "hilbert", "shuffled"])
def test_point_orders_are_per_cloud_permutations(name):
    points = np.random.default_rng(0).uniform(-1, 1, size=(4, 300, 3))
    order = point_order(name, points, seed=2)
    assert order.shape == (4, 300)
    assert all(sorted(row.tolist()) == list(range(300)) for row in order)
    if name in ("morton", "hilbert"):  # a space-filling curve shortens the path through the cloud
        path = np.take_along_axis(points, order[..., None], 1)
        assert np.linalg.norm(np.diff(path, axis=1), axis=-1).mean() < 0.5 * np.linalg.norm(
            np.diff(points, axis=1), axis=-1).mean()


def test_unknown_ordering_is_rejected():
    with pytest.raises(ValueError, match="zigzag.*raster"):
        image_order("zigzag", 4, 4)
    with pytest.raises(ValueError, match="raster.*stored"):
        point_order("raster", np.zeros((1, 4, 3)))
