"""Shared machinery of image datasets: flattening order, optional flip, normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hipcore.config import ModalitySpec
from hipcore.data.base import Dataset
from hipcore.data.orderings import IMAGE_ORDERINGS, check_ordering, image_order, invert_order


class ImageDataset(Dataset):
    """Images [N, H, W, C] uint8 served as {'image': [B, H*W, C]} in the chosen pixel order.

    `pixels` is a uint8 tensor [N, H, W, C] (held in memory and permuted once into the chosen
    order) or a numpy memmap [N, H, W, C] (rows are read and permuted per batch).
    With hflip=True, get_batch(train=True) mirrors each image left-right with probability 1/2.
    """

    def _init_images(self, pixels: torch.Tensor | np.ndarray, *, ordering: str | None,
                     seed: int, mean: list[float], std: list[float], hflip: bool) -> None:
        n, height, width, channels = pixels.shape
        self.ordering = check_ordering(ordering or "raster", IMAGE_ORDERINGS)
        self.seed, self.hflip, self.height, self.width = seed, hflip, height, width
        self.order = image_order(self.ordering, height, width, seed)          # [M]
        self.modalities = {"image": ModalitySpec(height * width, channels, (height, width), self.order)}
        self.mean = {"image": torch.tensor(mean, dtype=torch.float32)}       # [C]
        self.std = {"image": torch.tensor(std, dtype=torch.float32)}         # [C]
        # mirror[m]: the input element that holds the mirror image of element m's pixel
        raster = torch.arange(height * width).view(height, width)
        self._mirror = invert_order(self.order)[raster.flip(1).reshape(-1)[self.order]]
        if isinstance(pixels, torch.Tensor):
            flat = pixels.reshape(n, height * width, channels)
            self._pixels = flat if self.ordering == "raster" else flat[:, self.order].contiguous()
            self._in_order = True
        else:
            self._pixels, self._in_order = pixels, False

    def _raw(self, indices: torch.Tensor, train: bool,
             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        if self._in_order:
            x = self._pixels[indices]                                          # [B, M, C] uint8
        else:
            rows = np.asarray(self._pixels[indices.numpy()])                   # [B, H, W, C]
            x = torch.from_numpy(rows).reshape(len(indices), -1, rows.shape[-1])
            if self.ordering != "raster":
                x = x[:, self.order]
        if train and self.hflip:
            flip = torch.rand(len(indices), generator=generator) < 0.5         # [B]
            x[flip] = x[flip][:, self._mirror]
        return {"image": x.float().mul_(1.0 / 255.0)}                          # [B, M, C] in [0, 1]

    def _extra_description(self) -> dict[str, Any]:
        return {"resolution": [self.height, self.width], "hflip": self.hflip, "seed": self.seed}
