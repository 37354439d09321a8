"""Datasets served as the model's flattened inputs {modality: [B, M, C]} with labels [B].

    ds = load_dataset("fashion_mnist", "train", ordering="hilbert")
    loader = BatchLoader(ds, 128, shuffle=True, seed=0, train=True)
    for inputs, labels in loader:          # inputs["image"]: float32 [128, 784, 1]
        ...
"""

from hipcore.data.base import DataNotFoundError, Dataset, cache_root
from hipcore.data.fashion_mnist import fetch_fashion_mnist, find_fashion_mnist
from hipcore.data.loader import BatchLoader, derive_seed
from hipcore.data.orderings import IMAGE_ORDERINGS, POINT_ORDERINGS, image_order, invert_order, point_order, to_grid
from hipcore.data.registry import DATASETS, load_dataset

__all__ = ["BatchLoader", "DATASETS", "DataNotFoundError", "Dataset", "IMAGE_ORDERINGS",
           "POINT_ORDERINGS", "cache_root", "derive_seed", "fetch_fashion_mnist", "find_fashion_mnist",
           "image_order", "invert_order", "load_dataset", "point_order", "to_grid"]
