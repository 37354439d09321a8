"""The dataset contract shared by every source: flattened, normalised batches plus metadata."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hipcore.config import ModalitySpec
from hipcore.errors import DataError

SPLITS = ("train", "test")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


def cache_root() -> Path:
    """The user cache folder: $XDG_CACHE_HOME/hipcore, else ~/.cache/hipcore."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hipcore"


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are nowhere to be found; the message says how to get them."""


def check_examples(source: str | os.PathLike, labels: Any, num_classes: int | None = None,
                   values: np.ndarray | None = None) -> np.ndarray:
    """Labels as int64 [N] after refusing what a loader must never pass on: no examples,
    labels that are not whole numbers or not in [0, num_classes), non-finite values [N, ...].
    DataError names `source` (a file or folder) and the first bad example's index."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{source}: labels must have shape [N], got {labels.shape}")
    if len(labels) == 0:
        raise DataError(f"{source}: holds no examples")
    if labels.dtype.kind not in "iu":
        whole = np.zeros(len(labels), bool)
        if labels.dtype.kind == "f":
            whole = np.isfinite(labels) & (labels == np.round(labels))
        if not whole.all():
            i = int(np.argmin(whole))
            raise DataError(f"{source}: label {labels[i].item()!r} at index {i} is not a class index "
                            f"(labels are {labels.dtype}; whole numbers needed)")
    labels = labels.astype(np.int64)
    if num_classes is not None:
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{source}: label {labels[i]} at index {i} is outside [0, {num_classes})")
    if values is not None and values.dtype.kind == "f":
        finite = np.isfinite(values.reshape(len(values), -1)).all(1)
        if not finite.all():
            i = int(np.argmin(finite))
            raise DataError(f"{source}: non-finite value (NaN or inf) in example {i}")
    return labels


class Dataset:
    """An in-memory (or memory-mapped) labelled dataset served as flattened batches.

    Attributes set by subclasses:
        name, split, ordering: what this is, for logging.
        modalities: {modality: ModalitySpec}, e.g. {'image': ModalitySpec(784, 1, (28, 28), order)}.
        labels: LongTensor [N].
        class_names: list[str] of length num_classes (index = label).
        mean, std: {modality: FloatTensor [C]}, applied in get_batch.
    Subclasses implement `_raw(indices, train, generator) -> {modality: FloatTensor [B, M, C]}`:
    un-normalised inputs, already in the model's flattened order, in fresh tensors (they are
    normalised in place).
    """

    name: str
    split: str
    ordering: str
    modalities: dict[str, ModalitySpec]
    labels: torch.Tensor
    class_names: list[str]
    mean: dict[str, torch.Tensor]
    std: dict[str, torch.Tensor]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.numel())

    def get_batch(self, indices: torch.Tensor, *, train: bool = False,
                  generator: torch.Generator | None = None
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Inputs {modality: float32 [B, M, C]} (normalised, flattened order) and labels [B].

        train=True applies the dataset's augmentation, drawn from `generator`.
        """
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= len(self)):
            raise IndexError(f"batch indices must lie in [0, {len(self)}) for {self.name}/{self.split}")
        inputs = self._raw(indices, train, generator)
        for k, x in inputs.items():
            if not self._identity_stats(k):
                x.sub_(self.mean[k]).div_(self.std[k])
        return inputs, self.labels[indices]

    def _identity_stats(self, modality: str) -> bool:
        return bool((self.mean[modality] == 0).all() and (self.std[modality] == 1).all())

    def _raw(self, indices: torch.Tensor, train: bool,
             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary for logs."""
        return {
            "name": self.name,
            "split": self.split,
            "size": len(self),
            "ordering": self.ordering,
            "num_classes": self.num_classes,
            "modalities": {k: {"num_inputs": m.num_inputs, "channels": m.channels, "grid": list(m.grid)}
                           for k, m in self.modalities.items()},
            **self._extra_description(),
        }

    def _extra_description(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        d = self.describe()
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in d.items())})"


class Subset:
    """Examples `indices` [n] of a dataset, under the same Dataset contract."""

    def __init__(self, dataset, indices: torch.Tensor):
        self.dataset, self.indices = dataset, indices
        self.labels = dataset.labels[indices]

    def __getattr__(self, name: str) -> Any:          # modalities, class_names, mean, std, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def get_batch(self, indices, *, train: bool = False, generator=None):
        return self.dataset.get_batch(self.indices[torch.as_tensor(indices, dtype=torch.long)],
                                      train=train, generator=generator)

    def describe(self) -> dict[str, Any]:
        return {**self.dataset.describe(), "size": len(self), "subset_of": len(self.dataset)}
