"""load_dataset: one entry point for every dataset by name."""

from __future__ import annotations

from hipcore.data.base import Dataset, check_split

DATASETS = ("fashion_mnist", "imagefolder", "shapes3d", "parts3d", "modelnet40", "fashion_mnist_points")


def num_classes(name: str, data_dir: str | None = None) -> int:
    """Classes of a dataset's head, known without loading it; imagefolder's are the class
    folders of `data_dir` (listed, not read)."""
    if name in ("fashion_mnist", "fashion_mnist_points"):
        from hipcore.data.fashion_mnist import CLASS_NAMES
        return len(CLASS_NAMES)
    if name == "shapes3d":
        from hipcore.data.pointclouds import SHAPE_NAMES
        return len(SHAPE_NAMES)
    if name == "parts3d":
        from hipcore.data.parts3d import CLASS_NAMES
        return len(CLASS_NAMES)
    if name == "modelnet40":
        return 40
    if name == "imagefolder":
        if data_dir is None:
            raise ValueError("imagefolder's classes are the class folders of its data: give its folder, "
                             "or the number of classes")
        from hipcore.data.imagefolder import folder_classes
        return len(folder_classes(data_dir))
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def load_dataset(name: str, split: str, *, ordering: str | None = None, data_dir: str | None = None,
                 seed: int = 0, **options) -> Dataset:
    """Load one split ('train' or 'test') of a dataset by name.

    name: 'fashion_mnist' (options: hflip, download), 'imagefolder' (data_dir and resolution
    required; cache_dir, workers, hflip; 'test' reads the val folder), 'shapes3d' (num_points,
    train_per_class, test_per_class, augment; takes no data_dir), 'parts3d' (the same options,
    and partial: partial views, default true; no data_dir), 'modelnet40' (data_dir
    required; num_points, augment), 'fashion_mnist_points' (num_points, download).
    ordering: images 'raster' (default), 'column', 'hilbert', 'shuffled'; point clouds
    'stored' (default), 'morton', 'hilbert', 'shuffled'.
    seed: fixes the 'shuffled' permutation and any random generation or sampling.
    """
    check_split(split)
    if name == "fashion_mnist":
        from hipcore.data.fashion_mnist import FashionMNIST as cls
    elif name == "fashion_mnist_points":
        from hipcore.data.fashion_mnist import FashionMNISTPoints as cls
    elif name == "imagefolder":
        from hipcore.data.imagefolder import ImageFolder as cls
    elif name == "modelnet40":
        from hipcore.data.pointclouds import ModelNet40 as cls
    elif name == "shapes3d":
        from hipcore.data.pointclouds import Shapes3D
        if data_dir is not None:
            raise ValueError("shapes3d is generated in memory and takes no data_dir")
        return Shapes3D(split, ordering=ordering, seed=seed, **options)
    elif name == "parts3d":
        from hipcore.data.parts3d import Parts3D
        if data_dir is not None:
            raise ValueError("parts3d is generated in memory and takes no data_dir")
        return Parts3D(split, ordering=ordering, seed=seed, **options)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return cls(split, ordering=ordering, data_dir=data_dir, seed=seed, **options)
