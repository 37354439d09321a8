"""parts3d: a built-in point-cloud set whose classes differ only in where the same parts stand.

Every cloud is an assembly of the same eight parts, three jacks (j: three crossed rods), three
spheres (s) and two boxes (b: cubes), one at each corner of a cube standing upright (corners at
distance 1 from the centre): four parts in the upper layer, four in the lower. A class is which
parts are in the upper layer: 'bjjs/bjss' has a box, two jacks and a sphere above and the rest
below; their places within a layer are random. The ten ways to fill the upper layer from
'bbjjjsss' are the ten classes (CLASS_NAMES). Assemblies stand upright, as ModelNet's objects
do, so upper and lower can be told apart: a class and its mirror image (layers swapped, e.g.
'bjjs/bjss' and 'bjss/bjjs') are two classes.

Why the shortcut features fail (hipcore.experiments.shortcuts measures it):

- radius from the centroid: every part stands at the same distance from the centre, posed
  alike relative to the direction from the centre (local z along it), so a part's radial
  profile does not depend on its corner; every class holds the same parts, sampled with the
  same number of points each: the histogram of radii is the same mixture in every class;
- PCA eigenvalues: the parts are sized to the same radius of gyration (GYRATION) and are shapes
  whose surface second moments are isotropic (a cube, a sphere, a jack: cubic symmetry), so each
  adds the same multiple of the identity to the covariance wherever it stands, and the corners
  are the same for every class: so is the covariance;
- pairwise distances: within a part they are the same in every class; between two parts they
  depend on the corners' distance and, only through the parts' shapes beyond their second
  moments, on which two parts stand there; and each class is the mirror image of another, with
  the same distribution of every rotation- and reflection-invariant feature.

What does tell the classes apart is which kind of part is where: a model has to recognise
parts from their points and know which way is up. 'stored' order lists the upper layer's parts,
then the lower layer's, each layer walked around from its first corner, each part face by face
(patches), each face swept in bands (as shapes3d's), so neighbouring slots are mostly
neighbouring points and a slot's part is in the same layer in every cloud; 'shuffled' and the
space-filling orders work as for any cloud.

Nuisances, drawn per cloud: which corner of its layer each part takes; a partial view
(partial=True): the assembly is sampled at OVERSAMPLE times the points, the points hidden from a
camera in a uniformly random direction (a ray towards it runs inside a part: another part in
front, or the point's own part when its face is turned away) are dropped, and num_points of the
visible ones are kept in stored order (hidden points fill in only where a view leaves too few);
an anisotropic scale (log-uniform in [3/4, 4/3] per axis); a rotation about the vertical by a
uniform angle, then a tilt of up to MAX_TILT about a random horizontal axis; N(0, 0.01) jitter.
Training batches are augmented as every point cloud's (pointclouds.augment_points, about z).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from hipcore.data.base import check_split
from hipcore.data.fingerprint import arrays_fingerprint
from hipcore.data.pointclouds import (
    TWO_PI,
    Patch,
    PointCloudDataset,
    _allocate,
    _box,
    _quad,
    _sphere_cap,
    _sweep,
    draw_seed,
)

PARTS = "bbjjjsss"                    # b: box (a cube), j: jack (three crossed rods), s: sphere
LAYER = 4                             # corners per layer
GYRATION = 0.3                        # every part's radius of gyration (surface, about its centre)
ROD_HALF_WIDTH = 0.04                 # a jack's rods are square, 0.08 across
OVERSAMPLE = 4                        # points sampled per kept point before a partial view
MAX_TILT = math.radians(15)           # how far an assembly may lean from upright


def layerings(parts: str = PARTS, size: int = LAYER) -> list[tuple[str, str]]:
    """Every distinct (upper, lower) split of `parts` into two layers, letters sorted: 10 for
    'bbjjjsss' in layers of 4."""
    return sorted({("".join(sorted(upper)), "".join(sorted(parts_without(parts, upper))))
                   for upper in itertools.combinations(parts, size)})


def parts_without(parts: str, taken) -> str:
    rest = list(parts)
    for kind in taken:
        rest.remove(kind)
    return "".join(rest)


CLASS_LAYERS = layerings()
CLASS_NAMES = [f"{upper}/{lower}" for upper, lower in CLASS_LAYERS]

# The eight corners in stored order, the upper layer around (azimuths 45, 135, 225, 315 degrees),
# then the lower; each part's frame: columns are its local x, y, z axes in the assembly, local z
# pointing away from the centre, local x horizontal.
_AZIMUTHS = [TWO_PI * (k + 0.5) / LAYER for k in range(LAYER)]
SLOT_CENTRES = np.array([[math.sqrt(2 / 3) * math.cos(a), math.sqrt(2 / 3) * math.sin(a), z / math.sqrt(3)]
                         for z in (1, -1) for a in _AZIMUTHS])


def _frame(centre: np.ndarray) -> np.ndarray:
    z = centre / np.linalg.norm(centre)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], 1)


SLOT_FRAMES = np.stack([_frame(c) for c in SLOT_CENTRES])

CUBE_HALF = GYRATION * math.sqrt(3 / 5)                    # cube surface: rho^2 = 5 h^2 / 3
SPHERE_RADIUS = GYRATION


def _jack_gyration(length: float, w: float = ROD_HALF_WIDTH) -> float:
    """Radius of gyration of a jack's surface: six arms from the central cube [-w, w]^3 out to
    `length`, each four long faces and an end cap (uniform in area; the same for every arm)."""
    side, cap = 8 * w * (length - w), 4 * w * w
    along = (length ** 3 - w ** 3) / (3 * (length - w))          # mean x^2 on a long face
    return math.sqrt((side * (along + 4 * w * w / 3) + cap * (length ** 2 + 2 * w * w / 3)) / (side + cap))


def _solve_jack_length(rho: float) -> float:
    lo, hi = 2 * ROD_HALF_WIDTH, 4 * rho
    for _ in range(60):                                           # bisection: gyration grows with length
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _jack_gyration(mid) < rho else (lo, mid)
    return (lo + hi) / 2


JACK_LENGTH = _solve_jack_length(GYRATION)                  # centre to the tip of a rod


def _arm(axis: int, sign: float, w: float = ROD_HALF_WIDTH, length: float = JACK_LENGTH) -> list[Patch]:
    """One arm of a jack along sign * axis, from the central cube out: four long faces, an end cap."""
    i, j = [a for a in range(3) if a != axis]
    e = np.eye(3)
    along = sign * (length - w) * e[axis]
    base = sign * w * e[axis]
    faces = [_quad(base + s * w * e[i] - w * e[j], along, 2 * w * e[j]) for s in (-1, 1)]
    faces += [_quad(base + s * w * e[j] - w * e[i], along, 2 * w * e[i]) for s in (-1, 1)]
    faces.append(_quad(sign * length * e[axis] - w * e[i] - w * e[j], 2 * w * e[i], 2 * w * e[j]))
    return faces


def part_patches(kind: str) -> list[Patch]:
    """A part's surface patches in its own frame (centre at 0, faces along its axes)."""
    if kind == "b":
        return _box((0, 0, 0), (CUBE_HALF,) * 3)
    if kind == "j":
        return [face for axis in range(3) for sign in (1.0, -1.0) for face in _arm(axis, sign)]
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
        return _box_hits((CUBE_HALF,) * 3, o, d)
    if kind == "j":                                   # the union of three full-length rods
        rods = [_box_hits(tuple(JACK_LENGTH if a == axis else ROD_HALF_WIDTH for a in range(3)), o, d)
                for axis in range(3)]
        inside = [t_in < t_out for t_in, t_out in rods]
        # the hull of the rods' intervals: it is met, and ends beyond a point, exactly when some
        # rod's interval is and does (all that hidden_points asks)
        t_out = np.max([np.where(hit, t, -np.inf) for hit, (_, t) in zip(inside, rods)], 0)
        t_in = np.min([np.where(hit, t, np.inf) for hit, (t, _) in zip(inside, rods)], 0)
        return t_in, t_out
    raise ValueError(f"unknown part {kind!r}")


def _box_hits(half: tuple[float, float, float], o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(t_in, t_out) of rays o + t d (coordinates first) in the box [-half, half]."""
    spans = [_interval(-h, h, o[i], d[i]) for i, h in enumerate(half)]
    return np.maximum.reduce([s[0] for s in spans]), np.minimum.reduce([s[1] for s in spans])


def hidden_points(points: np.ndarray, kinds: np.ndarray, view: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Which points a camera far along `view` cannot see: bool [N, Q].

    points [N, Q, 3] on the surfaces of the parts kinds [N, 8] (letters) standing at
    SLOT_CENTRES in SLOT_FRAMES; view [N, 3] unit. A point is hidden when its ray
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


def arrangements(upper: str, lower: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` part orders of class (upper, lower): letters [count, 8], the upper layer's corners
    in order, then the lower's; each layer's parts in a random order."""
    layers = []
    for letters in (upper, lower):
        order = np.argsort(rng.random((count, len(letters))), axis=1)
        layers.append(np.array(list(letters))[order])
    return np.concatenate(layers, 1)


def place_parts(kinds: np.ndarray, per_part: int, rng: np.random.Generator) -> np.ndarray:
    """per_part points on each part kinds [N, 8] (letters, in slot order) at its corner, in
    stored order (part by part, face by face, in bands): [N, 8 * per_part, 3]."""
    count, slots = kinds.shape
    if slots != len(SLOT_CENTRES):
        raise ValueError(f"an assembly has {len(SLOT_CENTRES)} parts, got kinds of shape {kinds.shape}")
    local = np.empty((count, slots, per_part, 3))
    for j in range(slots):
        for kind in np.unique(kinds[:, j]):
            mine = np.flatnonzero(kinds[:, j] == kind)
            local[mine, j] = sample_part(str(kind), len(mine), per_part, rng)
    points = SLOT_CENTRES[:, None] + local @ SLOT_FRAMES.swapaxes(-1, -2)[None]          # [N, J, k, 3]
    return points.reshape(count, slots * per_part, 3)


def assemble(kinds: np.ndarray, num_points: int, rng: np.random.Generator, *, partial: bool = True) -> np.ndarray:
    """Clouds of the parts kinds [N, 8] (letters, in slot order) with every nuisance of the
    module docstring: [N, num_points, 3] in stored order."""
    count, slots = kinds.shape
    per_part = -(-num_points * (OVERSAMPLE if partial else 1) // slots)      # ceil
    points = place_parts(kinds, per_part, rng)                                 # [N, Q, 3]
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
    """The built-in assemblies (module docstring): len(CLASS_LAYERS) classes.

    Deterministic in (seed, split) and the options; the train and test splits are disjoint
    draws, and the test clouds are the same for every seed (`draw_seed`). Sizes are per class.
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
        for c, (upper, lower) in enumerate(CLASS_LAYERS):
            rng = np.random.default_rng([draw_seed(split, seed), int(split == "test"), c])
            clouds.append(assemble(arrangements(upper, lower, per_class, rng), num_points, rng, partial=partial))
        labels = np.repeat(np.arange(len(CLASS_LAYERS)), per_class)
        points = np.concatenate(clouds)
        self.fingerprint = arrays_fingerprint(points, labels)
        self._init_points(points, labels, ordering=ordering, seed=seed, augment=augment, up_axis=2,
                          source=f"parts3d {split} (generated)")

    def _extra_description(self) -> dict:
        return {**super()._extra_description(), "partial": self.partial}
