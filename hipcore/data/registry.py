"""Every dataset by name: one table (`REGISTRY`) of what the package knows about each one
before loading it, and `load_dataset`, the one entry point.

A dataset's row says: its loader class, how many classes its head needs (known without
loading), the fingerprint of both its splits (read from its files' listing and cached
digests, or from its options where it is generated), and whether it needs a folder
(`data_dir`) or is generated in memory (and refuses one), and which numbered notebooks may run
on it (the first row a notebook may use is its default). A new dataset is its own module plus
one row here.

A row names its loader and class list as 'module:name' paths, imported on first use: a run
imports only its own dataset's module (a classification run on Fashion-MNIST never imports
collages or the point clouds), so an edit to one dataset's module changes nothing another
dataset's runs load.
"""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable

from hipcore.data.base import Dataset, check_split
from hipcore.data.fingerprint import files_fingerprint, listing_fingerprint

Folder = str | os.PathLike | None


def imported(path: str) -> Any:
    """'hipcore.data.collages:Collages' -> that object, its module imported on first use."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _count(path: str) -> Callable[[Folder], int]:
    """The classes of a fixed class list (or count) at `path`, read when first asked."""
    def classes(data_dir: Folder) -> int:
        found = imported(path)
        return found if isinstance(found, int) else len(found)
    return classes


def _fashion_fingerprint(data_dir: Folder, options: dict[str, Any]) -> str:
    split_files = imported("hipcore.data.fashion_mnist:split_files")
    return files_fingerprint([p for split in ("train", "test") for p in split_files(split, data_dir)])


def _collages_fingerprint(data_dir: Folder, options: dict[str, Any]) -> str:
    return listing_fingerprint(["collages", options, _fashion_fingerprint(data_dir, options)])   # items, options


def _folder_fingerprint(data_dir: Folder, options: dict[str, Any]) -> str:
    folder_key = imported("hipcore.data.imagefolder:folder_key")
    return listing_fingerprint([folder_key(data_dir, split, options.get("content_check", False))
                                for split in ("train", "test")])


def _modelnet40_fingerprint(data_dir: Folder, options: dict[str, Any]) -> str:
    modelnet40_sources = imported("hipcore.data.pointclouds:modelnet40_sources")
    return files_fingerprint([p for split in ("train", "test") for p in modelnet40_sources(data_dir, split)])


def _generated_fingerprint(name: str) -> Callable[[Folder, dict[str, Any]], str]:
    def fingerprint(data_dir: Folder, options: dict[str, Any]) -> str:
        return listing_fingerprint([name, options])              # made from its options alone
    return fingerprint


def _folder_classes(data_dir: Folder) -> int:
    if data_dir is None:
        raise ValueError("imagefolder's classes are the class folders of its data: give its folder, "
                         "or the number of classes")
    return len(imported("hipcore.data.imagefolder:folder_classes")(data_dir))


@dataclass(frozen=True)
class Entry:
    """What the package knows about one dataset before loading it."""

    loader: str                                             # 'module:Class' of a Dataset (imported on first use):
                                                            # Class(split, ordering=, seed=, [data_dir=], **options)
    classes: Callable[[Folder], int]                        # classes of the head, from data_dir when it decides
    fingerprint: Callable[[Folder, dict[str, Any]], str]    # both splits, without loading them
    needs_dir: bool = False                                 # data_dir required
    generated: bool = False                                 # made in memory: takes no data_dir
    options: str = ""                                       # the loader's options, for messages and --help
    notebooks: tuple[str, ...] = ()                         # the notebooks ('01', ...) that may run on it

    @property
    def dataset_class(self) -> type[Dataset]:
        return imported(self.loader)


FASHION, POINTS = "hipcore.data.fashion_mnist", "hipcore.data.pointclouds"
REGISTRY: dict[str, Entry] = {
    "fashion_mnist": Entry(f"{FASHION}:FashionMNIST", _count(f"{FASHION}:CLASS_NAMES"), _fashion_fingerprint,
                           options="hflip, download", notebooks=("00", "01", "02", "03")),
    "imagefolder": Entry("hipcore.data.imagefolder:ImageFolder", _folder_classes, _folder_fingerprint, needs_dir=True,
                         options="resolution (required), cache_dir, workers, hflip, content_check",
                         notebooks=("00", "01", "02", "03")),
    "parts3d": Entry("hipcore.data.parts3d:Parts3D", _count("hipcore.data.parts3d:CLASS_NAMES"),
                     _generated_fingerprint("parts3d"), generated=True,
                     options="num_points, train_per_class, test_per_class, augment, partial", notebooks=("04",)),
    "shapes3d": Entry(f"{POINTS}:Shapes3D", _count(f"{POINTS}:SHAPE_NAMES"), _generated_fingerprint("shapes3d"),
                      generated=True, options="num_points, train_per_class, test_per_class, augment",
                      notebooks=("04",)),
    "modelnet40": Entry(f"{POINTS}:ModelNet40", _count(f"{POINTS}:MODELNET40_CLASSES"), _modelnet40_fingerprint,
                        needs_dir=True, options="num_points, augment", notebooks=("04",)),
    "fashion_mnist_points": Entry(f"{FASHION}:FashionMNISTPoints", _count(f"{FASHION}:CLASS_NAMES"),
                                  _fashion_fingerprint, options="num_points, download"),
    "collages": Entry("hipcore.data.collages:Collages", _count("hipcore.data.collages:CLASS_NAMES"),
                      _collages_fingerprint,
                      options="side, item_side, min_items, max_items, train_canvases, test_canvases",
                      notebooks=("07",)),
}
DATASETS = tuple(REGISTRY)


PER_CALL = ("split", "ordering", "data_dir", "seed")      # what load_dataset passes itself


def options_of(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) options of a dataset's loader, read from its signature."""
    params = [p for p in inspect.signature(entry(name).dataset_class.__init__).parameters.values()
              if p.kind is p.KEYWORD_ONLY and p.name not in PER_CALL]
    return (tuple(p.name for p in params if p.default is p.empty),
            tuple(p.name for p in params if p.default is not p.empty))


def check_options(name: str, data_dir: Folder, options: dict[str, Any]) -> None:
    """ValueError (FileNotFoundError for a folder that is not there) naming the problem: a
    missing folder, an unknown option (with the dataset's list), or a required one left out."""
    found = entry(name)
    if found.needs_dir:
        if data_dir is None:
            raise ValueError(f"{name} needs data_dir, its folder (--data-dir)")
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"{name}'s folder {data_dir} does not exist")
    required, optional = options_of(name)
    unknown = sorted(set(options) - set(required) - set(optional))
    if unknown:
        known = ", ".join([*(f"{r} (required)" for r in required), *optional]) or "none"
        raise ValueError(f"{name} has no option {', '.join(map(repr, unknown))}; its options: {known}")
    missing = [r for r in required if r not in options]
    if missing:
        raise ValueError(f"{name} needs option {', '.join(missing)}: give it, e.g. "
                         + " ".join(f"--data-option {m}=N" for m in missing))
    defaults = {p.name: p.default for p in inspect.signature(found.dataset_class.__init__).parameters.values()}
    for key, value in options.items():
        if isinstance(defaults.get(key), bool) and not isinstance(value, bool):
            raise ValueError(f"{name}'s option {key} must be true or false, got {value!r}")   # NaN is truthy


def dataset_name(text: str) -> str:
    """A dataset's name as typed on a command line ('fashion-mnist') -> its row's ('fashion_mnist')."""
    return text.replace("-", "_")


def for_notebook(notebook: str) -> tuple[str, ...]:
    """The datasets notebook `notebook` ('01_imagenet_comparison' or '01') may run on; its default first."""
    number = notebook.split("_", 1)[0]
    return tuple(name for name, row in REGISTRY.items() if number in row.notebooks)


def entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return REGISTRY[name]


def num_classes(name: str, data_dir: str | None = None) -> int:
    """Classes of a dataset's head, known without loading it; imagefolder's are the class
    folders of `data_dir` (listed, not read)."""
    return entry(name).classes(data_dir)


def dataset_fingerprint(name: str, *, data_dir: Folder = None, **options: Any) -> str:
    """The fingerprint of both splits of a dataset by name, read from its files' listing and
    cached digests rather than by loading it (what names a run after its data)."""
    found = entry(name)
    if found.needs_dir and data_dir is None:
        raise ValueError(f"{name} needs data_dir")
    return found.fingerprint(data_dir, options)


def load_dataset(name: str, split: str, *, ordering: str | None = None, data_dir: str | None = None,
                 seed: int = 0, **options) -> Dataset:
    """Load one split ('train' or 'test') of a dataset by name.

    name: 'fashion_mnist' (options: hflip, download), 'imagefolder' (data_dir and resolution
    required; cache_dir, workers, hflip; 'test' reads the val folder), 'shapes3d' (num_points,
    train_per_class, test_per_class, augment; takes no data_dir), 'parts3d' (the same options,
    and partial: partial views, default true; no data_dir), 'modelnet40' (data_dir
    required; num_points, augment), 'fashion_mnist_points' (num_points, download), 'collages'
    (side, item_side, min_items, max_items, train_canvases, test_canvases; labels per pixel).
    ordering: images 'raster' (default), 'column', 'hilbert', 'shuffled'; point clouds
    'stored' (default), 'morton', 'hilbert', 'shuffled'.
    seed: fixes the 'shuffled' permutation and any random generation or sampling.
    """
    check_split(split)
    found = entry(name)
    check_options(name, data_dir, options)
    if found.generated:
        if data_dir is not None:
            raise ValueError(f"{name} is generated in memory and takes no data_dir")
        return found.dataset_class(split, ordering=ordering, seed=seed, **options)
    return found.dataset_class(split, ordering=ordering, data_dir=data_dir, seed=seed, **options)
