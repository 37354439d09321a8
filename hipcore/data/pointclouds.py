"""Point-cloud datasets: a built-in ModelNet-like set of 3-D shapes, and ModelNet40 in HDF5.

Every cloud is centred and scaled into the unit ball when loaded, which is its normalisation
(the datasets' mean/std are 0/1). Inputs are {'points': [B, P, 3]} in the chosen point order
(see orderings.point_order); get_batch(train=True) applies a random rotation about the
dataset's up axis, an anisotropic scale in [0.8, 1.25] and a clipped Gaussian jitter, all
drawn from the generator. The order is fixed at load time on the unaugmented clouds.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hipcore.config import ModalitySpec, whole_number
from hipcore.data.base import Dataset, check_examples, check_split
from hipcore.data.fingerprint import arrays_fingerprint, files_fingerprint
from hipcore.data.orderings import POINT_ORDERINGS, check_ordering, point_order
from hipcore.errors import DataError

TWO_PI = 2 * np.pi


TEST_DRAW_SEED = 0    # the built-in sets' test clouds: one draw for every run seed


def draw_seed(split: str, seed: int) -> int:
    """The seed a built-in set's clouds are drawn with: the run's for training clouds, one fixed
    seed for test clouds, so every seed of a comparison is scored on the same test set."""
    return seed if split == "train" else TEST_DRAW_SEED


def normalize_clouds(points: np.ndarray) -> np.ndarray:
    """Centre each cloud and scale it into the unit ball: [N, P, 3] -> [N, P, 3] float32."""
    points = points - points.mean(axis=1, keepdims=True)
    radius = np.linalg.norm(points, axis=-1).max(axis=1)[:, None, None]
    return (points / np.maximum(radius, 1e-9)).astype(np.float32)


class PointCloudDataset(Dataset):
    """Clouds [N, P, 3] held in memory, ordered once, augmented per batch."""

    def _init_points(self, points: np.ndarray, labels: np.ndarray, *, ordering: str | None,
                     seed: int, augment: bool, up_axis: int, source: str) -> None:
        """points [N, P, 3] and labels [N], checked (DataError naming `source`) before use."""
        labels = check_examples(source, labels, len(self.class_names), points)
        self.ordering = check_ordering(ordering or "stored", POINT_ORDERINGS)
        self.seed, self.augment, self.up_axis = seed, augment, up_axis
        points = normalize_clouds(points)
        order = point_order(self.ordering, points, seed)                         # [N, P]
        self.points = torch.from_numpy(np.take_along_axis(points, order[..., None], 1))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        num_points = points.shape[1]
        self.modalities = {"points": ModalitySpec(num_points, 3)}
        self.mean = {"points": torch.zeros(3)}
        self.std = {"points": torch.ones(3)}

    def _raw(self, indices: torch.Tensor, train: bool,
             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        x = self.points[indices]                                                  # [B, P, 3]
        if train and self.augment:
            x = augment_points(x, generator, self.up_axis)
        return {"points": x}

    def _extra_description(self) -> dict[str, Any]:
        return {"num_points": int(self.points.shape[1]), "augment": self.augment, "seed": self.seed}


def augment_points(x: torch.Tensor, generator: torch.Generator | None, up_axis: int) -> torch.Tensor:
    """Rotate about `up_axis`, scale each axis by U(0.8, 1.25), jitter N(0, 0.01) clipped at 0.05.

    x: [B, P, 3] -> [B, P, 3] (a new tensor).
    """
    b = x.shape[0]
    angle = torch.rand(b, 1, generator=generator) * TWO_PI                     # [B, 1]
    c, s = torch.cos(angle), torch.sin(angle)
    scale = 0.8 + 0.45 * torch.rand(b, 3, 1, generator=generator)             # [B, 3, 1]
    out = (0.01 * torch.randn(x.shape, generator=generator)).clamp_(-0.05, 0.05)
    i, j = [a for a in range(3) if a != up_axis]
    xi, xj = x[..., i], x[..., j]                                              # [B, P]
    out[..., i] += (c * xi - s * xj) * scale[:, i]
    out[..., j] += (s * xi + c * xj) * scale[:, j]
    out[..., up_axis] += x[..., up_axis] * scale[:, up_axis]
    return out


# ----------------------------------------------------------------------------- shapes3d

Patch = tuple[float, Callable[[np.ndarray, np.ndarray], np.ndarray]]  # (area, (u, v) -> xyz)


def _stack(x, y, z) -> np.ndarray:
    return np.stack(np.broadcast_arrays(x, y, z), -1)


def _disc(radius: float, z: float) -> Patch:
    def f(u, v):
        r = radius * np.sqrt(v)
        return _stack(r * np.cos(TWO_PI * u), r * np.sin(TWO_PI * u), z)
    return np.pi * radius ** 2, f


def _tube(radius: float, z0: float, z1: float) -> Patch:
    return TWO_PI * radius * (z1 - z0), lambda u, v: _stack(
        radius * np.cos(TWO_PI * u), radius * np.sin(TWO_PI * u), z0 + (z1 - z0) * v)


def _sphere_cap(radius: float, z_centre: float, lower: bool, upper: bool) -> Patch:
    z_lo, z_hi = (-1.0 if lower else 0.0), (1.0 if upper else 0.0)   # range of cos(polar angle)

    def f(u, v):
        z = z_lo + (z_hi - z_lo) * v                                   # uniform in z: equal area
        r = np.sqrt(np.clip(1 - z * z, 0, None))
        return radius * _stack(r * np.cos(TWO_PI * u), r * np.sin(TWO_PI * u), z) + [0, 0, z_centre]
    return 2 * np.pi * radius ** 2 * (z_hi - z_lo), f


def _triangle(a, b, c) -> Patch:
    a, b, c = (np.asarray(p, dtype=np.float64) for p in (a, b, c))

    def f(u, v):  # uniform on the triangle, continuous in (u, v): v sweeps from a to edge bc
        t = np.sqrt(v)[..., None]
        return a + t * ((1 - u)[..., None] * (b - a) + u[..., None] * (c - a))
    return 0.5 * float(np.linalg.norm(np.cross(b - a, c - a))), f


def _quad(origin, du, dv) -> Patch:
    o, du, dv = (np.asarray(p, dtype=np.float64) for p in (origin, du, dv))
    return float(np.linalg.norm(np.cross(du, dv))), lambda u, v: o + u[..., None] * du + v[..., None] * dv


def _box(centre, half) -> list[Patch]:
    c, h = np.asarray(centre, float), np.asarray(half, float)
    patches = []
    for axis in range(3):
        i, j = [a for a in range(3) if a != axis]
        du, dv = np.zeros(3), np.zeros(3)
        du[i], dv[j] = 2 * h[i], 2 * h[j]
        for sign in (-1, 1):
            origin = c - h * (np.arange(3) != axis) + sign * h * (np.arange(3) == axis)
            patches.append(_quad(origin, du, dv))
    return patches


def _torus(big: float, small: float) -> Patch:
    def f(u, v):
        ring = big + small * np.cos(TWO_PI * v)
        return _stack(ring * np.cos(TWO_PI * u), ring * np.sin(TWO_PI * u), small * np.sin(TWO_PI * v))
    return 4 * np.pi ** 2 * big * small, f


def _spring(radius: float, tube: float, turns: float, height: float) -> Patch:
    def f(u, v):  # u along the coil, v around the tube
        phi = TWO_PI * turns * u
        ring = radius + tube * np.cos(TWO_PI * v)
        return _stack(ring * np.cos(phi), ring * np.sin(phi), height * (2 * u - 1) + tube * np.sin(TWO_PI * v))
    return TWO_PI * tube * TWO_PI * radius * turns, f


def _cone_side(radius: float, z0: float, z1: float) -> Patch:
    def f(u, v):  # v = 0 at the apex; sqrt(v) makes the sampling uniform in area
        t = np.sqrt(v)
        return _stack(t * radius * np.cos(TWO_PI * u), t * radius * np.sin(TWO_PI * u), z1 + t * (z0 - z1))
    return np.pi * radius * np.hypot(radius, z1 - z0), f


SHAPES: dict[str, list[Patch]] = {
    "sphere": [_sphere_cap(1.0, 0.0, True, True)],
    "cube": _box((0, 0, 0), (1, 1, 1)),
    "cylinder": [_disc(0.6, -1.0), _tube(0.6, -1.0, 1.0), _disc(0.6, 1.0)],
    "cone": [_disc(0.9, -1.0), _cone_side(0.9, -1.0, 1.0)],
    "torus": [_torus(0.75, 0.25)],
    "pyramid": [_quad((-1, -1, -0.8), (2, 0, 0), (0, 2, 0))] + [
        _triangle((0, 0, 1), a, b) for a, b in [((-1, -1, -0.8), (1, -1, -0.8)), ((1, -1, -0.8), (1, 1, -0.8)),
                                               ((1, 1, -0.8), (-1, 1, -0.8)), ((-1, 1, -0.8), (-1, -1, -0.8))]],
    "capsule": [_sphere_cap(0.4, -0.6, True, False), _tube(0.4, -0.6, 0.6), _sphere_cap(0.4, 0.6, False, True)],
    "spring": [_spring(0.6, 0.12, 3.0, 0.8)],
    "disc": [_disc(1.0, 0.0)],
    "cross": _box((0, 0, 0), (0.15, 0.15, 1.0)) + _box((0, 0, 0.35), (0.7, 0.15, 0.15)),
}


SHAPE_NAMES = list(SHAPES)
MODELNET40_CLASSES = 40


def _allocate(areas: list[float], total: int) -> np.ndarray:
    """Split `total` points among patches in proportion to area (largest remainders)."""
    share = np.asarray(areas) / np.sum(areas) * total
    counts = np.floor(share).astype(int)
    counts[np.argsort(counts - share)[: total - counts.sum()]] += 1
    return counts


def _sweep(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k random (u, v) per cloud in boustrophedon order: bands of v, u alternating direction."""
    u, v = rng.random((n, k)), rng.random((n, k))
    bands = max(1, int(round(np.sqrt(k))))
    band = np.minimum((v * bands).astype(int), bands - 1)
    key = band + np.where(band % 2 == 0, u, 1 - u) * 0.999
    order = np.argsort(key, axis=1)
    return np.take_along_axis(u, order, 1), np.take_along_axis(v, order, 1)


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform random rotation matrices [n, 3, 3] from unit quaternions."""
    q = rng.normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], 1)


def sample_shape(name: str, count: int, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random instances of shape `name`: [count, num_points, 3], patch by patch.

    Each instance gets its own surface sample, an anisotropic scale (log-uniform in [3/4, 4/3]
    per axis), a uniformly random 3-D rotation and N(0, 0.01) jitter.
    """
    patches = SHAPES[name]
    parts = []
    for (area, surface), k in zip(patches, _allocate([a for a, _ in patches], num_points)):
        if k:
            parts.append(surface(*_sweep(rng, count, k)))                       # [count, k, 3]
    points = np.concatenate(parts, axis=1)
    scale = np.exp(rng.uniform(np.log(0.75), np.log(4 / 3), size=(count, 1, 3)))
    points = np.einsum("npj,nij->npi", points * scale, _random_rotations(rng, count))
    return points + rng.normal(scale=0.01, size=points.shape)


class Shapes3D(PointCloudDataset):
    """A built-in ModelNet-like set: len(SHAPE_NAMES) classes of shapes sampled on their surface.

    Deterministic in (seed, split): the train and test splits are disjoint draws. Sizes are per
    class. 'stored' order is the sampler's: patch by patch, each patch swept in bands, so
    neighbouring indices are mostly neighbouring points, as in stored mesh samples.
    """

    def __init__(self, split: str, *, ordering: str | None = None, seed: int = 0,
                 num_points: int = 1024, train_per_class: int = 200, test_per_class: int = 50,
                 augment: bool = True) -> None:
        self.name, self.split = "shapes3d", check_split(split)
        per_class = train_per_class if split == "train" else test_per_class
        whole_number(num_points, "num_points")
        whole_number(per_class, f"{split}_per_class")
        self.class_names = list(SHAPE_NAMES)
        clouds = [sample_shape(name, per_class, num_points,
                               np.random.default_rng([draw_seed(split, seed), int(split == "test"), c]))
                  for c, name in enumerate(SHAPE_NAMES)]
        labels = np.repeat(np.arange(len(SHAPE_NAMES)), per_class)
        points = np.concatenate(clouds)
        self.fingerprint = arrays_fingerprint(points, labels)
        self._init_points(points, labels, ordering=ordering, seed=seed, augment=augment, up_axis=2,
                          source=f"shapes3d {split} (generated)")


# ----------------------------------------------------------------------------- ModelNet40

def modelnet40_files(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """ply_data_{train,test}*.h5 under data_dir (or data_dir/modelnet40_ply_hdf5_2048), sorted."""
    for folder in (Path(data_dir), Path(data_dir) / "modelnet40_ply_hdf5_2048"):
        files = sorted(Path(p) for p in glob.glob(str(folder / f"ply_data_{split}*.h5")))
        if files:
            return files
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"ModelNet40 folder {data_dir} does not exist")
    raise FileNotFoundError(f"no ply_data_{split}*.h5 files in {data_dir} (expected the "
                            "modelnet40_ply_hdf5_2048 layout)")


def modelnet40_sources(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """The files a split is read from: its .h5 files, and shape_names.txt when there is one."""
    files = modelnet40_files(data_dir, split)
    names = files[0].parent / "shape_names.txt"
    return files + ([names] if names.is_file() else [])


def read_modelnet40_h5(path: Path, labels_only: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
    """One file's clouds float32 [N, P, 3] (None if labels_only) and labels int64 [N]; a file
    with no clouds, non-finite coordinates or labels that are not whole numbers raises
    DataError naming it and the first bad cloud."""
    import h5py
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        for key in ("label",) if labels_only else ("data", "label"):
            if key not in f:
                raise ValueError(f"{path}: missing key {key!r} (has {sorted(f.keys())})")
        labels = np.asarray(f["label"])
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise ValueError(f"{path}: 'label' must have shape [N] or [N, 1], got {labels.shape}")
        if labels_only:
            return None, check_examples(path, labels)
        data = np.asarray(f["data"], dtype=np.float32)
    if data.ndim != 3 or data.shape[2] != 3 or len(data) != len(labels):
        raise ValueError(f"{path}: 'data' must have shape [N, P, 3] with N = {len(labels)} "
                         f"labels, got {data.shape}")
    return data, check_examples(path, labels, values=data)


class ModelNet40(PointCloudDataset):
    """ModelNet40 in the common modelnet40_ply_hdf5_2048 form (y up), read fully into memory.

    Class names come from shape_names.txt when present, else 'class_<i>' for every label seen
    in either split. num_points keeps the first points of each stored cloud.
    """

    def __init__(self, split: str, *, ordering: str | None = None, data_dir: str | None = None,
                 seed: int = 0, num_points: int | None = None, augment: bool = True) -> None:
        self.name, self.split = "modelnet40", check_split(split)
        if data_dir is None:
            raise ValueError("modelnet40 needs data_dir: the folder holding ply_data_*.h5")
        self.data_dir = str(data_dir)
        files = modelnet40_files(data_dir, split)
        parts = [read_modelnet40_h5(p) for p in files]
        if len({d.shape[1] for d, _ in parts}) != 1:
            raise ValueError(f"{data_dir}: files disagree on points per cloud")
        points = np.concatenate([d for d, _ in parts])
        labels = np.concatenate([part_labels for _, part_labels in parts])
        if num_points is not None:
            if not 0 < whole_number(num_points, "num_points") <= points.shape[1]:
                raise ValueError(f"num_points must be in [1, {points.shape[1]}], got {num_points}")
            points = points[:, :num_points]
        self.class_names = self._class_names(Path(data_dir), labels)
        for path, (_, part) in zip(files, parts):
            check_examples(path, part, len(self.class_names))
        self.fingerprint = files_fingerprint(modelnet40_sources(data_dir, split))
        self._init_points(points, labels, ordering=ordering, seed=seed, augment=augment, up_axis=1,
                          source=str(data_dir))

    def _class_names(self, data_dir: Path, labels: np.ndarray) -> list[str]:
        for folder in (data_dir, data_dir / "modelnet40_ply_hdf5_2048"):
            if (folder / "shape_names.txt").is_file():
                return [s.strip() for s in (folder / "shape_names.txt").read_text().splitlines() if s.strip()]
        top = int(labels.max())
        for other in ("train", "test"):
            try:
                top = max([top] + [int(read_modelnet40_h5(p, True)[1].max())
                                   for p in modelnet40_files(data_dir, other)])
            except FileNotFoundError:
                pass
        if top >= MODELNET40_CLASSES:          # a label past the last class would grow the head
            raise DataError(f"{data_dir}: label {top} is past ModelNet40's {MODELNET40_CLASSES} classes "
                            f"(0-{MODELNET40_CLASSES - 1})")
        return [f"class_{i}" for i in range(MODELNET40_CLASSES)]
