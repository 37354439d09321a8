"""collages: Fashion-MNIST items pasted on a canvas, one class label per pixel."""

import numpy as np
import pytest
import torch

import hipcore.data.fashion_mnist as fm
from hipcore.data import BatchLoader, DataNotFoundError, load_dataset
from hipcore.data import collages as C
from hipcore.data.base import Subset
from hipcore.data.registry import dataset_fingerprint, for_notebook, num_classes
from hipcore.errors import DataError

SMALL = dict(train_canvases=40, test_canvases=20)


@pytest.fixture(scope="module", autouse=True)
def fashion_mnist_is_here():
    if fm.find_fashion_mnist() is None:
        pytest.fail("Fashion-MNIST is missing: run `python -m hipcore data fetch fashion-mnist`")


def everything(ds):
    """Inputs [N, M, 1] and labels [N, M] of a whole build."""
    x, labels = ds.get_batch(torch.arange(len(ds)))
    return x["image"], labels


def test_shapes_dtypes_and_label_range():
    ds = load_dataset("collages", "train", **SMALL)
    assert len(ds) == 40 and ds.num_classes == num_classes("collages") == 11
    assert ds.class_names[0] == "background" and ds.class_names[1:] == fm.CLASS_NAMES
    spec = ds.modalities["image"]
    assert (spec.num_inputs, spec.channels, spec.grid) == (64 * 64, 1, (64, 64))
    x, labels = everything(ds)
    assert x.shape == (40, 4096, 1) and x.dtype == torch.float32
    assert labels.shape == (40, 4096) and labels.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert 0 <= int(labels.min()) and int(labels.max()) < 11
    big = load_dataset("collages", "test", side=128, item_side=56, train_canvases=1, test_canvases=3)
    x, labels = everything(big)
    assert x.shape == (3, 128 * 128, 1) and labels.shape == (3, 128 * 128)
    huge = load_dataset("collages", "test", side=256, train_canvases=1, test_canvases=2)
    assert everything(huge)[1].shape == (2, 256 * 256)


def test_loader_and_subset_serve_a_label_per_pixel():
    ds = load_dataset("collages", "train", **SMALL)
    batches = list(BatchLoader(ds, 16, shuffle=True, seed=2, train=True))
    assert [tuple(labels.shape) for _, labels in batches] == [(16, 4096), (16, 4096), (8, 4096)]
    assert all(labels.dtype == torch.int64 for _, labels in batches)
    part = Subset(ds, torch.tensor([5, 1]))
    x, labels = part.get_batch(torch.arange(2))
    assert len(part) == 2 and torch.equal(labels, everything(ds)[1][[5, 1]])


@pytest.mark.parametrize("ordering", ["raster", "hilbert", "shuffled"])
def test_labels_follow_the_pixels_in_every_order(ordering):
    """An item pixel (label > 0) is exactly a canvas pixel above the threshold, in any order."""
    ds = load_dataset("collages", "train", ordering=ordering, seed=3, **SMALL)
    x, labels = everything(ds)
    assert torch.equal(labels > 0, x[..., 0] > C.ITEM_THRESHOLD / 255)
    raster = load_dataset("collages", "train", seed=3, **SMALL)
    xr, lr = everything(raster)
    assert torch.equal(lr[:, ds.order], labels) and torch.equal(xr[:, ds.order], x)


def test_the_same_seed_gives_the_same_canvases_and_another_differs():
    a = load_dataset("collages", "train", seed=1, **SMALL)
    b = load_dataset("collages", "train", seed=1, **SMALL)
    assert a.fingerprint == b.fingerprint
    assert all(torch.equal(u, v) for u, v in zip(everything(a), everything(b)))
    assert torch.equal(a.counts, b.counts)
    other = load_dataset("collages", "train", seed=2, **SMALL)
    assert other.fingerprint != a.fingerprint and not torch.equal(everything(other)[1], everything(a)[1])


def test_the_test_split_is_the_same_for_every_seed_and_not_the_train_split():
    tests = [load_dataset("collages", "test", seed=s, **SMALL) for s in (0, 7)]
    assert tests[0].fingerprint == tests[1].fingerprint
    assert torch.equal(everything(tests[0])[1], everything(tests[1])[1])
    train = load_dataset("collages", "train", seed=0, **SMALL)
    assert not torch.equal(everything(train)[1][:20], everything(tests[0])[1])


def test_the_default_build_has_the_stated_statistics():
    measured = C.Collages("train").statistics()
    stated = C.stated_statistics()
    assert len(stated["share"]) == len(measured["share"]) == 11
    assert np.allclose(measured["share"], stated["share"], atol=5e-5)          # stated to 4 decimals
    assert measured["items_per_canvas"] == pytest.approx(stated["items_per_canvas"], abs=5e-5)
    assert sum(measured["share"]) == pytest.approx(1.0)


def test_another_seed_matches_the_stated_statistics_within_sampling_tolerance():
    measured = load_dataset("collages", "train", seed=11, train_canvases=400).statistics()
    stated = C.stated_statistics()
    assert measured["background"] == pytest.approx(stated["background"], abs=0.02)
    assert np.allclose(measured["share"][1:], stated["share"][1:], atol=0.01)
    assert measured["items_per_canvas"] == pytest.approx(stated["items_per_canvas"], abs=0.25)
    assert measured["classes_seen"] == list(range(11))                            # every class appears


def test_every_item_class_appears_in_a_small_build():
    for split in ("train", "test"):
        stats = load_dataset("collages", split, **SMALL).statistics()
        assert stats["classes_seen"] == list(range(11)), split


def test_items_per_canvas_stay_in_their_range():
    ds = load_dataset("collages", "train", min_items=1, max_items=3, **SMALL)
    assert int(ds.counts.min()) >= 1 and int(ds.counts.max()) <= 3 and len(set(ds.counts.tolist())) == 3
    crowded = load_dataset("collages", "train", min_items=6, max_items=6, **SMALL).statistics()
    assert crowded["items_per_canvas"] == 6 and crowded["background"] < ds.statistics()["background"]


def test_later_items_are_pasted_over_earlier_ones():
    item = np.zeros((2, 28, 28), np.uint8)
    item[0, :, :] = 200                          # a full square of class 3
    item[1, 10:20, 10:20] = 100                  # a small square of class 5, pasted second
    layouts = {"counts": np.array([2]), "items": np.array([[0, 1]]), "rows": np.array([[4, 4]]),
               "cols": np.array([[2, 2]])}
    canvases, labels = C.paint(item, np.array([3, 5]), layouts, 32)
    assert labels[0, 14:24, 12:22].tolist() == [[6] * 10] * 10 and canvases[0, 14, 12] == 100
    assert labels[0, 4, 2] == 4 and canvases[0, 4, 2] == 200 and labels[0, 0, 0] == 0
    assert (labels[0] > 0).sum() == 28 * 28


def test_fingerprint_follows_the_options():
    base = dataset_fingerprint("collages", **SMALL)
    assert base == dataset_fingerprint("collages", **SMALL)
    for change in (dict(side=128), dict(min_items=3), dict(max_items=4), dict(item_side=32)):
        assert dataset_fingerprint("collages", **{**SMALL, **change}) != base
    assert for_notebook("07_dense_decoding") == ("collages",)


@pytest.mark.parametrize("options, line", [
    (dict(side=50), "side must be a positive multiple of 16 .*HiP's first level.*got 50"),
    (dict(side=0), "side must be a positive multiple of 16"),
    (dict(side=True), "side must be a positive multiple of 16"),
    (dict(side=16), "item_side 28 is larger than the canvas side 16"),
    (dict(side=64, item_side=80), "item_side 80 is larger than the canvas side 64"),
    (dict(item_side=20), "item_side must be an int >= 28"),
    (dict(min_items=0), "min_items .*must be a positive int, got 0"),
    (dict(min_items=4, max_items=3), "max_items 3 is below min_items 4"),
    (dict(train_canvases=0), "train_canvases must be a positive int"),
    (dict(resolution=8), "collages has no option 'resolution'"),
])
def test_bad_options_get_one_line(options, line):
    with pytest.raises(ValueError, match=line) as caught:
        load_dataset("collages", "train", **options)
    assert "\n" not in str(caught.value)


def test_item_classes_out_of_range_are_refused():
    layouts = C.draw_layouts(2, 2, 32, 28, 1, 2, np.random.default_rng(0))
    for bad in (10, -1):
        with pytest.raises(DataError, match=rf"item 1 has class {bad}, outside \[0, 10\).*outside \[1, 10\]"):
            C.paint(np.zeros((2, 28, 28), np.uint8), np.array([0, bad]), layouts, 32)


def test_a_folder_without_the_items_is_refused_naming_them(tmp_path):
    with pytest.raises(DataNotFoundError, match=f"Fashion-MNIST was not found .*looked in: {tmp_path}"):
        load_dataset("collages", "train", data_dir=str(tmp_path), **SMALL)
