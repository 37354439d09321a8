"""Reference baselines: small standard classifiers trained on exactly an arm's data.

A finding compares HiP arms with each other; these rows say what regime the arms are in. Each
baseline trains on the same training subset an arm trains on (`arm_data`: the same dataset,
options, limit and seed, and the same validation carve-out when the run has one) and is
evaluated on the same test set, once per seed.

    images        'logistic regression'   softmax regression on pixels standardised with the
                                          training set's per-pixel mean and sd (full-batch L-BFGS)
                  'MLP (256 hidden)'       two layers, ReLU, Adam
                  'small CNN'              three 3x3 conv layers (2x2 max-pooling after the first
                                          two), a 128-unit layer on the flattened map; Adam
    point clouds  'PointNet'               shared per-point MLP, max-pool over points, MLP; Adam
    (order-free)  'PointNet++-style'       farthest-point centres, k-nearest-neighbour groups in
                                          centre-relative coordinates, a shared MLP max-pooled
                                          per group, then over the groups; Adam
                  'local shape + logistic regression'
                                          per point: eigenvalues of its k-neighbourhood's
                                          covariance (linear / planar / scattered, and the scale);
                                          their mean, sd and quartiles pooled separately over the
                                          upper and the lower half of the cloud (along the
                                          dataset's up axis), then softmax regression (L-BFGS)

    dense         'small U-Net'            a label per pixel (notebook 07): two levels of 3x3 conv
    (per pixel)                            pairs with 2x2 max-pooling down, a bottom pair, and two
                                          levels up (2x2 transposed conv, the skip from the same
                                          level concatenated, a conv pair), a 1x1 conv to the
                                          classes; Adam on per-pixel cross-entropy, scored by
                                          mean IoU (background included) and pixel accuracy

Point-cloud baselines train on the clouds as stored (no augmentation).

Each baseline is tuned the way a reader would tune it: its main knob (`KNOBS`: the L2 strength
of the L-BFGS models and of the MLP, the epochs of the Adam-trained models) takes the value of
a small grid stated here that scores best on the run's validation split (ties go to the
stronger L2 and the fewer epochs); the test set is scored once, with the chosen value. The
epochs are read off one run per L2 value: the model after e epochs of a longer run is the
model an e-epoch run trains (the same seed, no schedule). A chosen value at the edge of its
grid is said in the row (`edge`), since a wider grid might have done better. Every row is tidy:

    rows = image_baselines(train_set, val_set, test_set, seed=0)
    # [{'model': 'logistic regression', 'seed': 0, 'l2': 0.03, 'epochs': None, 'val_accuracy': 84.5,
    #   'train_accuracy': 89.0, 'test_accuracy': 83.4, 'edge': '', 'seconds': 9.1,
    #   'train_size': 5400, 'val_size': 600, 'test_size': 2000}, ...]
    write_baselines(results_folder, rows)      # results/<notebook>/<profile>/baselines.csv
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .. import results
from ..data.orderings import to_grid
from ..files import write_csv_atomic
from ..train.config import TrainConfig
from ..train.engine import load_data
from ..train.validation import split_validation

COLUMNS = ("model", "seed", "l2", "epochs", "val_accuracy", "train_accuracy", "test_accuracy", "edge", "seconds",
           "train_size", "val_size", "test_size")
# baselines.csv before the baselines were tuned on validation (fixed L2 and epochs): still read
OLD_COLUMNS = ("model", "seed", "test_accuracy", "train_accuracy", "seconds", "train_size", "test_size")
IMAGE_MODELS = ("logistic regression", "MLP (256 hidden)", "small CNN")
POINT_MODELS = ("PointNet", "PointNet++-style", "local shape + logistic regression")
DENSE_MODELS = ("small U-Net",)
FILE_NAME = "baselines.csv"
# A dense baseline's row: mIoU chosen on validation, train and test mIoU and pixel accuracy (%).
DENSE_COLUMNS = ("model", "seed", "epochs", "width", "val_miou", "train_miou", "test_miou", "train_pixel_accuracy",
                 "test_pixel_accuracy", "edge", "seconds", "train_size", "val_size", "test_size")


@dataclass(frozen=True)
class Knobs:
    """The grids a baseline is tuned over on the validation split; None leaves a knob alone (the
    Adam-trained convolutional and point nets take no L2; L-BFGS runs to its iterations)."""

    l2: tuple[float, ...] | None = None      # l2 * |weights|^2 / 2 added to the mean cross-entropy
    epochs: tuple[int, ...] | None = None    # Adam epochs

    def checked(self, name: str) -> "Knobs":
        """Itself, or one clear error naming the model and the knob whose grid is empty."""
        for knob in ("l2", "epochs"):
            grid = getattr(self, knob)
            if grid is not None and len(grid) == 0:
                raise ValueError(f"baseline {name!r}: its {knob} grid is empty; give it at least one value")
        return self


L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)     # half-decades: the L-BFGS models
MLP_L2_GRID = (0.0, 1e-4, 1e-3, 1e-2)
# To 60: up to 30, the small CNN chose 30, the grid's edge, on every seed of quick's notebook 01
# and the MLP on one (a 2-core AMD EPYC Zen 4).
EPOCH_GRID = (2, 4, 6, 8, 10, 15, 20, 25, 30, 40, 50, 60)
KNOBS = {
    "logistic regression": Knobs(l2=L2_GRID),
    "MLP (256 hidden)": Knobs(l2=MLP_L2_GRID, epochs=EPOCH_GRID),
    "small CNN": Knobs(epochs=EPOCH_GRID),
    "PointNet": Knobs(epochs=EPOCH_GRID),
    "PointNet++-style": Knobs(epochs=EPOCH_GRID),
    "local shape + logistic regression": Knobs(l2=L2_GRID),
    "small U-Net": Knobs(epochs=(2, 4, 6, 8, 10, 15, 20)),
}
UNET_WIDTH = 16                # the small U-Net's channels at full resolution (x2 per level down)


# ---- data ----

def arm_data(cfg: TrainConfig, train_data=None, test_data=None):
    """(train, validation, test) exactly as the run `cfg` trains, selects and tests on: its
    subset of the training set without the validation examples, those examples, and its test
    set. The baselines are tuned on the validation part, so a run without one is refused."""
    train_set, test_set = load_data(cfg, train_data, test_data)
    train_set, val_set = split_validation(train_set, cfg)
    if val_set is None:
        raise ValueError(f"the baselines are tuned on the run's validation split, and run {cfg.run_id} has "
                         "none: give the profile a val_fraction > 0")
    return train_set, val_set, test_set


def arrays(dataset, batch: int = 1024) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every example, unaugmented: ({modality: [N, M, C]}, labels [N])."""
    parts, labels = [], []
    for chunk in torch.arange(len(dataset)).split(batch):
        inputs, y = dataset.get_batch(chunk)
        parts.append(inputs)
        labels.append(y)
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, torch.cat(labels)


def the_modality(dataset, kind: str) -> str:
    """The dataset's single modality; a clear error for a multi-modal one."""
    names = list(dataset.modalities)
    if len(names) != 1:
        raise ValueError(f"{kind} baselines take one modality, the dataset has {names}")
    return names[0]


def image_grid(dataset) -> torch.Tensor:
    """The dataset's images on their pixel grid: [N, C, H, W] (normalised as the model sees them)."""
    name = the_modality(dataset, "image")
    spec = dataset.modalities[name]
    if len(spec.grid) != 2:
        raise ValueError(f"image baselines need a 2-D grid, modality {name!r} has grid {spec.grid}")
    inputs, _ = arrays(dataset)
    return to_grid(inputs[name], spec.order, *spec.grid).permute(0, 3, 1, 2).contiguous()


def clouds(dataset) -> torch.Tensor:
    """The dataset's point clouds [N, P, 3]."""
    name = the_modality(dataset, "point-cloud")
    inputs, _ = arrays(dataset)
    x = inputs[name]
    if x.shape[-1] != 3:
        raise ValueError(f"point-cloud baselines need 3 coordinates per point, got {x.shape[-1]}")
    return x


# ---- fitting ----

def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(-1) == labels).double().mean().item()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model(chunk) for chunk in x.split(batch)])


def penalty(model: nn.Module, l2: float) -> torch.Tensor | float:
    """l2 * |weights|^2 / 2 over the weight matrices and kernels (no biases): one L2 for both fits."""
    return 0.5 * l2 * sum(p.square().sum() for p in model.parameters() if p.ndim > 1) if l2 else 0.0


def fit_adam(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int,
             lr: float = 1e-3, batch_size: int = 128, l2: float = 0.0,
             after_epoch: Callable[[int, nn.Module], None] | None = None) -> nn.Module:
    """Minibatch Adam on cross-entropy + the L2 penalty, shuffled with `seed`;
    after_epoch(e, model) after each epoch e = 1..epochs."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        model.train()
        for chunk in torch.randperm(len(x), generator=g).split(batch_size):
            loss = F.cross_entropy(model(x[chunk]), y[chunk]) + penalty(model, l2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if after_epoch is not None:
            after_epoch(epoch, model)
    return model


def fit_lbfgs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, l2: float,
              iterations: int = 200) -> nn.Module:
    """Full-batch L-BFGS on cross-entropy + the L2 penalty (a convex problem for a linear model)."""
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=iterations,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y) + penalty(model, l2)
        loss.backward()
        return loss

    model.train()
    optimizer.step(closure)
    return model


class Standardise(nn.Module):
    """(x - mean) / sd with the training features' statistics (constant features left at 0)."""

    def __init__(self, train_x: torch.Tensor):
        super().__init__()
        sd = train_x.std(0)
        self.register_buffer("mean", train_x.mean(0))
        self.register_buffer("sd", torch.where(sd > 1e-8, sd, torch.ones_like(sd)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.sd


Split = tuple[torch.Tensor, torch.Tensor]         # (inputs [N, ...], labels [N])


Score = Callable[[torch.Tensor, torch.Tensor], float]       # (outputs, labels) -> a % that rises as it learns


def candidates(knobs: Knobs, seed: int, train: Split, val: Split, build: Callable[[], nn.Module],
               score: Score = accuracy):
    """(val score, l2, epochs, weights) for every point of the grid: one fit per L2 value,
    its epochs read off after each epoch of the grid (Adam), or L-BFGS to its iterations.
    score: top-1 by default (a dense baseline's: mIoU)."""
    out = []
    for l2 in knobs.l2 if knobs.l2 is not None else (0.0,):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()
            if knobs.epochs is None:
                fit_lbfgs(model, *train, l2=l2)
                out.append((score(predict(model, val[0]), val[1]), l2, None, model.state_dict()))
                continue

            def keep(epoch: int, m: nn.Module, l2: float = l2) -> None:
                if epoch in knobs.epochs:
                    out.append((score(predict(m, val[0]), val[1]), l2, epoch, copy.deepcopy(m.state_dict())))

            fit_adam(model, *train, epochs=max(knobs.epochs), seed=seed, l2=l2, after_epoch=keep)
    return out


def edge(knobs: Knobs, l2: float, epochs: int | None) -> str:
    """'' or which chosen value lies at the edge of its grid (a wider grid might do better)."""
    said = []
    for knob, grid, value in (("l2", knobs.l2, l2), ("epochs", knobs.epochs, epochs)):
        if grid is not None and value in (min(grid), max(grid)):
            said.append(f"{knob} {value:g} is the {'lowest' if value == min(grid) else 'highest'} of its grid")
    return "; ".join(said)


def tuned_row(name: str, seed: int, train: Split, val: Split, test: Split, build: Callable[[], nn.Module],
              knobs: Knobs) -> dict[str, Any]:
    """Tune one baseline's knobs on `val`, then score the chosen model on train and test once."""
    start = time.perf_counter()
    knobs = knobs.checked(name)
    scored = candidates(knobs, seed, train, val, build)
    # the best validation top-1; ties to the stronger L2, then to the fewer epochs
    val_accuracy, l2, epochs, weights = max(scored, key=lambda c: (c[0], c[1], -(c[2] or 0)))
    with torch.random.fork_rng(devices=[]):
        model = build()
    model.load_state_dict(weights)
    return {"model": name, "seed": seed, "l2": l2 if knobs.l2 is not None else None, "epochs": epochs,
            "val_accuracy": val_accuracy, "train_accuracy": accuracy(predict(model, train[0]), train[1]),
            "test_accuracy": accuracy(predict(model, test[0]), test[1]), "edge": edge(knobs, l2, epochs),
            "seconds": time.perf_counter() - start, "train_size": len(train[1]), "val_size": len(val[1]),
            "test_size": len(test[1])}


def grids(models: tuple[str, ...], known: tuple[str, ...], kind: str,
          knobs: Mapping[str, Knobs] | None) -> dict[str, Knobs]:
    """KNOBS for `models`, with `knobs` overriding some; a clear error for an unknown model."""
    unknown = sorted((set(models) | set(knobs or {})) - set(known))
    if unknown:
        raise ValueError(f"unknown {kind} baseline(s) {unknown}; known: {list(known)}")
    return {name: (knobs or {}).get(name, KNOBS[name]).checked(name) for name in models}


# ---- images ----

def small_cnn(channels: int, classes: int, height: int, width: int, filters: int = 32) -> nn.Module:
    """[B, C, H, W] -> [B, classes]: conv-pool, conv-pool, conv, then the flattened feature map
    through a 128-unit layer (global average pooling instead underfits: it throws away where
    the features are, 77% train top-1 on quick's Fashion-MNIST)."""
    cells = (height // 4) * (width // 4)
    return nn.Sequential(
        nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(filters, 2 * filters, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * filters, 2 * filters, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * filters * cells, 128), nn.ReLU(), nn.Linear(128, classes))


def image_baselines(train_set, val_set, test_set, seed: int, *, models: tuple[str, ...] = IMAGE_MODELS,
                    knobs: Mapping[str, Knobs] | None = None) -> list[dict[str, Any]]:
    """One row per image baseline of `models`: trained on train_set, each knob of its grid
    (`KNOBS`, or `knobs` for some models) chosen on val_set, scored on test_set."""
    chosen = grids(models, IMAGE_MODELS, "image", knobs)
    x = {k: image_grid(d) for k, d in (("train", train_set), ("val", val_set), ("test", test_set))}  # [N, C, H, W]
    y = {k: d.labels.long() for k, d in (("train", train_set), ("val", val_set), ("test", test_set))}
    classes, (channels, height, width) = train_set.num_classes, x["train"].shape[1:]
    flat = {k: v.flatten(1) for k, v in x.items()}                                          # [N, C H W]
    pixels = flat["train"].shape[1]
    specs = {
        "logistic regression": (flat, lambda: nn.Sequential(Standardise(flat["train"]), nn.Linear(pixels, classes))),
        "MLP (256 hidden)": (flat, lambda: nn.Sequential(Standardise(flat["train"]), nn.Linear(pixels, 256),
                                                         nn.ReLU(), nn.Linear(256, classes))),
        "small CNN": (x, lambda: small_cnn(channels, classes, height, width)),
    }
    rows = []
    for name in models:
        inputs, build = specs[name]
        splits = [(inputs[k], y[k]) for k in ("train", "val", "test")]
        rows.append(tuned_row(name, seed, *splits, build, chosen[name]))
    return rows


# ---- point clouds ----

def knn(points: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, Q, k] of each query's k nearest points (itself included when it is one).
    points [B, P, 3], queries [B, Q, 3]."""
    return torch.cdist(queries, points).topk(min(k, points.shape[1]), largest=False).indices


def gather(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """points [B, P, D], index [B, ...] -> [B, ..., D]."""
    b = points.shape[0]
    flat = index.reshape(b, -1)
    out = torch.gather(points, 1, flat[..., None].expand(-1, -1, points.shape[-1]))
    return out.reshape(*index.shape, points.shape[-1])


def farthest_points(points: torch.Tensor, count: int) -> torch.Tensor:
    """Indices [B, count] of farthest-point sampling from slot 0 (order-free up to that start)."""
    b, p, _ = points.shape
    chosen = torch.zeros(b, count, dtype=torch.long)
    distance = torch.full((b, p), math.inf)
    last = torch.zeros(b, dtype=torch.long)
    for i in range(count):
        chosen[:, i] = last
        centre = points[torch.arange(b), last]                                  # [B, 3]
        distance = torch.minimum(distance, (points - centre[:, None]).square().sum(-1))
        last = distance.argmax(1)
    return chosen


def local_groups(points: torch.Tensor, centres: int = 32, k: int = 16, batch: int = 64
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """PointNet++'s grouping: (centres [N, S, 3], neighbours relative to their centre [N, S, k, 3])."""
    out_c, out_g = [], []
    for chunk in points.split(batch):
        c = gather(chunk, farthest_points(chunk, min(centres, chunk.shape[1])))  # [B, S, 3]
        g = gather(chunk, knn(chunk, c, k)) - c[:, :, None]                     # [B, S, k, 3]
        out_c.append(c)
        out_g.append(g)
    return torch.cat(out_c), torch.cat(out_g)


def shared_mlp(*widths: int) -> nn.Sequential:
    """Per-element linear layers with ReLUs between them (the last layer too): [..., w0] -> [..., wn]."""
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class PointNet(nn.Module):
    """[B, P, 3] -> shared MLP 3-64-128-256 -> max over points -> 256-128-classes."""

    def __init__(self, classes: int):
        super().__init__()
        self.points = shared_mlp(3, 64, 128, 256)
        self.head = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.points(x).amax(1))


class GroupingNet(nn.Module):
    """PointNet++-style: x [B, S * (k + 1), 3] packs the centres [B, S, 3] and their groups
    [B, S, k, 3] (see `pack_groups`); a shared MLP max-pooled within each group, joined with
    the centre, a second shared MLP max-pooled over the groups, then a classifier."""

    def __init__(self, classes: int, centres: int, k: int):
        super().__init__()
        self.centres, self.k = centres, k
        self.local = shared_mlp(3, 32, 64)
        self.region = shared_mlp(64 + 3, 128, 256)
        self.head = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        centre = x[:, :self.centres]                                             # [B, S, 3]
        group = x[:, self.centres:].reshape(b, self.centres, self.k, 3)          # [B, S, k, 3]
        local = self.local(group).amax(2)                                        # [B, S, 64]
        return self.head(self.region(torch.cat([local, centre], -1)).amax(1))


def pack_groups(points: torch.Tensor, centres: int, k: int) -> torch.Tensor:
    """[N, P, 3] -> [N, S + S k, 3]: the grouping computed once, packed for GroupingNet."""
    c, g = local_groups(points, centres, k)
    return torch.cat([c, g.flatten(1, 2)], 1)


def local_shape(points: torch.Tensor, up_axis: int = 2, k: int = 16, batch: int = 32) -> torch.Tensor:
    """The order-free descriptor: [N, P, 3] -> [N, 2 halves * 4 features * 5 statistics].

    Per point, the eigenvalues l1 >= l2 >= l3 of its k-neighbourhood's covariance give
    linearity (l1 - l2) / l1, planarity (l2 - l3) / l1, scattering l3 / l1 and the scale
    sqrt(l1 + l2 + l3); their mean, sd and quartiles are taken over the higher half of the
    points (along `up_axis`), then over the lower half."""
    out = []
    for chunk in points.split(batch):
        chunk = chunk.double()
        hood = gather(chunk, knn(chunk, chunk, k))                               # [B, P, k, 3]
        hood = hood - hood.mean(2, keepdim=True)
        cov = hood.transpose(2, 3) @ hood / hood.shape[2]                        # [B, P, 3, 3]
        l3, l2, l1 = torch.linalg.eigvalsh(cov).clamp_min(0).unbind(-1)          # ascending
        top = l1.clamp_min(1e-12)
        features = torch.stack([(l1 - l2) / top, (l2 - l3) / top, l3 / top, (l1 + l2 + l3).sqrt()], -1)
        rank = chunk[..., up_axis].argsort(1).argsort(1)                         # [B, P], by height
        upper = rank >= chunk.shape[1] // 2                                      # the higher half
        pooled = [_pooled(features, half) for half in (upper, ~upper)]
        out.append(torch.cat(pooled, 1))
    return torch.cat(out).float()


def _pooled(features: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean, sd and quartiles over the points `keep` [B, P] of features [B, P, F] -> [B, 5 F]."""
    rows = []
    for f, k in zip(features, keep):
        x = f[k] if k.any() else f                                               # [P', F]
        q = torch.quantile(x, torch.tensor([0.25, 0.5, 0.75], dtype=x.dtype), dim=0)
        rows.append(torch.cat([x.mean(0), x.std(0, unbiased=False), q.flatten()]))
    return torch.stack(rows)


def point_baselines(train_set, val_set, test_set, seed: int, *, models: tuple[str, ...] = POINT_MODELS,
                    knobs: Mapping[str, Knobs] | None = None, centres: int = 32, k: int = 16) -> list[dict[str, Any]]:
    """One row per point-cloud baseline of `models`: trained on train_set, each knob of its
    grid (`KNOBS`, or `knobs` for some models) chosen on val_set, scored on test_set."""
    chosen = grids(models, POINT_MODELS, "point-cloud", knobs)
    sets = {"train": train_set, "val": val_set, "test": test_set}
    x = {name: clouds(d) for name, d in sets.items()}                                         # [N, P, 3]
    y = {name: d.labels.long() for name, d in sets.items()}
    classes, up = train_set.num_classes, getattr(train_set, "up_axis", 2)
    s, kk = min(centres, x["train"].shape[1]), min(k, x["train"].shape[1])
    rows = []
    for name in models:
        start = time.perf_counter()
        if name == "PointNet":
            data, build = x, (lambda: PointNet(classes))
        elif name == "PointNet++-style":
            data = {split: pack_groups(v, s, k) for split, v in x.items()}
            build = lambda: GroupingNet(classes, s, kk)                                     # noqa: E731
        else:
            data = {split: local_shape(v, up, k) for split, v in x.items()}
            build = lambda: nn.Sequential(Standardise(data["train"]), nn.Linear(data["train"].shape[1], classes))  # noqa: E731
        features_seconds = time.perf_counter() - start
        row = tuned_row(name, seed, *[(data[split], y[split]) for split in sets], build, chosen[name])
        row["seconds"] += features_seconds
        rows.append(row)
    return rows


# ---- dense: a label per pixel ----

class SmallUNet(nn.Module):
    """[B, C, H, W] -> logits [B, classes, H, W] (H, W multiples of 4): an encoder-decoder with
    skip connections, `width` channels at full resolution, 2x and 4x at the levels below."""

    def __init__(self, channels: int, classes: int, width: int = UNET_WIDTH):
        super().__init__()
        w = (width, 2 * width, 4 * width)
        self.down = nn.ModuleList([conv_pair(channels, w[0]), conv_pair(w[0], w[1])])
        self.bottom = conv_pair(w[1], w[2])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[2], w[1], 2, stride=2),
                                 nn.ConvTranspose2d(w[1], w[0], 2, stride=2)])
        self.merge = nn.ModuleList([conv_pair(2 * w[1], w[1]), conv_pair(2 * w[0], w[0])])
        self.head = nn.Conv2d(w[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.down:                     # [B, w0, H, W], then [B, w1, H/2, W/2]
            x = down(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)                         # [B, w2, H/4, W/4]
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)                        # [B, classes, H, W]


def conv_pair(inputs: int, outputs: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by ReLU, the map's size kept."""
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(outputs, outputs, 3, padding=1), nn.ReLU())


def label_grid(dataset) -> torch.Tensor:
    """A dense dataset's labels on the pixel grid: [N, M] in its order -> int64 [N, H, W]."""
    spec = dataset.modalities[the_modality(dataset, "dense")]
    return to_grid(dataset.labels.long()[..., None], spec.order, *spec.grid)[..., 0]


def dense_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """logits [N, K, H, W], labels [N, H, W] -> {'miou', 'pixel_accuracy'} in %, from one
    confusion matrix over every pixel (hipcore.train.dense, as the HiP arms are scored)."""
    from ..train.dense import confusion, scores  # late: classification never loads the dense modules

    found = scores(confusion(logits.argmax(1), labels, logits.shape[1]))
    return {k: 100.0 * v for k, v in found.items()}


def miou(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return dense_scores(logits, labels)["miou"]


def dense_baselines(train_set, val_set, test_set, seed: int, *, models: tuple[str, ...] = DENSE_MODELS,
                    knobs: Mapping[str, Knobs] | None = None, width: int = UNET_WIDTH) -> list[dict[str, Any]]:
    """One row per dense baseline (DENSE_COLUMNS): trained on train_set, its epochs chosen from
    its grid by validation mIoU (ties to the fewer), scored once on train and test."""
    chosen = grids(models, DENSE_MODELS, "dense", knobs)
    x = {k: image_grid(d) for k, d in (("train", train_set), ("val", val_set), ("test", test_set))}  # [N, C, H, W]
    y = {k: label_grid(d) for k, d in (("train", train_set), ("val", val_set), ("test", test_set))}  # [N, H, W]
    classes = train_set.num_classes
    rows = []
    for name in models:
        start = time.perf_counter()
        build = lambda: SmallUNet(x["train"].shape[1], classes, width)      # noqa: E731
        scored = candidates(chosen[name], seed, (x["train"], y["train"]), (x["val"], y["val"]), build, miou)
        val_miou, _, epochs, weights = max(scored, key=lambda c: (c[0], -(c[2] or 0)))
        model = build()
        model.load_state_dict(weights)
        train, test = (dense_scores(predict(model, x[k], batch=64), y[k]) for k in ("train", "test"))
        rows.append({"model": name, "seed": seed, "epochs": epochs, "width": width, "val_miou": val_miou,
                     "train_miou": train["miou"], "test_miou": test["miou"],
                     "train_pixel_accuracy": train["pixel_accuracy"], "test_pixel_accuracy": test["pixel_accuracy"],
                     "edge": edge(chosen[name], 0.0, epochs), "seconds": time.perf_counter() - start,
                     "train_size": len(y["train"]), "val_size": len(y["val"]), "test_size": len(y["test"])})
    return rows


# ---- runs and files ----

def run_baselines(configs: dict[int, TrainConfig], *, family: str, train_data=None, test_data=None,
                  **options: Any) -> list[dict[str, Any]]:
    """Every baseline of `family` ('images', 'points' or 'dense') for each seed's run config {seed: cfg},
    on exactly that run's data, tuned on its validation split."""
    families = {"images": image_baselines, "points": point_baselines, "dense": dense_baselines}
    if family not in families:
        raise ValueError(f"family must be one of {sorted(families)}, got {family!r}")
    rows = []
    for seed, cfg in configs.items():
        if cfg.seed != seed:
            raise ValueError(f"the config given for seed {seed} has seed {cfg.seed}")
        rows += families[family](*arm_data(cfg, train_data, test_data), seed, **options)
    return rows


def write_baselines(folder: str | Path, rows: list[dict[str, Any]]) -> Path:
    """<folder>/baselines.csv: one row per (model, seed), COLUMNS in order (DENSE_COLUMNS for
    dense baselines; None as empty)."""
    if not rows:
        raise ValueError("no baseline rows to write")
    columns = DENSE_COLUMNS if "test_miou" in rows[0] else COLUMNS
    Path(folder).mkdir(parents=True, exist_ok=True)
    return write_csv_atomic(Path(folder) / FILE_NAME, columns,
                            [{c: "" if r.get(c) is None else r[c] for c in columns} for r in rows])


# What a baselines.csv holds (`results.read_table`): one row per model and seed, top-1s in %.
SHAPE = dict(key=("model", "seed"), whole=("seed", "train_size", "test_size"),
             known={"model": (IMAGE_MODELS + POINT_MODELS, "hipcore's baselines")},
             numbers={"test_accuracy": results.PERCENT, "train_accuracy": results.PERCENT, "seconds": (0.0, math.inf)})


# A dense baselines.csv: one row per model and seed, mIoU and pixel accuracy in %.
DENSE_SHAPE = dict(key=("model", "seed"), whole=("seed", "epochs", "width", "train_size", "val_size", "test_size"),
                   known={"model": (DENSE_MODELS, "hipcore's dense baselines")},
                   numbers={**{c: results.PERCENT for c in DENSE_COLUMNS if "miou" in c or "pixel" in c},
                            "seconds": (0.0, math.inf)})


def read_dense_baselines(path: Path) -> list[dict[str, Any]]:
    """The rows of a dense baselines.csv (DENSE_COLUMNS), numbers as numbers, checked (DENSE_SHAPE)."""
    frame = results.read_table(path, DENSE_COLUMNS, **DENSE_SHAPE)
    whole = set(DENSE_SHAPE["whole"])
    rows = frame.to_dict("records")
    for r in rows:
        r.update({c: (int if c in whole else float)(float(r[c])) for c in DENSE_COLUMNS
                  if c not in ("model", "edge")})
        r.update(edge="" if _empty(r.get("edge")) else str(r["edge"]), tuned=True)
    return rows


def read_baselines(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a baselines.csv (a file or its folder), numbers as numbers, empty cells None,
    checked (SHAPE). A file of the old shape (OLD_COLUMNS: fixed L2 and epochs, nothing chosen on
    validation) reads with 'tuned' False and no l2, epochs or validation score; the new shape
    has 'tuned' True."""
    path = Path(path)
    path = path / FILE_NAME if path.is_dir() else path
    if path.is_file() and "test_miou" in path.read_text().split("\n", 1)[0].split(","):
        return read_dense_baselines(path)
    frame = results.read_table(path, OLD_COLUMNS, **SHAPE)        # checked: one line naming a bad row
    tuned = "val_accuracy" in frame.columns
    if tuned:
        results.read_table(path, COLUMNS, **SHAPE)                  # the new shape: every column there
    numbers = {"seed": int, "epochs": int, "train_size": int, "val_size": int, "test_size": int,
               "l2": float, "val_accuracy": float, "train_accuracy": float, "test_accuracy": float, "seconds": float}
    rows = frame.to_dict("records")
    for r in rows:
        try:
            r.update({c: None if _empty(r.get(c)) else kind(float(r[c])) for c, kind in numbers.items()})
        except ValueError as error:
            raise ValueError(f"{path}: a number column holds something else ({error})") from None
        r.update(edge="" if _empty(r.get("edge")) else str(r["edge"]), tuned=tuned)
    return rows


def _empty(value: Any) -> bool:
    """A cell left empty (or a column the old shape lacks)."""
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))
