"""Faults in data and caches: bad values refused at load naming the file and index, the image
cache keyed by content (stale, corrupt, killed builds), fingerprints that follow the content."""

import multiprocessing
import os
import signal
import time
import warnings

import h5py
import numpy as np
import pytest
from PIL import Image

import hipcore.data.fingerprint as fp
import hipcore.data.imagefolder as imf
from hipcore.data import load_dataset
from hipcore.data.base import check_examples
from hipcore.data.fingerprint import files_fingerprint
from hipcore.data.registry import dataset_fingerprint
from hipcore.errors import DataError
from hipcore.experiments.common import Arm, train_configs

RES = 4


def image(path, colour, size=(6, 6)):
    """An uncompressed PNG: its byte size depends on its size only, not on its colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, compress_level=0)


@pytest.fixture
def folder(tmp_path):
    for split, n in (("train", 3), ("val", 1)):
        for c, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
            for i in range(n):
                image(tmp_path / "images" / split / f"c{c}" / f"{i}.png", colour)
    return tmp_path / "images"


def load(folder, tmp_path, **kw):
    return load_dataset("imagefolder", "train", data_dir=str(folder), resolution=RES,
                        cache_dir=str(tmp_path / "cache"), **kw)


def first_pixel(ds, i=0):
    return ds._pixels[i, 0, 0].tolist()


# ---- values checked at load ----

@pytest.mark.parametrize("labels, values, message", [
    ([], None, "holds no examples"),
    ([0, 1, 1.5, 2], None, r"label 1.5 at index 2 is not a class index"),
    ([0, 1, 3, -1], None, r"label 3 at index 2 is outside \[0, 3\)"),
    ([0, 1, 2, 0], np.array([[0.0], [1.0], [np.nan], [np.inf]]), r"non-finite value \(NaN or inf\) in example 2"),
])
def test_check_examples_names_the_source_and_first_bad_index(labels, values, message):
    with pytest.raises(DataError, match=r"^src.h5: " + message):
        check_examples("src.h5", np.asarray(labels), 3, values)


def write_h5(path, data, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["data"], f["label"] = data, labels


@pytest.mark.parametrize("fault, message", [
    ("nan", r"ply_data_train0.h5: non-finite value \(NaN or inf\) in example 3"),
    ("empty", r"ply_data_train0.h5: holds no examples"),
    ("float", r"ply_data_train0.h5: label 1.5 at index 1 is not a class index"),
    ("range", r"ply_data_train0.h5: label 7 at index 4 is outside \[0, 3\)"),
])
def test_modelnet40_files_with_bad_values_are_refused_naming_file_and_index(tmp_path, fault, message):
    rng = np.random.default_rng(0)
    data, labels = rng.normal(size=(6, 8, 3)).astype(np.float32), np.array([[0], [1], [2], [0], [1], [2]])
    (tmp_path / "shape_names.txt").write_text("a\nb\nc\n")
    if fault == "nan":
        data[3, 5, 1] = np.nan
    elif fault == "empty":
        data, labels = data[:0], labels[:0]
    elif fault == "float":
        labels = labels.astype(np.float32) + np.array([[0], [0.5], [0], [0], [0], [0]], np.float32)
    else:
        labels[4] = 7
    write_h5(tmp_path / "ply_data_train0.h5", data, labels)
    with pytest.raises(DataError, match=message):
        load_dataset("modelnet40", "train", data_dir=str(tmp_path))


# ---- the image cache ----

def test_an_image_replaced_by_one_of_the_same_size_is_not_served_from_the_old_cache(folder, tmp_path):
    first = load(folder, tmp_path)
    assert first_pixel(first) == [255, 0, 0]
    target = folder / "train" / "c0" / "0.png"
    stat = target.stat()
    image(target, (0, 255, 0))
    assert target.stat().st_size == stat.st_size
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = load(folder, tmp_path)
    assert not again.from_cache and first_pixel(again) == [0, 255, 0] and again.fingerprint != first.fingerprint
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))          # the same size and time: the
    restored = load(folder, tmp_path)                                  # change time tells (utime set it)
    assert not restored.from_cache and first_pixel(restored) == [0, 255, 0]
    checked = load(folder, tmp_path, content_check=True)
    image(target, (0, 0, 0))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rechecked = load(folder, tmp_path, content_check=True)
    assert first_pixel(checked) == [0, 255, 0] and first_pixel(rechecked) == [0, 0, 0]
    assert not rechecked.from_cache and rechecked.fingerprint != checked.fingerprint


@pytest.mark.parametrize("damage", ["truncated", "garbage", "metadata"])
def test_a_corrupt_cache_is_named_and_rebuilt(folder, tmp_path, damage):
    good = load(folder, tmp_path)
    path = good.cache_path if damage != "metadata" else good.cache_path.with_suffix(".json")
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 2] if damage == "truncated" else b"\x93NUMPY garbage" * 8)
    del good
    with pytest.warns(UserWarning,
                      match=f"image cache {good_path(tmp_path)}.* is unusable: truncated or corrupted.*rebuilding"):
        rebuilt = load(folder, tmp_path)
    assert not rebuilt.from_cache and first_pixel(rebuilt) == [255, 0, 0] and len(rebuilt) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(folder, tmp_path).from_cache


def good_path(tmp_path):
    return next((tmp_path / "cache").glob("*.npy"))


def slow_build(folder, cache):
    """Build the cache (in another process) at a pace a kill can catch midway."""
    decode = imf.decode_image
    imf.decode_image = lambda *args: (time.sleep(0.3), decode(*args))[1]
    imf.ImageFolder("train", resolution=RES, data_dir=str(folder), cache_dir=str(cache), workers=0)


def test_a_cache_build_killed_midway_leaves_nothing_behind(folder, tmp_path):
    cache = tmp_path / "cache"
    build = multiprocessing.get_context("fork").Process(target=slow_build, args=(folder, cache))
    build.start()
    deadline = time.time() + 60
    while not list(cache.glob(".*.hipcore-tmp")):
        assert build.is_alive() and time.time() < deadline, "the build ended before it could be killed"
        time.sleep(0.01)
    os.kill(build.pid, signal.SIGKILL)
    build.join()
    assert list(cache.glob(".*.hipcore-tmp")) and not list(cache.glob("*.npy"))
    ds = load(folder, tmp_path)                         # the next start removes what the kill left
    assert not ds.from_cache and first_pixel(ds) == [255, 0, 0]
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".npy"]


# ---- fingerprints ----

def test_fingerprints_follow_content_not_place_and_name_the_notebooks_runs(folder, tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "sub" / "a.bin"
    b.parent.mkdir()
    a.write_bytes(b"1234"), b.write_bytes(b"1234")
    assert files_fingerprint([a]) == files_fingerprint([b])
    b.write_bytes(b"1235")
    assert files_fingerprint([a]) != files_fingerprint([b])
    settings = {"epochs": 1}
    data = dict(dataset="imagefolder", data_dir=str(folder), data_options={"resolution": RES})
    before = train_configs(Arm("x"), 0, settings, **data)[1]
    assert train_configs(Arm("x"), 0, settings, **data)[1].run_dir == before.run_dir
    image(folder / "train" / "c1" / "new.png", (1, 2, 3))                 # changed data: a new run
    after = train_configs(Arm("x"), 0, settings, **data)[1]
    assert after.run_id == before.run_id and after.run_dir != before.run_dir
    assert dataset_fingerprint("imagefolder", data_dir=str(folder)) in after.run_dir


def test_fashion_mnist_fingerprint_digests_its_files_once_per_path_size_and_time(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fp._memory.clear()
    first = dataset_fingerprint("fashion_mnist")
    assert (tmp_path / "hipcore" / "fingerprints.json").is_file()

    def no_reading(path):
        raise AssertionError(f"{path} was read again although unchanged")

    monkeypatch.setattr(fp, "sha256_file", no_reading)
    fp._memory.clear()                                  # a new process: only the file cache is left
    assert dataset_fingerprint("fashion_mnist") == first
    assert dataset_fingerprint("fashion_mnist_points") == first


def test_an_image_rewritten_with_its_size_and_modification_time_put_back_rebuilds_the_cache(folder, tmp_path):
    assert first_pixel(load(folder, tmp_path)) == [255, 0, 0]
    target = folder / "train" / "c0" / "0.png"
    stat = target.stat()
    image(target, (0, 255, 0))                                           # the same byte size
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))            # and the old modification time
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    again = load(folder, tmp_path)
    assert not again.from_cache and first_pixel(again) == [0, 255, 0]
    assert fp.file_digest(target) == fp.file_digest(target, cached=False)   # the digest cache follows too


def test_a_full_disk_under_the_image_cache_is_one_clear_error_with_nothing_left(folder, tmp_path, monkeypatch):
    import errno

    from hipcore.errors import DiskFullError

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imf.os, "posix_fallocate", full, raising=False)
    with pytest.raises(DiskFullError, match=r"no space left on .*cache \(writing the image cache of "):
        load(folder, tmp_path)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []        # no temp file, no half cache
    monkeypatch.undo()
    assert first_pixel(load(folder, tmp_path)) == [255, 0, 0]           # with space again, it builds
