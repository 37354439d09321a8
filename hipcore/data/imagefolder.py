"""Labelled image folders in the ImageNet layout: root/{train,val}/<class>/*.{JPEG,jpeg,jpg,png}.

Class index = position in the sorted list of class folder names of root/train (root/val when
there is no train folder); the list is kept as `class_names` and written into the cache.
Each split is decoded once with Pillow (any mode converted to RGB, transparency composited on
white), resized so its shorter side equals `resolution` and centre-cropped to a square, then
stored as a uint8 .npy memmap [N, R, R, 3] in the cache folder; batches are served from it.
The cache is keyed by content: its file name holds a hash of the resolution and the file list
(relative paths, sizes and modification times; with content_check=True, the SHA-256 of every
file's bytes instead, read afresh), so a changed folder, even an image replaced by one of the
same size, gets a new cache. The same key, without the resolution, is the dataset's
`fingerprint`. Files are written under hipcore's temporary names and renamed into place (the
metadata last), so an interrupted build never leaves a cache that is used, and the temporary
files of a build that was killed are removed at the next start. A cache that cannot be read
(truncated, garbage, disagreeing with its metadata) is reported with a warning naming it and
rebuilt. Many files are decoded by a multiprocessing pool.

Undecodable images (corrupted, truncated, not an image) are skipped with a warning naming each
file; their names are recorded in the cache metadata (`skipped`). A wrong layout (missing
split folder, images outside class folders, no class folders, an empty class folder, a val
class unknown to train) raises FileNotFoundError or ValueError naming the folder.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hipcore.data.base import cache_root, check_examples, check_split
from hipcore.data.fingerprint import file_digest, listing_fingerprint
from hipcore.data.images import ImageDataset
from hipcore.errors import DataError
from hipcore.files import clean_temps, disk_full, no_space, temp_path, write_text_atomic
from hipcore.processes import die_with_parent

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CACHE_VERSION = 1
POOL_MIN_FILES = 512           # decode in a worker pool from this many files on (workers=None)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _class_folders(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir} not found: an image folder must be laid out as "
                                "root/{train,val}/<class>/<image>.{JPEG,jpg,png}")
    loose = sorted(p.name for p in split_dir.iterdir() if _is_image(p))
    if loose:
        raise ValueError(f"{split_dir} holds images directly ({loose[0]}, ...); expected one "
                         "subfolder per class")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{split_dir} has no class subfolders")
    return classes


def folder_classes(root: str | os.PathLike) -> list[str]:
    """The class names of an image folder (its train subfolders, or val's where there is no
    train folder), found without listing any image."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    return _class_folders(root / "train" if (root / "train").is_dir() else root / "val")


def scan_image_folder(root: str | os.PathLike, split: str) -> tuple[list[str], list[str], list[int]]:
    """(class_names, image paths relative to root, labels) of one split, in sorted order."""
    root = Path(root)
    class_names = folder_classes(root)
    folder = "val" if check_split(split) == "test" else "train"
    index = {name: i for i, name in enumerate(class_names)}
    files, labels = [], []
    for name in _class_folders(root / folder):
        if name not in index:
            raise ValueError(f"{root / folder / name}: class {name!r} is not among the train classes")
        entries = list((root / folder / name).iterdir())
        dangling = [p for p in entries if p.is_symlink() and not p.exists()]
        if dangling:
            raise DataError(f"{dangling[0]} is a link to nothing: remove it or point it at an image")
        images = sorted(p.name for p in entries if _is_image(p))
        if not images:
            raise ValueError(f"class folder {root / folder / name} holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
        files += [f"{folder}/{name}/{f}" for f in images]
        labels += [index[name]] * len(images)
    return class_names, files, labels


def content_key(root: Path, class_names: list[str], files: list[str], labels: list[int],
                content_check: bool = False) -> str:
    """The content key of one scanned split: class names, relative paths, labels, sizes,
    modification times and inode change times (content_check: each file's SHA-256, read now,
    instead of the times). The change time catches a file rewritten to the same size with its
    modification time put back (os.utime cannot set the change time)."""
    stamps = []
    for f in files:
        st = (root / f).stat()
        stamps.append([st.st_size, file_digest(root / f, cached=False) if content_check
                       else [st.st_mtime_ns, st.st_ctime_ns]])
    return listing_fingerprint([class_names, files, labels, stamps])


def folder_key(data_dir: str | os.PathLike, split: str, content_check: bool = False) -> str:
    """content_key of one split of the folder `data_dir` (the dataset's fingerprint)."""
    root = Path(data_dir).expanduser().resolve()
    return content_key(root, *scan_image_folder(root, split), content_check)


def decode_image(path: str | os.PathLike, resolution: int) -> np.ndarray:
    """Decode one image to uint8 [R, R, 3]: RGB, shorter side resized to R, centre crop."""
    with Image.open(path) as im:
        im.draft("RGB", (resolution, resolution))       # JPEG: decode at a reduced scale >= R
        im.load()
        if im.mode.startswith("I"):                     # 16/32-bit grayscale -> 8 bits
            im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        im = im.convert("RGB")
        w, h = im.size
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        im = im.resize(size, Image.BICUBIC)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
        return np.asarray(im, dtype=np.uint8)


def _decode_task(task: tuple[int, str, int]) -> tuple[int, np.ndarray | None, str]:
    i, path, resolution = task
    try:
        return i, decode_image(path, resolution), ""
    except Exception as e:  # Pillow raises many types for bad files
        return i, None, f"{type(e).__name__}: {e}"


def reserved_memmap(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new uint8 .npy memmap at `path` whose blocks are allocated on disk before any is
    written: a full disk is an OSError (ENOSPC) here, not a SIGBUS when a page is written."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "rb+") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    return out


def check_workers(workers: Any) -> int | None:
    """`workers` when it is None (automatic) or a whole number from 0 to the machine's cores
    (os.cpu_count()); a ValueError naming the option otherwise (a pool of 100,000 processes
    would exhaust the machine before decoding one image)."""
    cores = os.cpu_count() or 1
    ok = workers is None or (isinstance(workers, int) and not isinstance(workers, bool) and 0 <= workers <= cores)
    if not ok:
        raise ValueError(f"imagefolder's option workers must be a whole number from 0 to {cores}, the cores "
                         f"of this machine (or None: automatic), got {workers!r}")
    return workers


def build_cache(root: Path, files: list[str], resolution: int, target: Path,
                workers: int | None = None) -> list[int]:
    """Decode files into the .npy `target` [n_good, R, R, 3]; returns the kept file indices."""
    n = len(files)
    check_workers(workers)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= POOL_MIN_FILES else 0
    tmp, dense_tmp = temp_path(target), temp_path(target, ".dense")
    pool = None
    try:
        out = reserved_memmap(tmp, (n, resolution, resolution, 3))
        good = np.zeros(n, dtype=bool)
        tasks = [(i, str(root / f), resolution) for i, f in enumerate(files)]
        pool = (multiprocessing.get_context().Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),))
                if workers > 1 else None)                      # workers end with this process
        results = (pool.imap_unordered(_decode_task, tasks, chunksize=16) if pool
                   else map(_decode_task, tasks))
        for i, image, error in results:
            if image is None:
                warnings.warn(f"skipping undecodable image {root / files[i]} ({error})", stacklevel=3)
            else:
                out[i], good[i] = image, True
        kept = np.flatnonzero(good)
        if not len(kept):
            raise ValueError(f"{root}: none of the {n} images could be decoded")
        if len(kept) < n:  # compact: copy the good rows into a file of the right size
            dense = reserved_memmap(dense_tmp, (len(kept), resolution, resolution, 3))
            for s in range(0, len(kept), 1024):
                dense[s:s + 1024] = out[kept[s:s + 1024]]
            dense.flush()
            del dense
            os.replace(dense_tmp, tmp)
        else:
            out.flush()
        del out
        os.replace(tmp, target)
    except OSError as error:
        if disk_full(error, target.parent):
            raise no_space(target, f"the image cache of {root}") from None
        raise
    finally:
        if pool is not None:
            pool.terminate()
        tmp.unlink(missing_ok=True)
        dense_tmp.unlink(missing_ok=True)
    return kept.tolist()


class ImageFolder(ImageDataset):
    """An ImageNet-layout folder served from a uint8 memmap cache as {'image': [B, R*R, 3]}.

    split 'test' reads root/val. Inputs are normalised with the ImageNet mean/std (per RGB
    channel, in [0, 1] units). Options: resolution (required), cache_dir (default: the user
    cache's imagefolder/), workers (decoding processes; None = automatic), hflip (mirror
    augmentation when train=True), content_check (key the cache by every file's bytes,
    read at each load, instead of sizes and modification times).
    """

    def __init__(self, split: str, *, resolution: int, ordering: str | None = None,
                 data_dir: str | None = None, seed: int = 0, cache_dir: str | None = None,
                 workers: int | None = None, hflip: bool = False, content_check: bool = False) -> None:
        self.name, self.split = "imagefolder", check_split(split)
        check_workers(workers)
        if data_dir is None:
            raise ValueError("imagefolder needs data_dir: a folder laid out as root/{train,val}/<class>/")
        if not (isinstance(resolution, int) and not isinstance(resolution, bool) and resolution > 0):
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        root = Path(data_dir).expanduser().resolve()
        class_names, files, labels = scan_image_folder(root, split)
        self.fingerprint = content_key(root, class_names, files, labels, content_check)
        key = hashlib.sha256(json.dumps([CACHE_VERSION, resolution, self.fingerprint]).encode()).hexdigest()[:16]
        folder = Path(cache_dir) if cache_dir else cache_root() / "imagefolder"
        folder.mkdir(parents=True, exist_ok=True)
        clean_temps(folder)                                  # what killed builds left behind
        stem = f"{root.name}-{files[0].split('/')[0]}-{resolution}px-{key}"
        self.cache_path, meta_path = folder / f"{stem}.npy", folder / f"{stem}.json"
        shape = (resolution, resolution, 3)
        meta, pixels = self._open_cache(meta_path, key, shape) if self.cache_path.is_file() else (None, None)
        self.from_cache = meta is not None
        if meta is None:
            kept = build_cache(root, files, resolution, self.cache_path, workers)
            meta = {"version": CACHE_VERSION, "key": key, "root": str(root), "split": split,
                    "resolution": resolution, "class_names": class_names,
                    "labels": [labels[i] for i in kept],
                    "skipped": sorted(set(files) - {files[i] for i in kept})}
            write_text_atomic(meta_path, json.dumps(meta))
            meta, pixels = self._open_cache(meta_path, key, shape)
            if meta is None:
                raise DataError(f"the image cache {self.cache_path} just built cannot be read back "
                                "(is the cache folder's disk full?)")
        check_examples(meta_path, meta["labels"], len(meta["class_names"]))
        empty = sorted(set(range(len(class_names))) - set(meta["labels"]))
        if empty and split == "train":                        # a class the head would never see
            name = class_names[empty[0]]
            raise DataError(f"class {name!r} of {root} has no image that decodes (skipped: "
                            f"{', '.join(f for f in meta['skipped'] if f'/{name}/' in f)})")
        self.root, self.resolution, self.skipped = str(root), resolution, meta["skipped"]
        self.class_names = meta["class_names"]
        self.labels = torch.tensor(meta["labels"], dtype=torch.long)
        self._init_images(pixels, ordering=ordering, seed=seed, mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, hflip=hflip)

    def _open_cache(self, meta_path: Path, key: str, shape: tuple[int, ...]
                    ) -> tuple[dict | None, np.ndarray | None]:
        """(metadata, pixels memmap [N, R, R, 3]) of the cache, or (None, None) with a warning
        naming the file when it is missing, unreadable or inconsistent (it is then rebuilt)."""
        try:
            meta = json.loads(meta_path.read_text())
            if not (isinstance(meta, dict) and meta.get("key") == key and meta.get("version") == CACHE_VERSION):
                raise ValueError("written for other files or by another version")
            pixels = np.load(self.cache_path, mmap_mode="r", allow_pickle=False)
            if pixels.dtype != np.uint8 or pixels.shape != (len(meta["labels"]), *shape):
                raise ValueError(f"holds {pixels.dtype} {pixels.shape}, not uint8 "
                                 f"{(len(meta['labels']), *shape)}")
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
            reason = str(error).split("\n")[0][:120] or type(error).__name__
            warnings.warn(f"image cache {self.cache_path} (with {meta_path.name}) is unusable: "
                          f"truncated or corrupted ({reason}); rebuilding it", stacklevel=3)
            return None, None
        return meta, pixels

    def _extra_description(self) -> dict[str, Any]:
        return {**super()._extra_description(), "root": self.root, "cache": str(self.cache_path),
                "skipped": len(self.skipped)}
