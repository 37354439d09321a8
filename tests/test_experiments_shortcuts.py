"""Shortcut baselines: 1-NN on radius histograms, and on distance histograms plus PCA eigenvalues."""

import math

import pytest
import torch

from hipcore.data import load_dataset
from hipcore.experiments import shortcuts


def _rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    q = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).T
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], 1)


def _posed(points: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each cloud randomly rotated, scaled and moved: what the features must not see."""
    n = len(points)
    scale = torch.exp(torch.rand(n, 1, 1, generator=gen, dtype=torch.float64) - 0.5)
    shift = torch.randn(n, 1, 3, generator=gen, dtype=torch.float64)
    return (points @ _rotations(n, gen).transpose(1, 2)) * scale + shift


def _spheres(n, p, gen):
    x = torch.randn(n, p, 3, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=-1, keepdim=True)


def _cubes(n, p, gen):
    x = torch.rand(n, p, 3, generator=gen, dtype=torch.float64) * 2 - 1
    axis = torch.randint(0, 3, (n, p), generator=gen)
    side = torch.randint(0, 2, (n, p), generator=gen).double() * 2 - 1
    return x.scatter(2, axis[..., None], side[..., None])                # on a face


def _helices(n, p, gen, handed: float):
    t = torch.rand(n, p, generator=gen, dtype=torch.float64) * 4 * math.pi
    x = torch.stack([torch.cos(t), handed * torch.sin(t), t / (2 * math.pi) - 1], -1)
    return x + 0.02 * torch.randn(n, p, 3, generator=gen, dtype=torch.float64)


def _split(make_a, make_b, n_train, n_test, gen):
    def part(n):
        x = torch.cat([_posed(make_a(n), gen), _posed(make_b(n), gen)])
        return x, torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    return (*part(n_train), *part(n_test))


def test_features_shapes_and_invariances():
    gen = torch.Generator().manual_seed(0)
    x = _cubes(6, 300, gen)
    r, d = shortcuts.radius_histogram(x), shortcuts.distance_pca(x)
    assert r.shape == (6, shortcuts.BINS) and d.shape == (6, shortcuts.BINS + 3)
    assert torch.allclose(r.sum(1), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(d[:, :-3].sum(1), torch.ones(6, dtype=torch.float64))
    assert (d[:, -3] >= d[:, -2]).all() and (d[:, -2] >= d[:, -1]).all()
    moved = _posed(x, gen)[:, torch.randperm(300, generator=gen)]
    assert torch.allclose(shortcuts.radius_histogram(moved), r, atol=0.01)       # a point may change bin
    assert torch.allclose(shortcuts.distance_pca(moved)[:, -3:], d[:, -3:], atol=1e-6)


def test_bad_clouds_are_refused():
    with pytest.raises(ValueError, match=r"\[N, P, 3\]"):
        shortcuts.radius_histogram(torch.zeros(2, 5, 2))
    bad = torch.zeros(2, 5, 3)
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        shortcuts.distance_pca(bad)
    with pytest.raises(ValueError, match="at least one"):
        shortcuts.nearest_neighbour_accuracy(torch.zeros(0, 2), torch.zeros(0), torch.zeros(1, 2), torch.zeros(1))


def test_nearest_neighbour_weighs_features_after_z_scoring():
    # raw distances would follow the wide feature 1 to class 0; z-scored, feature 0 counts as
    # much and puts the test point next to class 1. A constant feature 2 changes nothing.
    train = torch.tensor([[0.0, 0.0, 7.0], [1.0, 100.0, 7.0]], dtype=torch.float64)
    test = torch.tensor([[1.0, 30.0, 7.0]], dtype=torch.float64)
    assert shortcuts.nearest_neighbour_accuracy(train, torch.tensor([0, 1]), test, torch.tensor([1])) == 100.0
    assert shortcuts.nearest_neighbour_accuracy(train[:, :2], torch.tensor([0, 1]), test[:, :2],
                                                torch.tensor([1])) == 100.0
    assert shortcuts.chance(torch.tensor([0, 0, 1, 2])) == 50.0


def test_baselines_succeed_where_the_radial_profile_differs():
    gen = torch.Generator().manual_seed(2)
    data = _split(lambda n: _spheres(n, 256, gen), lambda n: _cubes(n, 256, gen), 40, 40, gen)
    scores = shortcuts.shortcut_scores(*data)
    assert set(scores) == set(shortcuts.BASELINES)
    assert all(score >= 90 for score in scores.values()), scores


def test_baselines_fail_on_mirror_images():
    """A helix and its mirror image share every distance, radius and eigenvalue."""
    gen = torch.Generator().manual_seed(3)
    data = _split(lambda n: _helices(n, 256, gen, 1.0), lambda n: _helices(n, 256, gen, -1.0), 60, 60, gen)
    scores = shortcuts.shortcut_scores(*data)
    assert all(score <= 70 for score in scores.values()), scores          # chance is 50 (sd about 4.6)


def test_baselines_near_chance_on_parts3d_and_high_on_shapes3d():
    size = dict(num_points=256, train_per_class=40, test_per_class=20)
    scores = {}
    for name in ("parts3d", "shapes3d"):
        train, test = (load_dataset(name, split, **size) for split in ("train", "test"))
        scores[name] = shortcuts.shortcut_scores(train.points, train.labels, test.points, test.labels)
    assert all(s < 20 for s in scores["parts3d"].values()), scores        # chance 10 (sd about 2.1)
    assert all(s > 60 for s in scores["shapes3d"].values()), scores
