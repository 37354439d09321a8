"""Fashion-MNIST: search order, verification, fetching, loading, point sets."""

import gzip
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import hipcore.data.fashion_mnist as fm
from hipcore.data import BatchLoader, DataNotFoundError, load_dataset
from hipcore.data.cli import main as data_cli
from hipcore.files import temp_path

GET_DATA = "Fashion-MNIST is missing: run `python -m hipcore data fetch fashion-mnist`"


@pytest.fixture(scope="module")
def fmnist_dir() -> Path:
    """The real data's folder; missing data fails under CI and skips elsewhere."""
    folder = fm.find_fashion_mnist()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail(GET_DATA)
        pytest.skip(GET_DATA)
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty search path: HIPCORE_DATA unset, a temporary cache and system folder."""
    monkeypatch.delenv("HIPCORE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(fm, "SYSTEM_DIRS", [tmp_path / "system"])
    return tmp_path


def link_files(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for stem in fm.FILES:
        src = fm._file(source, stem)
        (target / src.name).symlink_to(src.resolve())
    return target


def test_search_order(fmnist_dir, isolated, monkeypatch):
    env, cache, system = isolated / "env", isolated / "cache" / "hipcore" / "fashion-mnist", isolated / "system"
    for folder in (env, cache, system):
        link_files(fmnist_dir, folder)
    monkeypatch.setenv("HIPCORE_DATA", str(env))
    assert fm.find_fashion_mnist() == env
    monkeypatch.delenv("HIPCORE_DATA")
    assert fm.find_fashion_mnist() == cache
    for f in cache.iterdir():
        f.unlink()
    assert fm.find_fashion_mnist() == system
    (system / "t10k-labels-idx1-ubyte.gz").unlink()          # an incomplete folder does not count
    assert fm.find_fashion_mnist() is None
    with pytest.raises(DataNotFoundError, match="fetch fashion-mnist"):
        load_dataset("fashion_mnist", "test")


def test_corrupted_copy_is_rejected(fmnist_dir, isolated, monkeypatch):
    env = link_files(fmnist_dir, isolated / "env")
    labels = env / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    labels.unlink()
    raw[-1] = (raw[-1] + 1) % 10                               # valid header and size, wrong content
    (env / "t10k-labels-idx1-ubyte").write_bytes(raw)
    monkeypatch.setenv("HIPCORE_DATA", str(env))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.*checksum mismatch"):
        load_dataset("fashion_mnist", "test")
    (env / "t10k-labels-idx1-ubyte").unlink()                 # a truncated archive
    labels.write_bytes(gzip.compress(bytes(raw))[:1000])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*truncated or corrupted"):
        fm.fetch_fashion_mnist(download=False, install=False, log=lambda s: None)
    labels.write_bytes(gzip.compress(bytes(raw[:-5])))        # wrong size
    with pytest.raises(ValueError, match="not the expected idx file"):
        load_dataset("fashion_mnist", "test")


def test_nothing_found_lists_the_three_ways(isolated):
    with pytest.raises(DataNotFoundError) as info:   # port 9 refuses: the download fails fast
        fm.fetch_fashion_mnist(install=False, base_url="http://127.0.0.1:9/", log=lambda s: None)
    message = str(info.value)
    for needle in ("HIPCORE_DATA", "apt-get install dataset-fashion-mnist", fm.BASE_URL,
                   "python -m hipcore data fetch fashion-mnist", "download from http://127.0.0.1:9/"):
        assert needle in message
    assert data_cli(["fetch", "fashion-mnist", "--no-download", "--no-install"]) == 1


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(isolated):
    """A local HTTP server over isolated/'served'; yields its base URL."""
    root = isolated / "served"
    root.mkdir()
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_download_then_install(fmnist_dir, isolated, server, monkeypatch):
    root, url = server
    link_files(fmnist_dir, root)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    installs = []

    def fake_install(log):                                    # stands in for apt-get
        installs.append(True)
        link_files(fmnist_dir, isolated / "system")

    monkeypatch.setattr(fm, "_apt_install", fake_install)
    folder = fm.fetch_fashion_mnist(base_url=url, log=lambda s: None)
    assert installs and folder == isolated / "system"
    cache = isolated / "cache" / "hipcore" / "fashion-mnist"
    assert not (cache / "t10k-labels-idx1-ubyte.gz").exists()   # the bad download was not kept
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_download_into_cache(fmnist_dir, isolated, server):
    root, url = server
    link_files(fmnist_dir, root)
    folder = fm.fetch_fashion_mnist(base_url=url, install=False, log=lambda s: None)
    assert folder == isolated / "cache" / "hipcore" / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.gz" for s in fm.FILES)
    assert fm.fetch_fashion_mnist(base_url="http://127.0.0.1:9/", log=lambda s: None) == folder


def test_a_killed_download_leaves_no_part_file_behind(fmnist_dir, isolated, server):
    root, url = server
    link_files(fmnist_dir, root)
    folder = isolated / "cache" / "hipcore" / "fashion-mnist"
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                                  # a pid that no longer runs
    mine = temp_path(folder / f"{next(iter(fm.FILES))}.gz", ".part")      # the name a download writes
    stale = mine.with_name(mine.name.replace(f".{os.getpid()}.", f".{dead.pid}."))
    stale.write_bytes(b"half a download")                       # what SIGKILL mid-fetch leaves
    fm.fetch_fashion_mnist(base_url=url, install=False, log=lambda s: None)
    assert not stale.exists()                                    # at b709275: left there forever
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.gz" for s in fm.FILES)


@pytest.fixture(scope="module")
def train(fmnist_dir):
    return load_dataset("fashion_mnist", "train")


def test_loads_both_splits(train):
    test = load_dataset("fashion_mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    for ds in (train, test):
        assert ds.labels.dtype == torch.long and ds.num_classes == 10 and len(ds.class_names) == 10
        assert torch.equal(torch.bincount(ds.labels), torch.full((10,), len(ds) // 10))
    assert train.labels[:5].tolist() == [9, 0, 0, 3, 0] and test.labels[:5].tolist() == [9, 2, 1, 1, 6]
    spec = train.modalities["image"]
    assert (spec.num_inputs, spec.channels, spec.grid) == (784, 1, (28, 28))
    assert train.describe()["size"] == 60000


def test_normalisation_uses_training_statistics(train):
    pixels = train._pixels.float() / 255
    assert abs(pixels.mean().item() - fm.MEAN) < 1e-5 and abs(pixels.std().item() - fm.STD) < 1e-5
    inputs, labels = train.get_batch(torch.arange(0, 60000, 7))
    x = inputs["image"]
    assert x.dtype == torch.float32 and x.shape == (len(labels), 784, 1)
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02


@pytest.mark.parametrize("ordering", ["column", "hilbert", "shuffled"])
def test_orderings_permute_the_raster_batch(train, ordering):
    other = load_dataset("fashion_mnist", "train", ordering=ordering, seed=4)
    idx = torch.tensor([0, 59999, 123])
    raster, _ = train.get_batch(idx)
    permuted, _ = other.get_batch(idx)
    order = other.modalities["image"].order
    assert torch.equal(permuted["image"], raster["image"][:, order])


def test_flip_augmentation_is_a_mirror_image(fmnist_dir):
    ds = load_dataset("fashion_mnist", "test", ordering="hilbert", hflip=True)
    idx = torch.arange(64)
    plain, _ = ds.get_batch(idx)
    aug, _ = ds.get_batch(idx, train=True, generator=torch.Generator().manual_seed(0))
    grid = lambda x: x["image"].index_select(1, torch.argsort(ds.order)).view(-1, 28, 28)  # noqa: E731
    flipped = ~torch.isclose(grid(aug), grid(plain)).view(64, -1).all(1)
    assert 10 < flipped.sum() < 54
    assert torch.equal(grid(aug)[flipped], grid(plain)[flipped].flip(-1))


def test_point_sets(fmnist_dir):
    ds = load_dataset("fashion_mnist_points", "test", num_points=128, seed=1)
    assert ds.modalities["points"].num_inputs == 128 and ds.modalities["points"].channels == 3
    idx = torch.tensor([3, 1, 4])
    (a, la), (b, _) = ds.get_batch(idx), ds.get_batch(idx)
    x = a["points"]
    assert x.shape == (3, 128, 3) and torch.equal(x, b["points"]) and torch.equal(la, ds.labels[idx])
    raw = x * ds.std["points"] + ds.mean["points"]                 # back to x, y in [-1, 1], intensity
    assert raw[..., :2].abs().max() <= 1 + 1e-5 and raw[..., 2].min() > 0   # nonzero pixels only
    assert torch.equal(ds.get_batch(torch.tensor([4]))[0]["points"][0], x[2])  # fixed per image
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    t1, t2 = ds.get_batch(idx, train=True, generator=g()), ds.get_batch(idx, train=True, generator=g())
    assert torch.equal(t1[0]["points"], t2[0]["points"]) and not torch.equal(t1[0]["points"], x)
    hilbert = load_dataset("fashion_mnist_points", "test", num_points=128, seed=1, ordering="hilbert")
    y = hilbert.get_batch(idx)[0]["points"]
    key = lambda p: sorted(map(tuple, p.tolist()))  # noqa: E731
    assert all(key(x[i]) == key(y[i]) for i in range(3))          # same points, other order


def test_loader_throughput_smoke(train):
    inputs, labels = next(iter(BatchLoader(train, 128, shuffle=True, train=True)))
    assert inputs["image"].shape == (128, 784, 1) and labels.shape == (128,)


def test_cli_fetch_finds_the_data(fmnist_dir, capsys):
    assert data_cli(["fetch", "fashion-mnist", "--no-download", "--no-install"]) == 0
    assert "ready" in capsys.readouterr().out


def test_fetch_into_a_user_folder_from_a_mirror_without_root(fmnist_dir, isolated, monkeypatch, capsys):
    """What Binder's postBuild does: no root, no apt, a folder the user names (a file:// mirror
    stands in for the official address)."""
    mirror = link_files(fmnist_dir, isolated / "mirror")
    monkeypatch.setattr(fm, "_apt_install", lambda log: pytest.fail("apt-get must not be tried with --into"))
    monkeypatch.setenv(fm.BASE_URL_ENV, mirror.as_uri())
    target = isolated / "home" / "data"
    assert data_cli(["fetch", "fashion-mnist", "--into", str(target)]) == 0
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{s}.gz" for s in fm.FILES)
    assert f"set HIPCORE_DATA={target}" in capsys.readouterr().out    # not on the search path
    monkeypatch.setenv("HIPCORE_DATA", str(target))
    assert fm.find_fashion_mnist() == target
    # an unreachable mirror and an empty folder: a clear error, nothing half-written
    empty = isolated / "empty"
    assert data_cli(["fetch", "fashion-mnist", "--into", str(empty), "--base-url", "http://127.0.0.1:9/"]) == 1
    assert not [p for p in empty.iterdir()]


def test_resolution_upsamples_each_image_bilinearly_to_8_bits():
    import torch

    from hipcore.data.fashion_mnist import upsample

    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    assert upsample(images, None) is images and upsample(images, 28) is images
    big = upsample(images, 56)
    assert big.shape == (5, 56, 56) and big.dtype == torch.uint8
    flat = torch.full((2, 28, 28), 77, dtype=torch.uint8)
    assert (upsample(flat, 56) == 77).all()                       # a constant image stays constant
    assert abs(big.float().mean() - images.float().mean()) < 2    # brightness kept
    for bad in (14, 56.0, True):
        with pytest.raises(ValueError, match="resolution"):
            upsample(images, bad)
    test = load_dataset("fashion_mnist", "test", resolution=56)
    assert test.modalities["image"].grid == (56, 56) and test.modalities["image"].num_inputs == 3136
