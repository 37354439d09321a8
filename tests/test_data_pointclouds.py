"""Point clouds: the built-in shapes and ModelNet40 in HDF5."""

import h5py
import numpy as np
import pytest
import torch

from hipcore.data import load_dataset
from hipcore.data.pointclouds import SHAPE_NAMES
from hipcore.errors import DataError

SMALL = dict(num_points=128, train_per_class=4, test_per_class=2)


def test_shapes3d_classes_sizes_and_normalisation():
    ds = load_dataset("shapes3d", "train", **SMALL)
    assert ds.num_classes == len(ds.class_names) == len(SHAPE_NAMES) >= 10
    assert len(ds) == 4 * ds.num_classes
    assert torch.equal(torch.bincount(ds.labels), torch.full((ds.num_classes,), 4))
    spec = ds.modalities["points"]
    assert (spec.num_inputs, spec.channels, spec.grid) == (128, 3, (128,))
    x, labels = ds.get_batch(torch.arange(len(ds)))
    assert x["points"].shape == (len(ds), 128, 3) and x["points"].dtype == torch.float32
    radius = x["points"].norm(dim=-1).amax(1)
    assert torch.allclose(radius, torch.ones(len(ds)), atol=1e-5)  # each cloud fills the unit ball
    assert x["points"].mean(1).abs().max() < 1e-5                  # and is centred


def test_shapes3d_is_deterministic_by_seed_and_split():
    a = load_dataset("shapes3d", "train", seed=1, **SMALL)
    b = load_dataset("shapes3d", "train", seed=1, **SMALL)
    c = load_dataset("shapes3d", "train", seed=2, **SMALL)
    test = load_dataset("shapes3d", "test", seed=1, **SMALL)
    assert torch.equal(a.points, b.points) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.points, c.points)
    assert len(test) == 2 * a.num_classes and not torch.equal(test.points[:2], a.points[:2])


@pytest.mark.parametrize("dataset, sizes", [("shapes3d", SMALL),
                                             ("parts3d", dict(num_points=128, train_per_class=6, test_per_class=3))])
@pytest.mark.parametrize("ordering", ["morton", "hilbert", "shuffled"])
def test_orders_reorder_the_same_points(dataset, sizes, ordering):
    stored = load_dataset(dataset, "test", **sizes)
    other = load_dataset(dataset, "test", ordering=ordering, **sizes)
    assert other.describe()["ordering"] == ordering
    for i in range(len(stored)):
        assert torch.equal(torch.sort(stored.points[i], 0).values, torch.sort(other.points[i], 0).values)
    step = lambda p: (p[:, 1:] - p[:, :-1]).norm(dim=-1).mean().item()  # noqa: E731
    if ordering == "shuffled":   # stored order is local (shapes3d: sampled patch by patch; parts3d: part by
        assert step(stored.points) < 0.5 * step(other.points)          # part, face by face), shuffled is not
    else:
        assert step(other.points) < step(load_dataset(dataset, "test", ordering="shuffled", **sizes).points)


def test_shapes3d_default_size_generates_quickly():
    import time
    start = time.perf_counter()
    ds = load_dataset("shapes3d", "test")                       # 10 classes x 50 x 1024 points
    assert len(ds) == 50 * ds.num_classes and ds.points.shape[1] == 1024
    assert time.perf_counter() - start < 5


def test_augmentation_is_drawn_from_the_generator():
    ds = load_dataset("shapes3d", "test", **SMALL)
    idx = torch.arange(6)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a, b = ds.get_batch(idx, train=True, generator=g()), ds.get_batch(idx, train=True, generator=g())
    plain = ds.get_batch(idx)[0]["points"]
    assert torch.equal(a[0]["points"], b[0]["points"]) and not torch.allclose(a[0]["points"], plain)
    frozen = load_dataset("shapes3d", "test", augment=False, **SMALL)
    assert torch.equal(frozen.get_batch(idx, train=True, generator=g())[0]["points"], plain)


def write_h5(path, n, points=32, label_shape="column", keys=("data", "label"), seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, points, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(n, 1) if label_shape == "column" else n).astype(np.uint8)
    with h5py.File(path, "w") as f:
        if "data" in keys:
            f["data"] = data
        if "label" in keys:
            f["label"] = labels
    return data, labels.reshape(-1)


def test_modelnet40_round_trip(tmp_path):
    d0, l0 = write_h5(tmp_path / "ply_data_train0.h5", 5, seed=0)
    d1, l1 = write_h5(tmp_path / "ply_data_train1.h5", 3, label_shape="flat", seed=1)
    write_h5(tmp_path / "ply_data_test0.h5", 4, seed=2)
    ds = load_dataset("modelnet40", "train", data_dir=str(tmp_path))
    assert len(ds) == 8 and ds.labels.tolist() == np.concatenate([l0, l1]).tolist()
    assert ds.class_names[:3] == ["class_0", "class_1", "class_2"] and ds.num_classes == 40   # ModelNet40's
    data = np.concatenate([d0, d1])
    data = data - data.mean(1, keepdims=True)
    data /= np.linalg.norm(data, axis=-1).max(1)[:, None, None]
    assert np.allclose(ds.get_batch(torch.arange(8))[0]["points"].numpy(), data, atol=1e-6)
    (tmp_path / "shape_names.txt").write_text("airplane\nbathtub\nbed\nbench\n")
    ds = load_dataset("modelnet40", "test", data_dir=str(tmp_path), num_points=16, ordering="hilbert")
    assert ds.class_names[:2] == ["airplane", "bathtub"] and ds.num_classes == 4
    assert ds.modalities["points"].num_inputs == 16 and len(ds) == 4


def test_modelnet40_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("modelnet40", "train")
    with pytest.raises(FileNotFoundError, match="ply_data_train"):
        load_dataset("modelnet40", "train", data_dir=str(tmp_path))
    write_h5(tmp_path / "ply_data_train0.h5", 2, keys=("data",))
    with pytest.raises(ValueError, match="ply_data_train0.h5: missing key 'label'"):
        load_dataset("modelnet40", "train", data_dir=str(tmp_path))
    write_h5(tmp_path / "ply_data_train0.h5", 2)
    with h5py.File(tmp_path / "ply_data_train0.h5", "r+") as f:
        f["label"][0] = 40                                   # one past the last class
    with pytest.raises(DataError, match="label 40 is past ModelNet40's 40 classes"):
        load_dataset("modelnet40", "train", data_dir=str(tmp_path))   # at b709275: a 41-class head
    (tmp_path / "ply_data_train0.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="ply_data_train0.h5: not a readable HDF5"):
        load_dataset("modelnet40", "train", data_dir=str(tmp_path))
