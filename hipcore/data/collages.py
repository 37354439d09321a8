"""collages: a dense task, Fashion-MNIST items pasted on a larger canvas, one label per pixel.

A canvas is `side` x `side` pixels (64 by default; 128, 256, any positive multiple of 16) of
background (0) on which `min_items`..`max_items` items (uniform) are pasted at uniformly random
places, each wholly on the canvas, later items over earlier ones. An item is a Fashion-MNIST
image (`item_side` pixels a side: 28, or upsampled bilinearly to more); its mask is where its
intensity is above ITEM_THRESHOLD, and only its mask is pasted: the canvas takes the item's
intensity there and the label map the item's class + 1. Labels: 0 background, 1..10 the ten
Fashion-MNIST classes (CLASS_NAMES). Train canvases are made of train items, test canvases of
test items. Inputs are the canvas {'image': [B, side*side, 1]} in [0, 1] (not normalised: a
canvas is mostly background, and its statistics follow side and items per canvas), in the
image datasets' pixel orders; labels [B, side*side] int64, in the same order.

Deterministic: the same (split, seed, options) give the same canvases byte for byte; train
canvases are drawn from the seed, test canvases from one fixed seed (`draw_seed`, as parts3d's),
so every seed is scored on the same test canvases.

Statistics (`statistics`) of the default build (train, seed 0, side 64, item_side 28, 2..5
items, 2000 canvases), share of all pixels per label:

    label  class          share
    0      background     0.7548
    1      T-shirt/top    0.0291
    2      Trouser        0.0171
    3      Pullover       0.0325
    4      Dress          0.0214
    5      Coat           0.0321
    6      Sandal         0.0140
    7      Shirt          0.0306
    8      Sneaker        0.0153
    9      Bag            0.0297
    10     Ankle boot     0.0234
    items per canvas: 3.5525 (uniform in 2..5: 3.5 expected)

Why a side is a multiple of 16: HiP's first level splits the side * side positions into 16
groups (HiP-16) or 256 (HiP-256); on such a side each of 16 groups is side / 16 whole rows,
each of 256 groups side * side / 256 pixels, and no group is padded.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from hipcore.config import whole_number
from hipcore.data.base import check_split
from hipcore.data.fashion_mnist import CLASS_NAMES as ITEM_CLASSES
from hipcore.data.fashion_mnist import load_fashion_mnist, upsample
from hipcore.data.fingerprint import arrays_fingerprint
from hipcore.data.images import ImageDataset
from hipcore.data.pointclouds import draw_seed
from hipcore.errors import DataError

ITEM_THRESHOLD = 25          # an item's mask: its pixels whose intensity (of 255) is above this
SIDE_MULTIPLE = 16           # a canvas side is a multiple of this (module docstring)
ITEM_SIDE = 28               # Fashion-MNIST's side: items are this or upsampled to more
BACKGROUND = "background"
CLASS_NAMES = [BACKGROUND, *ITEM_CLASSES]          # label 0 background, 1 + c item class c


def check_side(side: Any) -> int:
    """`side` when it is a positive multiple of SIDE_MULTIPLE; ValueError saying why otherwise."""
    ok = isinstance(side, int) and not isinstance(side, bool) and side > 0 and side % SIDE_MULTIPLE == 0
    if not ok:
        raise ValueError(f"collages: side must be a positive multiple of {SIDE_MULTIPLE} (HiP's first level "
                         f"splits the canvas into {SIDE_MULTIPLE} groups of whole rows), got {side!r}")
    return side


def check_sizes(side: Any, item_side: Any, min_items: Any, max_items: Any) -> None:
    """ValueError naming the first bad size: a side that is not a multiple of 16, an item side
    under 28 or larger than the canvas, items per canvas under 1 or a range upside down."""
    check_side(side)
    if not isinstance(item_side, int) or isinstance(item_side, bool) or item_side < ITEM_SIDE:
        raise ValueError(f"collages: item_side must be an int >= {ITEM_SIDE} (Fashion-MNIST's side), "
                         f"got {item_side!r}")
    if item_side > side:
        raise ValueError(f"collages: item_side {item_side} is larger than the canvas side {side}: "
                         "an item must fit on the canvas")
    whole_number(min_items, "collages: min_items (items per canvas)")
    whole_number(max_items, "collages: max_items (items per canvas)")
    if max_items < min_items:
        raise ValueError(f"collages: max_items {max_items} is below min_items {min_items}")


def check_item_classes(classes: np.ndarray, source: str) -> np.ndarray:
    """Item classes int64 [I], refused (DataError naming `source` and the first bad item) when
    one is outside [0, 10): its mask's label, class + 1, would be outside [1, 10]."""
    classes = np.asarray(classes)
    bad = (classes < 0) | (classes >= len(ITEM_CLASSES))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{source}: item {i} has class {classes[i]}, outside [0, {len(ITEM_CLASSES)}): "
                        f"its mask's label would be outside [1, {len(ITEM_CLASSES)}]")
    return classes.astype(np.int64)


def draw_layouts(count: int, num_items: int, side: int, item_side: int, min_items: int, max_items: int,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What each of `count` canvases holds: 'counts' [N] items per canvas, and per slot k
    (pasting order) 'items' [N, K] indices into the split's items, 'rows', 'cols' [N, K] the
    item's top-left corner; slots k >= counts[n] are unused. K = max_items."""
    counts = rng.integers(min_items, max_items + 1, size=count)
    items = rng.integers(0, num_items, size=(count, max_items))
    rows = rng.integers(0, side - item_side + 1, size=(count, max_items))
    cols = rng.integers(0, side - item_side + 1, size=(count, max_items))
    return {"counts": counts, "items": items, "rows": rows, "cols": cols}


def paint(items: np.ndarray, classes: np.ndarray, layouts: dict[str, np.ndarray], side: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Canvases uint8 [N, side, side] and labels uint8 [N, side, side] from items uint8
    [I, s, s] of classes [I] (in [0, 10)) placed as `layouts` says, slot by slot."""
    classes = check_item_classes(classes, "collages")
    count, slots = layouts["items"].shape
    s = items.shape[-1]
    canvases = np.zeros((count, side, side), np.uint8)
    labels = np.zeros((count, side, side), np.uint8)
    offsets = np.arange(s)
    for k in range(slots):
        n = np.flatnonzero(layouts["counts"] > k)                                   # [n]
        picked = layouts["items"][n, k]
        rr = (layouts["rows"][n, k][:, None] + offsets)[:, :, None]                 # [n, s, 1]
        cc = (layouts["cols"][n, k][:, None] + offsets)[:, None, :]                 # [n, 1, s]
        where = (n[:, None, None], rr, cc)
        item = items[picked]                                                        # [n, s, s]
        mask = item > ITEM_THRESHOLD
        canvases[where] = np.where(mask, item, canvases[where])
        labels[where] = np.where(mask, (classes[picked] + 1)[:, None, None], labels[where])
    return canvases, labels


def make_collages(split: str, seed: int, count: int, *, side: int, item_side: int, min_items: int,
                  max_items: int, data_dir: str | None = None) -> dict[str, np.ndarray]:
    """One split's canvases uint8 [N, side, side], labels uint8 [N, side, side] and items per
    canvas 'counts' [N], from that split's Fashion-MNIST items."""
    images, classes = load_fashion_mnist(split, data_dir)                          # [I, 28, 28], [I]
    rng = np.random.default_rng([draw_seed(split, seed), int(split == "test")])
    layouts = draw_layouts(count, len(images), side, item_side, min_items, max_items, rng)
    used, layouts["items"] = np.unique(layouts["items"], return_inverse=True)     # only these are sized
    layouts["items"] = layouts["items"].reshape(count, max_items)
    items = upsample(images[torch.from_numpy(used)], item_side).numpy()           # [U, s, s]
    canvases, labels = paint(items, classes.numpy()[used], layouts, side)
    return {"canvases": canvases, "labels": labels, "counts": layouts["counts"]}


def statistics(labels: np.ndarray | torch.Tensor, counts: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """What a build holds: labels [N, M] (any order) and items per canvas counts [N] ->
    'share' [11] each label's share of all pixels (0: background), 'background',
    'items_per_canvas' (mean), 'classes_seen' (labels present on some canvas)."""
    labels = torch.as_tensor(labels).reshape(-1).long()
    share = torch.bincount(labels, minlength=len(CLASS_NAMES)).double() / labels.numel()
    return {"share": share.tolist(), "background": float(share[0]),
            "items_per_canvas": float(torch.as_tensor(counts).double().mean()),
            "classes_seen": [c for c in range(len(CLASS_NAMES)) if share[c] > 0]}


def stated_statistics() -> dict[str, Any]:
    """The statistics the module docstring states (of the default build), read from it."""
    rows = re.findall(r"^\s+(\d+)\s{2,}.+?\s{2,}(0\.\d+)$", __doc__, flags=re.M)
    share = [float(value) for _, value in sorted(rows, key=lambda r: int(r[0]))]
    items = re.search(r"items per canvas: ([\d.]+)", __doc__)
    return {"share": share, "background": share[0], "items_per_canvas": float(items.group(1))}


class Collages(ImageDataset):
    """Collages of Fashion-MNIST items (module docstring): 11 labels per pixel.

    get_batch serves {'image': float32 [B, side*side, 1]} in [0, 1] and labels int64
    [B, side*side], both in the dataset's pixel order; `labels` holds them as uint8 [N, M].
    """

    def __init__(self, split: str, *, ordering: str | None = None, data_dir: str | None = None,
                 seed: int = 0, side: int = 64, item_side: int = ITEM_SIDE, min_items: int = 2,
                 max_items: int = 5, train_canvases: int = 2000, test_canvases: int = 500) -> None:
        self.name, self.split = "collages", check_split(split)
        check_sizes(side, item_side, min_items, max_items)
        for key, value in (("train_canvases", train_canvases), ("test_canvases", test_canvases)):
            whole_number(value, f"collages: {key}")
        self.side, self.item_side, self.min_items, self.max_items = side, item_side, min_items, max_items
        made = make_collages(split, seed, train_canvases if split == "train" else test_canvases, side=side,
                             item_side=item_side, min_items=min_items, max_items=max_items, data_dir=data_dir)
        self.fingerprint = arrays_fingerprint(made["canvases"], made["labels"])
        self.counts = torch.from_numpy(made["counts"])                               # [N]
        self.class_names = list(CLASS_NAMES)
        self._init_images(torch.from_numpy(made["canvases"]).unsqueeze(-1), ordering=ordering, seed=seed,
                          mean=[0.0], std=[1.0], hflip=False)
        labels = torch.from_numpy(made["labels"]).reshape(len(self.counts), -1)      # [N, M] raster
        self.labels = labels if self.ordering == "raster" else labels[:, self.order].contiguous()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def get_batch(self, indices: torch.Tensor, *, train: bool = False,
                  generator: torch.Generator | None = None
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Inputs {'image': float32 [B, M, 1]} and labels int64 [B, M] (one per pixel)."""
        inputs, labels = super().get_batch(indices, train=train, generator=generator)
        return inputs, labels.long()

    def statistics(self) -> dict[str, Any]:
        return statistics(self.labels, self.counts)

    def _extra_description(self) -> dict[str, Any]:
        return {**super()._extra_description(), "side": self.side, "item_side": self.item_side,
                "items": [self.min_items, self.max_items], "threshold": ITEM_THRESHOLD}
