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

Point-cloud baselines train on the clouds as stored (no augmentation). Every row is tidy:

    rows = image_baselines(train_set, test_set, seed=0)
    # [{'model': 'logistic regression', 'seed': 0, 'test_accuracy': 81.2, 'train_accuracy': 93.0,
    #   'seconds': 4.1, 'train_size': 6000, 'test_size': 2000}, ...]
    write_baselines(results_folder, rows)      # results/<notebook>/<profile>/baselines.csv
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import results
from ..data.orderings import to_grid
from ..files import write_csv_atomic
from ..train.config import TrainConfig
from ..train.engine import load_data
from ..train.validation import split_validation

COLUMNS = ("model", "seed", "test_accuracy", "train_accuracy", "seconds", "train_size", "test_size")
IMAGE_MODELS = ("logistic regression", "MLP (256 hidden)", "small CNN")
POINT_MODELS = ("PointNet", "PointNet++-style", "local shape + logistic regression")
FILE_NAME = "baselines.csv"


# ---- data ----

def arm_data(cfg: TrainConfig, train_data=None, test_data=None):
    """(train, test) exactly as the run `cfg` trains and tests on: its subset of the training
    set (without the validation examples, when it carves some out) and its test set."""
    train_set, test_set = load_data(cfg, train_data, test_data)
    train_set, _ = split_validation(train_set, cfg)
    return train_set, test_set


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


def fit_adam(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int,
             lr: float = 1e-3, batch_size: int = 128, weight_decay: float = 0.0) -> nn.Module:
    """Minibatch Adam on cross-entropy, shuffled with `seed`."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for chunk in torch.randperm(len(x), generator=g).split(batch_size):
            loss = F.cross_entropy(model(x[chunk]), y[chunk])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model


def fit_lbfgs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, l2: float = 1e-4,
              iterations: int = 200) -> nn.Module:
    """Full-batch L-BFGS on cross-entropy + l2 * |weights|^2 / 2 (a convex problem for a
    linear model)."""
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=iterations,
                                  history_size=20, line_search_fn="strong_wolfe")
    weights = [p for p in model.parameters() if p.ndim > 1]

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y) + 0.5 * l2 * sum(w.square().sum() for w in weights)
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


def one_row(name: str, seed: int, train: tuple[torch.Tensor, torch.Tensor],
            test: tuple[torch.Tensor, torch.Tensor], build: Callable[[], nn.Module],
            fit: Callable[[nn.Module, torch.Tensor, torch.Tensor], nn.Module]) -> dict[str, Any]:
    """Build (under `seed`), fit and score one baseline; the global random state is left as it was."""
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = fit(build(), *train)
    train_accuracy = accuracy(predict(model, train[0]), train[1])
    test_accuracy = accuracy(predict(model, test[0]), test[1])
    return {"model": name, "seed": seed, "test_accuracy": test_accuracy, "train_accuracy": train_accuracy,
            "seconds": time.perf_counter() - start, "train_size": len(train[1]), "test_size": len(test[1])}


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


def image_baselines(train_set, test_set, seed: int, *, models: tuple[str, ...] = IMAGE_MODELS,
                    epochs: int = 20, cnn_epochs: int = 15) -> list[dict[str, Any]]:
    """One row per image baseline of `models`, trained on train_set, scored on test_set."""
    unknown = sorted(set(models) - set(IMAGE_MODELS))
    if unknown:
        raise ValueError(f"unknown image baseline(s) {unknown}; known: {list(IMAGE_MODELS)}")
    train_x, test_x = image_grid(train_set), image_grid(test_set)             # [N, C, H, W]
    train_y, test_y = train_set.labels.long(), test_set.labels.long()
    classes = train_set.num_classes
    flat_train, flat_test = train_x.flatten(1), test_x.flatten(1)            # [N, C H W]
    pixels = flat_train.shape[1]
    specs = {
        "logistic regression": (flat_train, flat_test,
                                lambda: nn.Sequential(Standardise(flat_train), nn.Linear(pixels, classes)),
                                lambda m, x, y: fit_lbfgs(m, x, y)),
        "MLP (256 hidden)": (flat_train, flat_test,
                             lambda: nn.Sequential(Standardise(flat_train), nn.Linear(pixels, 256), nn.ReLU(),
                                                   nn.Linear(256, classes)),
                             lambda m, x, y: fit_adam(m, x, y, epochs=epochs, seed=seed)),
        "small CNN": (train_x, test_x, lambda: small_cnn(train_x.shape[1], classes, *train_x.shape[2:]),
                      lambda m, x, y: fit_adam(m, x, y, epochs=cnn_epochs, seed=seed)),
    }
    rows = []
    for name in models:
        train, test, build, fit = specs[name]
        rows.append(one_row(name, seed, (train, train_y), (test, test_y), build, fit))
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


def point_baselines(train_set, test_set, seed: int, *, models: tuple[str, ...] = POINT_MODELS,
                    epochs: int = 20, centres: int = 32, k: int = 16) -> list[dict[str, Any]]:
    """One row per point-cloud baseline of `models`, trained on train_set, scored on test_set."""
    unknown = sorted(set(models) - set(POINT_MODELS))
    if unknown:
        raise ValueError(f"unknown point-cloud baseline(s) {unknown}; known: {list(POINT_MODELS)}")
    train_x, test_x = clouds(train_set), clouds(test_set)                      # [N, P, 3]
    train_y, test_y = train_set.labels.long(), test_set.labels.long()
    classes, up = train_set.num_classes, getattr(train_set, "up_axis", 2)
    rows = []
    for name in models:
        start = time.perf_counter()
        if name == "PointNet":
            data = (train_x, test_x)
            build, fit = (lambda: PointNet(classes)), (lambda m, x, y: fit_adam(m, x, y, epochs=epochs, seed=seed))
        elif name == "PointNet++-style":
            s = min(centres, train_x.shape[1])
            data = (pack_groups(train_x, s, k), pack_groups(test_x, s, k))
            build = lambda: GroupingNet(classes, s, min(k, train_x.shape[1]))   # noqa: E731
            fit = lambda m, x, y: fit_adam(m, x, y, epochs=epochs, seed=seed)   # noqa: E731
        else:
            data = (local_shape(train_x, up, k), local_shape(test_x, up, k))
            build = lambda: nn.Sequential(Standardise(data[0]), nn.Linear(data[0].shape[1], classes))  # noqa: E731
            fit = lambda m, x, y: fit_lbfgs(m, x, y)                            # noqa: E731
        features_seconds = time.perf_counter() - start
        row = one_row(name, seed, (data[0], train_y), (data[1], test_y), build, fit)
        row["seconds"] += features_seconds
        rows.append(row)
    return rows


# ---- runs and files ----

def run_baselines(configs: dict[int, TrainConfig], *, family: str, train_data=None, test_data=None,
                  **options: Any) -> list[dict[str, Any]]:
    """Every baseline of `family` ('images' or 'points') for each seed's run config {seed: cfg},
    on exactly that run's data."""
    families = {"images": image_baselines, "points": point_baselines}
    if family not in families:
        raise ValueError(f"family must be one of {sorted(families)}, got {family!r}")
    rows = []
    for seed, cfg in configs.items():
        if cfg.seed != seed:
            raise ValueError(f"the config given for seed {seed} has seed {cfg.seed}")
        train_set, test_set = arm_data(cfg, train_data, test_data)
        rows += families[family](train_set, test_set, seed, **options)
    return rows


def write_baselines(folder: str | Path, rows: list[dict[str, Any]]) -> Path:
    """<folder>/baselines.csv: one row per (model, seed), COLUMNS in order."""
    if not rows:
        raise ValueError("no baseline rows to write")
    Path(folder).mkdir(parents=True, exist_ok=True)
    return write_csv_atomic(Path(folder) / FILE_NAME, COLUMNS, rows)


# What a baselines.csv holds (`results.read_table`): one row per model and seed, top-1s in %.
SHAPE = dict(key=("model", "seed"), whole=("seed", "train_size", "test_size"),
             known={"model": (IMAGE_MODELS + POINT_MODELS, "hipcore's baselines")},
             numbers={"test_accuracy": results.PERCENT, "train_accuracy": results.PERCENT, "seconds": (0.0, math.inf)})


def read_baselines(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a baselines.csv (a file or its folder), numbers as numbers, checked (SHAPE)."""
    path = Path(path)
    path = path / FILE_NAME if path.is_dir() else path
    rows = results.read_table(path, COLUMNS, **SHAPE).to_dict("records")     # checked: one line naming a bad row
    for r in rows:
        r["seed"], r["train_size"], r["test_size"] = int(r["seed"]), int(r["train_size"]), int(r["test_size"])
        for c in ("test_accuracy", "train_accuracy", "seconds"):
            r[c] = float(r[c])
    return rows
