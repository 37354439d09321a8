"""Shortcut baselines: what a point-cloud set lets a classifier get right without seeing arrangement.

Two 1-nearest-neighbour classifiers on features that see distances (from the centroid, between
points) and the cloud's spread, but not how its parts are arranged:

    radius_histogram      16-bin histogram of the points' distances from the cloud's centroid,
                          over [0, 1] after scaling each cloud by its largest radius;
    distance_pca          16-bin histogram of pairwise distances (between 256 of the points),
                          over [0, 1] after scaling by the largest one, plus the covariance's
                          three eigenvalues (largest first) of the cloud scaled into the unit ball.

Both are invariant to rotation, translation, scale and point order. Each feature is z-scored
with the training set's mean and sd before the Euclidean 1-NN (ties go to the first training
cloud). A set that tests whether a model uses positions should hold these near chance; one
where they score near a model's accuracy is separable by a radial or distance profile.

    scores = shortcut_scores(train.points, train.labels, test.points, test.labels)
    # {'radius histogram, 1-NN': top-1 %, 'distance histogram + PCA eigenvalues, 1-NN': top-1 %}
"""

from __future__ import annotations

from typing import Callable

import torch

BINS = 16
PAIRS_OF = 256             # points per cloud whose pairwise distances are histogrammed


def _centred(points: torch.Tensor) -> torch.Tensor:
    """Clouds [N, P, 3] centred on their centroids and scaled into the unit ball, float64."""
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] < 2:
        raise ValueError(f"clouds must have shape [N, P, 3] with P >= 2, got {tuple(points.shape)}")
    x = points.double()
    if not torch.isfinite(x).all():
        raise ValueError("clouds hold non-finite coordinates")
    x = x - x.mean(1, keepdim=True)
    return x / x.norm(dim=-1).amax(1).clamp_min(1e-12)[:, None, None]


def _histograms(values: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """Per-row histograms of values in [0, 1]: [N, V] -> fractions [N, bins] (1.0 in the top bin)."""
    index = (values * bins).long().clamp_(0, bins - 1)
    offsets = bins * torch.arange(values.shape[0])[:, None]
    counts = torch.bincount((index + offsets).reshape(-1), minlength=values.shape[0] * bins)
    return counts.reshape(-1, bins).double() / values.shape[1]


def radius_histogram(points: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """[N, P, 3] -> [N, bins]: fractions of points per radius bin."""
    return _histograms(_centred(points).norm(dim=-1), bins)


def distance_pca(points: torch.Tensor, bins: int = BINS, pairs_of: int = PAIRS_OF, batch: int = 64) -> torch.Tensor:
    """[N, P, 3] -> [N, bins + 3]: pairwise-distance histogram, then PCA eigenvalues.

    The distances are those between every two of `pairs_of` points per cloud (one fixed random
    choice of slots, the same for every cloud; all points when P is smaller): 32,640 pairs for
    256 points, plenty for 16 bins and a fraction of the cost of all P (P - 1) / 2."""
    x = _centred(points)
    p = x.shape[1]
    keep = torch.randperm(p, generator=torch.Generator().manual_seed(0))[:pairs_of]
    upper = torch.triu_indices(len(keep), len(keep), 1)
    features = []
    for chunk in x.split(batch):
        some = chunk[:, keep].float()                                           # [B, K, 3]
        square = (some * some).sum(-1)
        d2 = square[:, :, None] + square[:, None, :] - 2 * some @ some.transpose(1, 2)
        d = d2[:, upper[0], upper[1]].clamp_min(0).sqrt()                      # [B, K (K - 1) / 2]
        hist = _histograms(d / d.amax(1, keepdim=True).clamp_min(1e-12), bins)
        cov = chunk.transpose(1, 2) @ chunk / p                                 # [B, 3, 3], all points
        eig = torch.linalg.eigvalsh(cov).flip(-1)                               # largest first
        features.append(torch.cat([hist, eig], 1))
    return torch.cat(features)


BASELINES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "radius histogram, 1-NN": radius_histogram,
    "distance histogram + PCA eigenvalues, 1-NN": distance_pca,
}


def nearest_neighbour_accuracy(train_x: torch.Tensor, train_y: torch.Tensor,
                               test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    """Top-1 % of a Euclidean 1-NN on features z-scored by the training set's mean and sd."""
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError("1-NN needs at least one training and one test example")
    mean, sd = train_x.mean(0), train_x.std(0) if len(train_x) > 1 else torch.ones(train_x.shape[1])
    sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))         # a constant feature adds nothing
    a, b = (train_x - mean) / sd, (test_x - mean) / sd
    nearest = torch.cdist(b, a).argmin(1)                          # [N_test]
    return 100.0 * (train_y[nearest] == test_y).double().mean().item()


def shortcut_scores(train_points: torch.Tensor, train_labels: torch.Tensor,
                    test_points: torch.Tensor, test_labels: torch.Tensor) -> dict[str, float]:
    """{baseline name: test top-1 %} for every BASELINES entry."""
    return {name: nearest_neighbour_accuracy(features(train_points), train_labels,
                                             features(test_points), test_labels)
            for name, features in BASELINES.items()}


def chance(labels: torch.Tensor) -> float:
    """Top-1 % of always answering the most frequent class."""
    return 100.0 * torch.bincount(labels).max().item() / len(labels)
