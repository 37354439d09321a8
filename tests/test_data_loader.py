"""BatchLoader determinism, resumption and rank sharding; load_dataset's contract."""

import pytest
import torch

from hipcore.data import DATASETS, BatchLoader, load_dataset


@pytest.fixture(scope="module")
def ds():
    return load_dataset("shapes3d", "train", num_points=16, train_per_class=5)   # 50 clouds


def collect(loader, limit=None):
    out = []
    for inputs, labels in loader:
        out.append((inputs["points"], labels))
        if limit is not None and len(out) == limit:
            break
    return out


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(lx, ly) for (x, lx), (y, ly) in zip(a, b))


def test_epochs_depend_on_seed_and_epoch_only(ds):
    a = BatchLoader(ds, 8, shuffle=True, seed=3, train=True)
    b = BatchLoader(ds, 8, shuffle=True, seed=3, train=True)
    assert len(a) == 7                                            # 50 / 8, last batch partial
    first, second = collect(a), collect(a)                        # iterating advances the epoch
    assert a.state_dict() == {"epoch": 2, "position": 0, "seed": 3}
    assert same(first, collect(b)) and not same(first, second)
    b.set_epoch(1)
    assert same(second, collect(b))
    assert sorted(torch.cat([labels for _, labels in first]).tolist()) == sorted(ds.labels.tolist())
    assert not same(first, collect(BatchLoader(ds, 8, shuffle=True, seed=4, train=True)))
    plain = BatchLoader(ds, 8, shuffle=False, drop_last=True)
    assert len(plain) == 6 and torch.equal(collect(plain)[0][1], ds.labels[:8])


def test_resume_mid_epoch(ds):
    reference = BatchLoader(ds, 8, shuffle=True, seed=1, train=True)
    reference.set_epoch(2)
    expected = collect(reference)
    original = BatchLoader(ds, 8, shuffle=True, seed=1, train=True)
    original.set_epoch(2)
    head = collect(original, limit=3)
    state = original.state_dict()
    assert state == {"epoch": 2, "position": 3, "seed": 1}
    restored = BatchLoader(ds, 8, shuffle=True, seed=0, train=True)
    restored.load_state_dict(state)
    restored.set_epoch(2)                                         # a no-op for the current epoch
    assert same(head + collect(restored), expected)
    assert restored.state_dict() == {"epoch": 3, "position": 0, "seed": 1}
    with pytest.raises(ValueError, match="position"):
        restored.load_state_dict({"epoch": 0, "position": 99, "seed": 1})


@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_together_see_the_single_process_batches(ds, drop_last):
    single = collect(BatchLoader(ds, 12, shuffle=True, seed=5, drop_last=drop_last))
    ranks = [collect(BatchLoader(ds, 4, shuffle=True, seed=5, drop_last=drop_last, rank=r, world_size=3))
             for r in range(3)]
    assert all(len(r) == len(single) for r in ranks)
    for step, (x, labels) in enumerate(single):
        assert torch.equal(torch.cat([r[step][0] for r in ranks]), x)
        assert torch.equal(torch.cat([r[step][1] for r in ranks]), labels)
    if drop_last:
        assert all(len(r[step][1]) == 4 for r in ranks for step in range(len(single)))
    with pytest.raises(ValueError, match="rank"):
        BatchLoader(ds, 4, shuffle=True, rank=3, world_size=3)


def test_load_dataset_rejects_unknown_names(ds):
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*" + ".*".join(DATASETS)):
        load_dataset("cifar", "train")
    with pytest.raises(ValueError, match="unknown ordering 'zigzag'"):
        load_dataset("shapes3d", "train", ordering="zigzag", train_per_class=1)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_dataset("shapes3d", "val")
    with pytest.raises(ValueError, match="shapes3d has no option 'resolution'"):
        load_dataset("shapes3d", "train", resolution=8)
    with pytest.raises(IndexError, match=r"\[0, 50\)"):
        ds.get_batch(torch.tensor([50]))


def test_describe_is_json_friendly(ds):
    import json
    d = json.loads(json.dumps(ds.describe()))
    assert d["name"] == "shapes3d" and d["split"] == "train" and d["size"] == 50
    assert d["ordering"] == "stored" and d["modalities"]["points"]["num_inputs"] == 16


def test_benchmark_and_cli_info_run(capsys):
    from hipcore.data.bench import run_benchmarks
    from hipcore.data.cli import main
    small = {"train_per_class": 2, "num_points": 32}
    results = run_benchmarks([("shapes3d", "hilbert", small)], batch_size=4, batches=12, log=lambda s: None)
    assert results[0]["batches"] == 12 and results[0]["examples_per_s"] > 0
    assert main(["info", "shapes3d", "--split", "test", "--ordering", "morton"]) == 0
    assert '"ordering": "morton"' in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:                         # argparse names the choices
        main(["info", "nope"])
    assert stop.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_a_dataset_names_its_missing_and_unknown_options(tmp_path):
    from hipcore.data.registry import options_of

    assert options_of("imagefolder")[0] == ("resolution",)               # read from the loader itself
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="imagefolder needs option resolution: give it, e.g. --data-option"):
        load_dataset("imagefolder", "train", data_dir=str(tmp_path))    # was a TypeError from __init__
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("imagefolder", "train", data_dir=str(tmp_path / "gone"), resolution=8)
    with pytest.raises(ValueError, match="shapes3d has no option 'colour'; its options: num_points"):
        load_dataset("shapes3d", "train", colour=1)
    with pytest.raises(ValueError, match="option hflip must be true or false, got nan"):
        load_dataset("fashion_mnist", "train", hflip=float("nan"))          # at b709275: flipping on
