"""Fashion-MNIST (Xiao et al. 2017): 60k/10k grayscale 28 x 28 images of 10 clothing classes.

Where the files are looked for, in order (the first folder holding all four files wins):
  1. $HIPCORE_DATA (or $HIPCORE_DATA/fashion-mnist),
  2. the user cache, $XDG_CACHE_HOME/hipcore/fashion-mnist or ~/.cache/hipcore/fashion-mnist,
  3. the Debian package's folder, /usr/share/datasets/fashion-mnist.
Each file may be gzipped (`<name>.gz`) or raw. Every file is checked before use: its idx header
and size, then its checksum (the official .gz md5, or the sha256 of the raw content), so a
truncated or corrupted copy raises ValueError naming the file and is never half-used.
`fetch_fashion_mnist` additionally downloads the official files into the cache, then (on
Debian, as root) installs the `dataset-fashion-mnist` package. Without root (Binder, Colab, a
shared machine) the download is the way: `into` names any folder the user can write (the user
cache by default), and `base_url` (or $HIPCORE_FASHION_MNIST_URL) a mirror, file:// included.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import subprocess
import urllib.request
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hipcore.config import ModalitySpec, whole_number
from hipcore.data.base import DataNotFoundError, Dataset, cache_root, check_examples, check_split
from hipcore.data.fingerprint import files_fingerprint
from hipcore.data.images import ImageDataset
from hipcore.data.orderings import POINT_ORDERINGS, check_ordering, hilbert_index, morton_index
from hipcore.files import clean_temps, temp_path

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860406, 0.3530242          # pixel statistics of the training set, in [0, 1] units
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
BASE_URL_ENV = "HIPCORE_FASHION_MNIST_URL"     # a mirror of BASE_URL's four files (file:// works)
SYSTEM_DIRS = [Path("/usr/share/datasets/fashion-mnist")]
DEBIAN_PACKAGE = "dataset-fashion-mnist"
FETCH_COMMAND = "python -m hipcore data fetch fashion-mnist"

# file stem: (md5 of the official .gz, sha256 of the raw idx content, array shape). The sha256s
# were computed from the Debian package's copies after checking their headers, their class
# counts (6000/1000 per class) and the published pixel mean/std.
FILES = {
    "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                                (60000, 28, 28)),
    "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe",
                                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                                (60000,)),
    "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79",
                               "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                               (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310",
                               "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                               (10000,)),
}
SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


# ----------------------------------------------------------------------------- locating files

def search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched, in order. An explicit data_dir replaces the whole search path."""
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / "fashion-mnist"]
    dirs = []
    if os.environ.get("HIPCORE_DATA"):
        dirs += [Path(os.environ["HIPCORE_DATA"]), Path(os.environ["HIPCORE_DATA"]) / "fashion-mnist"]
    return dirs + [cache_root() / "fashion-mnist", *SYSTEM_DIRS]


def _file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first searched folder that holds all four files (not yet verified), or None."""
    for folder in search_dirs(data_dir):
        if all(_file(folder, stem) for stem in FILES):
            return folder
    return None


def not_found_message(data_dir=None, attempts: list[str] | None = None) -> str:
    names = ", ".join(f"{s}.gz" for s in FILES)
    lines = [
        "Fashion-MNIST was not found (looked in: "
        + ", ".join(str(d) for d in search_dirs(data_dir)) + ").",
        "Get it in one of three ways:",
        f"  1. set HIPCORE_DATA to a folder holding the four files ({names}; gzipped or not);",
        f"  2. install the Debian package: apt-get install {DEBIAN_PACKAGE}"
        f" (files land in {SYSTEM_DIRS[0]});",
        f"  3. download the four files from {BASE_URL} into {cache_root() / 'fashion-mnist'}.",
        f"`{FETCH_COMMAND}` tries 3 and then 2 for you.",
    ]
    if attempts:
        lines.append("Attempts that failed: " + "; ".join(attempts))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- reading files

def read_idx(path: Path, stem: str) -> np.ndarray:
    """Read and verify one idx file (.gz or raw) -> uint8 array of FILES[stem]'s shape."""
    md5, sha256, shape = FILES[stem]
    blob = Path(path).read_bytes()
    raw = blob
    if str(path).endswith(".gz") or blob[:2] == b"\x1f\x8b":         # by name, or gzip's magic bytes
        try:
            raw = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: truncated or corrupted gzip archive ({e}); delete it and "
                             f"run `{FETCH_COMMAND}`") from None
    header = 4 + 4 * len(shape)
    magic = bytes([0, 0, 8, len(shape)])  # unsigned-byte data with len(shape) dimensions
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(len(shape)))
    if raw[:4] != magic or dims != shape or len(raw) != header + int(np.prod(shape)):
        raise ValueError(f"{path}: not the expected idx file (header {raw[:4].hex()} dims {dims}, "
                         f"{len(raw)} bytes; expected dims {shape}); delete it and run `{FETCH_COMMAND}`")
    if hashlib.sha256(raw).hexdigest() != sha256 and hashlib.md5(blob).hexdigest() != md5:
        raise ValueError(f"{path}: checksum mismatch (the file is corrupted or not the official "
                         f"{stem}); delete it and run `{FETCH_COMMAND}`")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


@functools.lru_cache(maxsize=4)
def _load_split(folder: str, split: str, stamp: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    images_stem, labels_stem = SPLIT_FILES[split]
    images = read_idx(_file(Path(folder), images_stem), images_stem)
    labels_path = _file(Path(folder), labels_stem)
    labels = check_examples(labels_path, read_idx(labels_path, labels_stem), len(CLASS_NAMES))
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def split_files(split: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The (images, labels) files of one split, as found (not yet verified)."""
    check_split(split)
    folder = find_fashion_mnist(data_dir)
    if folder is None:
        raise DataNotFoundError(not_found_message(data_dir))
    return [_file(folder, s) for s in SPLIT_FILES[split]]


def load_fashion_mnist(split: str, data_dir: str | os.PathLike | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, 28, 28] and labels int64 [N] of one split, verified (cached per process)."""
    files = split_files(split, data_dir)
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns, f.stat().st_ctime_ns) for f in files)
    return _load_split(str(files[0].parent), split, stamp)


# ----------------------------------------------------------------------------- fetching

def _download(folder: Path, timeout: float, base_url: str) -> None:
    """Download the missing files into folder, each verified before it is renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    clean_temps(folder)                      # what a killed download left: its process is gone
    for stem in FILES:
        if _file(folder, stem):
            continue
        target = folder / (stem + ".gz")
        tmp = temp_path(target, ".part")
        try:
            with urllib.request.urlopen(base_url + stem + ".gz", timeout=timeout) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            read_idx(tmp, stem)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def _apt_install(log: Callable[[str], None]) -> None:
    """Install the Debian package (as root on Debian only); apt-get update if the first try fails."""
    if not (Path("/etc/debian_version").exists() and shutil.which("apt-get")):
        raise RuntimeError("not a Debian system with apt-get")
    if os.geteuid() != 0:
        raise RuntimeError(f"not root (run: sudo apt-get install {DEBIAN_PACKAGE})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", DEBIAN_PACKAGE]
    log("running: " + " ".join(install))
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        log("running: apt-get update")
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get install failed: {done.stderr.strip()[-300:]}")


def verify_folder(folder: Path) -> None:
    """Read and check all four files in folder (ValueError naming the first bad one)."""
    for stem in FILES:
        read_idx(_file(folder, stem), stem)


def fetch_fashion_mnist(*, download: bool = True, install: bool = True, timeout: float = 15.0,
                        base_url: str | None = None, into: str | os.PathLike | None = None,
                        log: Callable[[str], None] = print) -> Path:
    """Make Fashion-MNIST available and return its verified folder.

    Looks in the search path; else downloads the official files (or base_url's, else
    $HIPCORE_FASHION_MNIST_URL's) into the user cache; else installs the Debian package. With
    `into`, the files must end up in that folder: it is the only one looked in and the one
    downloaded into (the Debian package cannot put them there, so it is not tried). Raises
    DataNotFoundError listing the ways to get the data when nothing works, ValueError when a
    found file is corrupted.
    """
    base_url = base_url or os.environ.get(BASE_URL_ENV) or BASE_URL
    if not base_url.endswith("/"):
        base_url += "/"
    folder = find_fashion_mnist(into)
    attempts = []
    if into is not None:
        install = False
    if folder is None and download:
        target = cache_root() / "fashion-mnist" if into is None else Path(into).expanduser()
        log(f"downloading Fashion-MNIST from {base_url} into {target}")
        try:
            _download(target, timeout, base_url)
            folder = target
        except Exception as e:  # network errors come in many types; report and go on
            attempts.append(f"download from {base_url}: {e}")
            log(f"download failed: {e}")
    if folder is None and install:
        try:
            _apt_install(log)
        except Exception as e:
            attempts.append(f"apt-get install {DEBIAN_PACKAGE}: {e}")
            log(f"package install failed: {e}")
        folder = find_fashion_mnist()
    if folder is None:
        raise DataNotFoundError(not_found_message(into, attempts))
    verify_folder(folder)
    log(f"Fashion-MNIST is ready in {folder}")
    if into is not None and find_fashion_mnist() != folder:
        log(f"notebooks look in {', '.join(map(str, search_dirs()))}: set HIPCORE_DATA={folder} so they find it")
    return folder


# ----------------------------------------------------------------------------- datasets

class FashionMNIST(ImageDataset):
    """Fashion-MNIST images as {'image': [B, 784, 1]}, normalised with the training set's stats.

    Options: hflip (mirror augmentation when train=True), download (fetch when missing),
    resolution (the image side in pixels: None or 28 keeps the originals; a larger side
    upsamples each image bilinearly, rounded back to 8 bits, e.g. 56 for 3,136 positions).
    """

    def __init__(self, split: str, *, ordering: str | None = None, data_dir: str | None = None,
                 seed: int = 0, hflip: bool = False, download: bool = False,
                 resolution: int | None = None) -> None:
        self.name, self.split = "fashion_mnist", check_split(split)
        if download and data_dir is None and find_fashion_mnist() is None:
            fetch_fashion_mnist()
        images, self.labels = load_fashion_mnist(split, data_dir)
        images = upsample(images, resolution)                                    # [N, S, S] uint8
        self.fingerprint = files_fingerprint(split_files(split, data_dir))
        self.class_names = list(CLASS_NAMES)
        self._init_images(images.unsqueeze(-1), ordering=ordering, seed=seed,
                          mean=[MEAN], std=[STD], hflip=hflip)


def upsample(images: torch.Tensor, side: int | None) -> torch.Tensor:
    """uint8 [N, 28, 28] -> uint8 [N, side, side], bilinear (half-pixel centres), rounded;
    side None or 28 returns the images unchanged."""
    if side is None or side == images.shape[-1]:
        return images
    if not isinstance(side, int) or isinstance(side, bool) or side < images.shape[-1]:
        raise ValueError(f"resolution must be an int >= {images.shape[-1]} (the original side), got {side!r}")
    out = torch.empty(len(images), side, side, dtype=torch.uint8)
    for start in range(0, len(images), 4096):                                    # bounded float memory
        chunk = images[start:start + 4096].unsqueeze(1).float()                 # [n, 1, 28, 28]
        big = torch.nn.functional.interpolate(chunk, size=(side, side), mode="bilinear", align_corners=False)
        out[start:start + 4096] = big.squeeze(1).round().clamp(0, 255).to(torch.uint8)
    return out


# Statistics of (x, y, intensity) over all nonzero training pixels.
POINTS_MEAN = [0.0476, -0.0440, 0.5744]
POINTS_STD = [0.4472, 0.5225, 0.2909]


class FashionMNISTPoints(Dataset):
    """Fashion-MNIST as point sets {'points': [B, P, 3]} of (x, y, intensity), as in PointNet++.

    Each image keeps `num_points` of its nonzero pixels, drawn uniformly without replacement
    (an image with fewer nonzero pixels repeats them); x, y in [-1, 1] (y up), intensity in
    [0, 1], then normalised with POINTS_MEAN/STD. The evaluation sample of image i is fixed by
    (seed, i); get_batch(train=True) draws a fresh sample per image from the generator.
    Orders: 'stored' (raster order of the chosen pixels), 'morton', 'hilbert' (2-D curves on
    the 32 x 32 grid), 'shuffled' (one fixed permutation of the P slots).
    """

    def __init__(self, split: str, *, ordering: str | None = None, data_dir: str | None = None,
                 seed: int = 0, num_points: int = 256, download: bool = False) -> None:
        self.name, self.split = "fashion_mnist_points", check_split(split)
        self.ordering = check_ordering(ordering or "stored", POINT_ORDERINGS)
        if not 0 < whole_number(num_points, "num_points") <= 784:
            raise ValueError(f"num_points must be in [1, 784], got {num_points}")
        if download and data_dir is None and find_fashion_mnist() is None:
            fetch_fashion_mnist()
        images, self.labels = load_fashion_mnist(split, data_dir)
        self.fingerprint = files_fingerprint(split_files(split, data_dir))
        self.seed, self.num_points = seed, num_points
        self.class_names = list(CLASS_NAMES)
        self._images = images.reshape(len(images), 784)                              # [N, 784]
        rows, cols = torch.arange(784).div(28, rounding_mode="floor"), torch.arange(784) % 28
        self._xy = torch.stack([cols / 13.5 - 1, 1 - rows / 13.5], -1)               # [784, 2]
        grid = np.stack([rows.numpy(), cols.numpy()], -1)
        rank = {"stored": np.arange(784), "morton": morton_index(grid, 5),
                "hilbert": hilbert_index(grid, 5)}.get(self.ordering, np.arange(784))
        self._rank = torch.from_numpy(np.argsort(np.argsort(rank)))                 # [784] pixel -> key
        self._slots = (torch.from_numpy(np.random.default_rng(seed).permutation(num_points))
                       if self.ordering == "shuffled" else None)
        self.modalities = {"points": ModalitySpec(num_points, 3)}
        self.mean = {"points": torch.tensor(POINTS_MEAN)}
        self.std = {"points": torch.tensor(POINTS_STD)}

    def _sample(self, images: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """Pixel indices [B, P] (in the dataset's order) of the nonzero pixels of lowest score."""
        score = score + (images == 0).float()                                      # zeros last
        chosen = score.topk(self.num_points, dim=1, largest=False, sorted=True).indices  # [B, P]
        count = (images != 0).sum(1, keepdim=True).clamp(min=1)                    # [B, 1]
        slot = torch.arange(self.num_points).expand_as(chosen)
        chosen = chosen.gather(1, torch.where(slot < count, slot, slot % count))   # repeat if few
        chosen = chosen.gather(1, self._rank[chosen].argsort(1))                   # curve order
        if self._slots is not None:
            chosen = chosen[:, self._slots]
        return chosen

    def _raw(self, indices: torch.Tensor, train: bool,
             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        images = self._images[indices]                                              # [B, 784]
        if train:
            score = torch.rand(images.shape, generator=generator)
        else:  # a fixed sample per image: scores hashed from (seed, image index, pixel)
            score = _hash_uniform(indices[:, None] * 784 + torch.arange(784), self.seed)
        chosen = self._sample(images, score)                                        # [B, P]
        intensity = images.gather(1, chosen).float().mul_(1.0 / 255.0)             # [B, P]
        return {"points": torch.cat([self._xy[chosen], intensity.unsqueeze(-1)], -1)}  # [B, P, 3]

    def _extra_description(self) -> dict:
        return {"num_points": self.num_points, "seed": self.seed}


def _hash_uniform(keys: torch.Tensor, seed: int) -> torch.Tensor:
    """Deterministic pseudo-random floats in [0, 1) from integer keys (murmur3's finaliser)."""
    with np.errstate(over="ignore"):
        h = keys.numpy().astype(np.uint32) * np.uint32(0x9E3779B1) + np.uint32(seed * 0x7FEB352D & 0xFFFFFFFF)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return torch.from_numpy((h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24)))
