"""parts3d: a built-in point-cloud set whose classes differ only in where the same parts stand.

Every cloud is an assembly of the same six parts, two boxes (b), two cylinders (c) and two
spheres (s), one at each corner of a regular octahedron (centre distance 1): one on top, one
at the bottom, four around the middle. A class is which part stands on top and which at the
bottom: 'b/c' is a box on top and a cylinder at the bottom, the other four (b, c, s, s) around
the middle in a random order; 3 x 3 = 9 classes (CLASS_PAIRS). Assemblies stand upright, as
ModelNet's objects do: top and bottom can be told apart, so 'b/c' and 'c/b' are two classes.

Why the shortcut features fail (hipcore.experiments.shortcuts measures it):

- radius from the centroid: every part stands at the same distance from the centre, posed
  alike relative to the direction from the centre (a box's face and a cylinder's axis point
  along it), so a part's radial profile does not depend on its corner; every class holds the
  same parts, with the same number of points each: the histogram of radii is the same mixture;
- PCA eigenvalues: the parts are sized to the same radius of gyration (GYRATION) and shaped so
  that each one's surface second moments are isotropic (a cube; a cylinder of half-height
  0.835 radii; a sphere), so each adds the same multiple of the identity to the covariance
  wherever it stands, and the corners are the same for every class: so is the covariance;
- pairwise distances: within a part they are the same in every class; between two parts they
  depend on the corners' distance and, only through the parts' shapes beyond their second
  moments, on which two parts stand there; and 'b/c' is the mirror image of 'c/b' (top and
  bottom swapped), so every rotation- and reflection-invariant feature is the same for both.

What does tell the classes apart is which part is where: a model has to recognise each part
from its points and know which way is up. 'stored' order lists the parts top, middle (walking
around from a random one in a random direction), bottom, each part face by face (patches), each
face swept in bands (as shapes3d's), so neighbouring slots are mostly neighbouring points and a
slot's part is the same kind of place in every cloud; 'shuffled' and the space-filling orders
work as for any cloud.

Nuisances, drawn per cloud: the middle parts' order; a partial view (partial=True): the
assembly is sampled at OVERSAMPLE times the points, the points hidden from a camera in a
uniformly random direction (a ray towards it runs inside a part: another part in front, or the
point's own part when its face is turned away) are dropped, and num_points of the visible ones
are kept in stored order (hidden points fill in only where a view leaves too few); an
anisotropic scale (log-uniform in [3/4, 4/3] per axis); a rotation about the vertical by a
uniform angle, then a tilt of up to MAX_TILT about a random horizontal axis; N(0, 0.01) jitter.
Training batches are augmented as every point cloud's (pointclouds.augment_points, about z).
"""

from __future__ import annotations

import math

import numpy as np

from hipcore.data.base import check_split
from hipcore.data.fingerprint import arrays_fingerprint
from hipcore.data.pointclouds import (TWO_PI, Patch, PointCloudDataset, _allocate, _box, _disc,
                                      _sphere_cap, _sweep, _tube)

PARTS = "bbccss"                      # b: box (a cube), c: cylinder, s: sphere
KINDS = "bcs"
GYRATION = 0.35                       # every part's radius of gyration (surface, about its centre)
OVERSAMPLE = 4                        # points sampled per kept point before a partial view
MAX_TILT = math.radians(15)           # how far an assembly may lean from upright

CLASS_PAIRS = [(top, bottom) for top in KINDS for bottom in KINDS]
CLASS_NAMES = [f"{top}/{bottom}" for top, bottom in CLASS_PAIRS]

# The six corners in stored order, top, middle (a quarter turn apart), bottom, and each part's
# frame: columns are its local x, y, z axes in the assembly, local z pointing away from the centre.
_MIDDLE = [TWO_PI / 4 * k for k in range(4)]
SLOT_CENTRES = np.array([[0.0, 0.0, 1.0]] + [[math.cos(a), math.sin(a), 0.0] for a in _MIDDLE]
                        + [[0.0, 0.0, -1.0]])
SLOT_FRAMES = np.stack([np.eye(3)]
                       + [np.array([[-math.sin(a), 0.0, math.cos(a)], [math.cos(a), 0.0, math.sin(a)],
                                    [0.0, 1.0, 0.0]]) for a in _MIDDLE]
                       + [np.diag([1.0, -1.0, -1.0])])

# A cylinder's surface second moments are isotropic when its half-height is this many radii:
# the positive root of (4/3) t^3 + 2 t^2 - 2 t - 1/2 = 0 (tube plus two caps, uniform in area).
CYLINDER_ASPECT = 0.8348319203211121
CUBE_HALF = GYRATION * math.sqrt(3 / 5)                    # cube surface: rho^2 = 5 h^2 / 3
# Its second moment per axis is (t + 1/4) / (2 t + 1) radii squared (t = CYLINDER_ASPECT).
CYLINDER_RADIUS = GYRATION / math.sqrt(3 * (CYLINDER_ASPECT + 0.25) / (2 * CYLINDER_ASPECT + 1))
CYLINDER_HALF = CYLINDER_ASPECT * CYLINDER_RADIUS
SPHERE_RADIUS = GYRATION


def part_patches(kind: str) -> list[Patch]:
    """A part's surface patches in its own frame (centre at 0, z up, faces along x and y)."""
    if kind == "b":
        return _box((0, 0, 0), (CUBE_HALF,) * 3)
    if kind == "c":
        r, h = CYLINDER_RADIUS, CYLINDER_HALF
        return [_disc(r, -h), _tube(r, -h, h), _disc(r, h)]
    if kind == "s":
        return [_sphere_cap(SPHERE_RADIUS, 0.0, True, True)]
    raise ValueError(f"unknown part {kind!r}; parts are {sorted(set(PARTS))}")


def sample_part(kind: str, count: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """`count` samples of k points on a part's surface, face by face, each face swept in
    bands: [count, k, 3] in the part's frame."""
    patches = part_patches(kind)
    pieces = [surface(*_sweep(rng, count, n))
              for (_, surface), n in zip(patches, _allocate([a for a, _ in patches], k)) if n]
    return np.concatenate(pieces, axis=1)


def _interval(lo: float, hi: float, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where o + t d lies in [lo, hi] along one axis: (t_in, t_out), empty when t_in > t_out."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - o) / d, (hi - o) / d
    t_in, t_out = np.minimum(t1, t2), np.maximum(t1, t2)
    if (d == 0).any():                                # parallel: all of the line, or none of it
        inside = (o >= lo) & (o <= hi)
        t_in = np.where(d == 0, np.where(inside, -np.inf, np.inf), t_in)
        t_out = np.where(d == 0, np.where(inside, np.inf, -np.inf), t_out)
    return t_in, t_out


def ray_hits(kind: str, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the rays o + t d are inside a part, in its own frame; coordinates first: o [3, ...]
    and d [3, ...] (broadcastable). Returns (t_in, t_out) [...]; a miss has t_in > t_out."""
    if kind == "s":
        b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
        disc = b * b - (o[0] ** 2 + o[1] ** 2 + o[2] ** 2 - SPHERE_RADIUS ** 2)
        root = np.sqrt(np.maximum(disc, 0))
        return np.where(disc >= 0, -b - root, np.inf), np.where(disc >= 0, -b + root, -np.inf)
    if kind == "b":
        spans = [_interval(-CUBE_HALF, CUBE_HALF, o[i], d[i]) for i in range(3)]
    elif kind == "c":
        a = d[0] ** 2 + d[1] ** 2
        b = o[0] * d[0] + o[1] * d[1]
        c = o[0] ** 2 + o[1] ** 2 - CYLINDER_RADIUS ** 2
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            side = ((-b - root) / a, (-b + root) / a)
        if (a == 0).any():                            # along the axis: inside the tube or not
            side = tuple(np.where(a == 0, np.where(c <= 0, inf, -inf), t) for t, inf in zip(side, (-np.inf, np.inf)))
        side = (np.where(disc >= 0, side[0], np.inf), np.where(disc >= 0, side[1], -np.inf))
        spans = [side, _interval(-CYLINDER_HALF, CYLINDER_HALF, o[2], d[2])]
    else:
        raise ValueError(f"unknown part {kind!r}")
    return np.maximum.reduce([s[0] for s in spans]), np.minimum.reduce([s[1] for s in spans])


def hidden_points(points: np.ndarray, kinds: np.ndarray, view: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Which points a camera far along `view` cannot see: bool [N, Q].

    points [N, Q, 3] on the surfaces of the parts kinds [N, J] (letters) standing at
    SLOT_CENTRES[:J] in SLOT_FRAMES[:J]; view [N, 3] unit. A point is hidden when its ray
    towards the camera runs inside a part beyond it (farther than eps): another part in front,
    or its own convex part when the point is on a face turned away.
    """
    x = points.astype(np.float32)
    hidden = np.zeros(points.shape[:2], dtype=bool)
    for j in range(kinds.shape[1]):
        frame = SLOT_FRAMES[j].astype(np.float32)
        local = ((x - SLOT_CENTRES[j].astype(np.float32)) @ frame).transpose(2, 0, 1)   # [3, N, Q]
        direction = (view.astype(np.float32) @ frame).T[..., None]                     # [3, N, 1]
        for kind in np.unique(kinds[:, j]):
            rows = np.flatnonzero(kinds[:, j] == kind)
            t_in, t_out = ray_hits(str(kind), local[:, rows], direction[:, rows])
            hidden[rows] |= (t_in < t_out) & (t_out > eps)
    return hidden


def uniform_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit vectors [n, 3], uniform on the sphere."""
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def upright_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 3, 3]: a uniform turn about z, then a tilt of up to MAX_TILT about a random horizontal axis."""
    yaw = rng.uniform(0, TWO_PI, n)
    c, s, zero, one = np.cos(yaw), np.sin(yaw), np.zeros(n), np.ones(n)
    turn = np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], 1)
    axis_angle = rng.uniform(0, TWO_PI, n)
    k = np.stack([np.cos(axis_angle), np.sin(axis_angle), zero], -1)               # [n, 3] horizontal
    tilt = rng.uniform(0, MAX_TILT, n)[:, None, None]
    cross = np.zeros((n, 3, 3))                                                      # [k]_x
    cross[:, 0, 2], cross[:, 1, 2] = k[:, 1], -k[:, 0]
    cross[:, 2, 0], cross[:, 2, 1] = -k[:, 1], k[:, 0]
    lean = np.eye(3) + np.sin(tilt) * cross + (1 - np.cos(tilt)) * cross @ cross    # Rodrigues
    return lean @ turn


def arrangements(top: str, bottom: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` part orders of class (top, bottom): letters [count, 6], top, middle walk, bottom."""
    middle = list(PARTS)
    for kind in (top, bottom):
        middle.remove(kind)
    order = np.argsort(rng.random((count, len(middle))), axis=1)                   # random walks
    return np.concatenate([np.full((count, 1), top), np.array(middle)[order], np.full((count, 1), bottom)], 1)


def assemble(kinds: np.ndarray, num_points: int, rng: np.random.Generator, *, partial: bool = True) -> np.ndarray:
    """Clouds of the parts kinds [N, 6] (letters, in slot order): [N, num_points, 3], stored order."""
    count, slots = kinds.shape
    per_part = -(-num_points * (OVERSAMPLE if partial else 1) // slots)      # ceil
    local = np.empty((count, slots, per_part, 3))
    for j in range(slots):
        for kind in np.unique(kinds[:, j]):
            mine = np.flatnonzero(kinds[:, j] == kind)
            local[mine, j] = sample_part(str(kind), len(mine), per_part, rng)
    points = (SLOT_CENTRES[:slots, None] + local @ SLOT_FRAMES[:slots].swapaxes(-1, -2)[None])
    points = points.reshape(count, slots * per_part, 3)                        # [N, Q, 3]
    if partial:
        hidden = hidden_points(points, kinds, uniform_directions(rng, count))
        key = rng.random(hidden.shape) + hidden                  # visible points first, at random
    else:
        key = rng.random(points.shape[:2])
    keep = np.sort(np.argpartition(key, num_points - 1, axis=1)[:, :num_points], axis=1)
    points = np.take_along_axis(points, keep[..., None], 1)                  # stored order kept
    scale = np.exp(rng.uniform(np.log(0.75), np.log(4 / 3), size=(count, 1, 3)))
    points = (points * scale) @ upright_rotations(rng, count).swapaxes(-1, -2)
    return points + rng.normal(scale=0.01, size=points.shape)


class Parts3D(PointCloudDataset):
    """The built-in assemblies (module docstring): len(CLASS_PAIRS) classes.

    Deterministic in (seed, split) and the options; the train and test splits are disjoint
    draws. Sizes are per class.
    """

    def __init__(self, split: str, *, ordering: str | None = None, seed: int = 0,
                 num_points: int = 1024, train_per_class: int = 200, test_per_class: int = 50,
                 partial: bool = True, augment: bool = True) -> None:
        self.name, self.split = "parts3d", check_split(split)
        for key, value in (("num_points", num_points), ("train_per_class", train_per_class),
                           ("test_per_class", test_per_class)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"parts3d: {key} must be a positive int, got {value!r}")
        if not isinstance(partial, bool):
            raise ValueError(f"parts3d: partial must be true or false, got {partial!r}")
        self.partial = partial
        self.class_names = list(CLASS_NAMES)
        per_class = train_per_class if split == "train" else test_per_class
        clouds = []
        for c, (top, bottom) in enumerate(CLASS_PAIRS):
            rng = np.random.default_rng([seed, int(split == "test"), c])
            clouds.append(assemble(arrangements(top, bottom, per_class, rng), num_points, rng, partial=partial))
        labels = np.repeat(np.arange(len(CLASS_PAIRS)), per_class)
        points = np.concatenate(clouds)
        self.fingerprint = arrays_fingerprint(points, labels)
        self._init_points(points, labels, ordering=ordering, seed=seed, augment=augment, up_axis=2,
                          source=f"parts3d {split} (generated)")

    def _extra_description(self) -> dict:
        return {**super()._extra_description(), "partial": self.partial}
