"""Flattening orders: how an image grid or a point cloud becomes the model's sequence [M, C].

An order is a LongTensor permutation `order` [M]: element m of the flattened input is raster
position `order[m]` of the grid (for point clouds: stored point `order[m]`). Its inverse maps
the sequence back onto the grid, so that per-position quantities (learned embeddings, attention
maps) can be drawn as images with `to_grid`.

Image orders: 'raster' (row-major), 'column' (column-major), 'hilbert' (Hilbert curve),
'shuffled' (one fixed, seeded random permutation: the paper's "shuffled pixels").
Point orders: 'stored' (as sampled or stored on disk), 'morton' (Z-order), 'hilbert' (3-D
Hilbert curve), 'shuffled' (one fixed, seeded permutation of the point slots).
"""

from __future__ import annotations

import numpy as np
import torch

IMAGE_ORDERINGS = ("raster", "column", "hilbert", "shuffled")
POINT_ORDERINGS = ("stored", "morton", "hilbert", "shuffled")


def check_ordering(name: str, allowed: tuple[str, ...]) -> str:
    if name not in allowed:
        raise ValueError(f"unknown ordering {name!r}; choose one of {', '.join(allowed)}")
    return name


def _bits_for(size: int) -> int:
    """Bits per axis of the smallest power-of-two square/cube holding `size` cells per axis."""
    return max(1, int(size - 1).bit_length())


def hilbert_index(coords: np.ndarray, bits: int) -> np.ndarray:
    """Distance along the Hilbert curve of integer points in [0, 2**bits)^D.

    coords: int array [..., D] -> int64 [...]. Skilling's transpose method ("Programming the
    Hilbert curve", 2004), vectorised over points; D * bits must be at most 63.
    """
    dims = coords.shape[-1]
    if dims * bits > 63 or bits > 24:
        raise ValueError(f"{dims} axes x {bits} bits are too many for a Hilbert index")
    dtype = np.int32 if bits < 31 else np.int64
    x = [np.asarray(coords[..., i], dtype=dtype).copy() for i in range(dims)]
    for level in range(bits - 1, 0, -1):  # undo excess rotations and reflections, top level first
        p = dtype((1 << level) - 1)
        for i in range(dims):
            high = -((x[i] >> level) & 1)  # all ones where bit `level` of x[i] is set
            if i == 0:
                x[0] ^= p & high
            else:
                t = (x[0] ^ x[i]) & p & ~high  # exchange the low bits of x[0] and x[i]
                x[0] ^= (p & high) | t
                x[i] ^= t
    for i in range(1, dims):  # Gray encode
        x[i] ^= x[i - 1]
    t = np.zeros_like(x[0])
    for level in range(bits - 1, 0, -1):
        t ^= dtype((1 << level) - 1) & -((x[dims - 1] >> level) & 1)
    x = [xi ^ t for xi in x]
    return _interleave(x, bits)


def morton_index(coords: np.ndarray, bits: int) -> np.ndarray:
    """Z-order (Morton) code of integer points in [0, 2**bits)^D: coords [..., D] -> int64 [...]."""
    return _interleave([np.asarray(coords[..., i], dtype=np.int64)
                        for i in range(coords.shape[-1])], bits)


def _interleave(x: list[np.ndarray], bits: int) -> np.ndarray:
    """Interleave bits, most significant level first, axis 0 leading within each level."""
    dims = len(x)
    spread = np.zeros(1 << bits, dtype=np.int64)  # bit b of v moves to bit b * dims
    values = np.arange(1 << bits, dtype=np.int64)
    for b in range(bits):
        spread |= ((values >> b) & 1) << (b * dims)
    out = np.zeros(x[0].shape, dtype=np.int64)
    for i, xi in enumerate(x):
        out |= spread[xi] << (dims - 1 - i)
    return out


def image_order(name: str, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """LongTensor [H*W]: input element m is raster pixel order[m].

    'hilbert' sorts the pixels by their index on the Hilbert curve of the enclosing
    power-of-two square, i.e. the square's curve with out-of-range points dropped: on a
    power-of-two square every step moves to a grid neighbour; on other sizes a few steps jump
    where the curve leaves the image and comes back in. 'shuffled' depends on `seed` only.
    """
    check_ordering(name, IMAGE_ORDERINGS)
    n = height * width
    if name == "raster":
        return torch.arange(n)
    if name == "column":
        return torch.arange(n).view(height, width).t().reshape(-1)
    if name == "shuffled":
        return torch.from_numpy(np.random.default_rng(seed).permutation(n).astype(np.int64))
    rows, cols = np.divmod(np.arange(n), width)
    key = hilbert_index(np.stack([rows, cols], -1), _bits_for(max(height, width)))
    return torch.from_numpy(np.argsort(key, kind="stable").astype(np.int64))


def invert_order(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation: inverse[order[m]] = m, so raster pixel p is input element inverse[p]."""
    order = torch.as_tensor(order, dtype=torch.long)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    return inverse


def to_grid(values: torch.Tensor, order: torch.Tensor | None, height: int, width: int) -> torch.Tensor:
    """Draw per-element values back on the pixel grid: [..., M, C] -> [..., H, W, C]."""
    if order is not None:
        values = values.index_select(-2, invert_order(order).to(values.device))
    return values.reshape(*values.shape[:-2], height, width, values.shape[-1])


def point_order(name: str, points: np.ndarray, seed: int = 0, bits: int = 8) -> np.ndarray:
    """Per-cloud point orders: points [N, P, D] float (centred, within [-1, 1]) -> int64 [N, P].

    'stored' keeps the sampler's (or file's) order; 'morton' and 'hilbert' sort each cloud
    along a space-filling curve on a 2**bits grid per axis; 'shuffled' applies one fixed
    permutation of the P slots (the same for every cloud; it depends on `seed` only).
    """
    check_ordering(name, POINT_ORDERINGS)
    n, p, dims = points.shape
    if name == "stored":
        return np.broadcast_to(np.arange(p), (n, p)).copy()
    if name == "shuffled":
        return np.broadcast_to(np.random.default_rng(seed).permutation(p), (n, p)).copy()
    cells = (1 << bits) - 1
    grid = np.clip(np.rint((points + 1.0) * 0.5 * cells), 0, cells).astype(np.int64)
    key = (hilbert_index if name == "hilbert" else morton_index)(grid, bits)
    return np.argsort(key, axis=1, kind="stable")
