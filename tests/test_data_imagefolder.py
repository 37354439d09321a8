"""Image folders: decoding of every mode, class order, memmap cache, bad layouts."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import hipcore.data.imagefolder as imf
from hipcore.data import load_dataset

RES = 8


def write_folder(root):
    """train: cat (2 images), dog (3), emu (1, 16-bit); val: cat, dog. Sizes and modes vary."""
    def save(path, image, **kw):
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **kw)

    save(root / "train/cat/red.jpg", Image.new("RGB", (40, 30), (255, 0, 0)), quality=95)
    save(root / "train/cat/gray.png", Image.new("L", (12, 50), 100))
    rgba = Image.new("RGBA", (16, 16), (0, 0, 255, 0))                       # fully transparent
    save(root / "train/dog/clear.png", rgba)
    palette = Image.new("P", (20, 10), 0)
    palette.putpalette([0, 255, 0] + [0] * 765)
    save(root / "train/dog/green.PNG", palette)
    save(root / "train/dog/cmyk.JPEG", Image.new("CMYK", (9, 33), (0, 0, 0, 0)), quality=95)
    save(root / "train/emu/deep.png", Image.fromarray(np.full((10, 10), 65535, np.uint16)))
    (root / "train/emu/notes.txt").write_text("not an image")
    save(root / "val/cat/v.jpeg", Image.new("RGB", (30, 40), (0, 0, 0)))
    save(root / "val/dog/w.png", Image.new("LA", (8, 8), (50, 255)))
    return root


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "images")


def load(folder, tmp_path, split="train", **kw):
    return load_dataset("imagefolder", split, data_dir=str(folder), resolution=RES,
                        cache_dir=str(tmp_path / "cache"), **kw)


def test_modes_sizes_and_class_order(folder, tmp_path):
    ds = load(folder, tmp_path)
    assert ds.class_names == ["cat", "dog", "emu"] and ds.num_classes == 3
    assert ds.labels.tolist() == [0, 0, 1, 1, 1, 2]       # files sorted within each class
    spec = ds.modalities["image"]
    assert (spec.num_inputs, spec.channels, spec.grid) == (RES * RES, 3, (RES, RES))
    inputs, labels = ds.get_batch(torch.arange(len(ds)))
    x = inputs["image"] * ds.std["image"] + ds.mean["image"]     # back to [0, 1]
    assert x.shape == (6, RES * RES, 3) and torch.equal(labels, ds.labels)
    colour = x.mean(1)                                            # [B, 3]
    expected = torch.tensor([[100 / 255] * 3, [1, 0, 0],          # cat: gray.png, red.jpg
                             [1, 1, 1], [1, 1, 1], [0, 1, 0],    # dog: clear (on white), cmyk, green
                             [1, 1, 1]])                         # emu: 16-bit white
    assert torch.allclose(colour, expected, atol=0.03), colour
    val = load(folder, tmp_path, split="test")
    assert val.class_names == ds.class_names and val.labels.tolist() == [0, 1]
    assert torch.allclose(val.get_batch(torch.tensor([1]))[0]["image"] * ds.std["image"] + ds.mean["image"],
                          torch.full((1, RES * RES, 3), 50 / 255), atol=0.01)


def test_cache_is_reused_and_keyed_by_files_and_resolution(folder, tmp_path, monkeypatch):
    first = load(folder, tmp_path, ordering="hilbert")
    assert not first.from_cache and first.cache_path.exists()
    meta = json.loads(first.cache_path.with_suffix(".json").read_text())
    assert meta["class_names"] == ["cat", "dog", "emu"] and meta["resolution"] == RES

    def no_decoding(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(imf, "decode_image", no_decoding)
    again = load(folder, tmp_path, ordering="hilbert")
    assert again.from_cache and again.cache_path == first.cache_path
    idx = torch.tensor([5, 0, 2])
    assert torch.equal(again.get_batch(idx)[0]["image"], first.get_batch(idx)[0]["image"])
    monkeypatch.undo()
    Image.new("RGB", (9, 9)).save(folder / "train/emu/new.png")
    changed = load(folder, tmp_path)
    assert not changed.from_cache and changed.cache_path != first.cache_path and len(changed) == 7
    other = load_dataset("imagefolder", "train", data_dir=str(folder), resolution=4,
                         cache_dir=str(tmp_path / "cache"))
    assert other.cache_path != changed.cache_path and other.modalities["image"].grid == (4, 4)
    assert not list((tmp_path / "cache").glob(".*"))             # no temporary files left


def test_worker_pool_gives_the_same_cache(folder, tmp_path):
    serial = load(folder, tmp_path, workers=0)
    pooled = load_dataset("imagefolder", "train", data_dir=str(folder), resolution=RES,
                          cache_dir=str(tmp_path / "cache2"), workers=2)
    assert np.array_equal(np.load(serial.cache_path), np.load(pooled.cache_path))


def test_undecodable_images_are_skipped_with_a_warning(folder, tmp_path):
    (folder / "train/dog/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    good = folder / "train/cat/red.jpg"
    (folder / "train/cat/truncated.jpg").write_bytes(good.read_bytes()[:300])
    with pytest.warns(UserWarning) as record:
        ds = load(folder, tmp_path)
    messages = " ".join(str(w.message) for w in record)
    assert "broken.jpg" in messages and "truncated.jpg" in messages
    assert len(ds) == 6 and ds.labels.tolist() == [0, 0, 1, 1, 1, 2]
    assert sorted(ds.skipped) == ["train/cat/truncated.jpg", "train/dog/broken.jpg"]


def test_a_class_with_no_decodable_image_and_a_dangling_link_are_named(folder, tmp_path):
    from hipcore.errors import DataError

    (folder / "train/yak").mkdir()
    (folder / "train/yak/bad.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="class 'yak' of .* has no image that decodes"):
        load(folder, tmp_path)                                   # at b709275: a class with no examples
    (folder / "train/yak/bad.png").unlink()
    (folder / "train/yak").rmdir()
    (folder / "train/dog/gone.png").symlink_to(tmp_path / "nothing.png")
    with pytest.raises(DataError, match="gone.png is a link to nothing"):
        load(folder, tmp_path)                                   # at b709275: dropped without a word


def test_bad_layouts(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "nowhere", tmp_path)
    (folder / "train/empty").mkdir()
    with pytest.raises(ValueError, match="train/empty holds no images"):
        load(folder, tmp_path)
    (folder / "train/empty").rmdir()
    (folder / "val/yak").mkdir()
    Image.new("RGB", (4, 4)).save(folder / "val/yak/y.png")
    with pytest.raises(ValueError, match="'yak' is not among the train classes"):
        load(folder, tmp_path, split="test")
    flat = tmp_path / "flat"
    (flat / "train").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(flat / "train/a.png")
    with pytest.raises(ValueError, match="holds images directly"):
        load(flat, tmp_path)
    only_train = tmp_path / "only_train"
    (only_train / "train/c").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(only_train / "train/c/a.png")
    with pytest.raises(FileNotFoundError, match="val not found"):
        load(only_train, tmp_path, split="test")
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("imagefolder", "train", resolution=RES)
