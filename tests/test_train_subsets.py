"""Where a profile trains on a subset, each seed draws its own; the test subset is fixed."""

import torch

from hipcore.train import TrainConfig
from hipcore.train.engine import load_data


class Numbers:
    """A dataset whose examples are their own indices."""

    modalities = {}
    num_classes = 2

    def __init__(self, n):
        self.n = n
        self.labels = torch.zeros(n, dtype=torch.long)

    def __len__(self):
        return self.n

    def get_batch(self, indices, *, train=False, generator=None):
        return {"x": torch.as_tensor(indices)}, torch.zeros(len(indices), dtype=torch.long)


def chosen(dataset):
    return dataset.get_batch(torch.arange(len(dataset)))[0]["x"].tolist()


def test_each_seed_trains_on_its_own_subset_and_tests_on_the_same_one():
    data = Numbers(1000)
    picks = {seed: load_data(TrainConfig(seed=seed, limit_train=50, limit_test=40), data, data) for seed in (0, 1, 2)}
    trains = [chosen(train) for train, _ in picks.values()]
    tests = [chosen(test) for _, test in picks.values()]
    assert all(len(t) == 50 and len(set(t)) == 50 for t in trains)
    assert len({tuple(t) for t in trains}) == 3                           # three seeds, three subsets
    assert tests[0] == tests[1] == tests[2] and len(tests[0]) == 40
    again, _ = load_data(TrainConfig(seed=1, limit_train=50), data, data)
    assert chosen(again) == trains[1]                                     # the same seed, the same subset
    whole, _ = load_data(TrainConfig(seed=1), data, data)
    assert whole is data


# ---- the validation set: spare training images where there are enough, else the carve-out ----

def split(data, **cfg):
    from hipcore.train.validation import split_validation

    config = TrainConfig(val_fraction=0.1, **cfg)
    train, _ = load_data(config, data, data)
    return split_validation(train, config)


def test_validation_comes_from_the_training_images_the_run_does_not_train_on():
    data = Numbers(1000)
    train, val = split(data, seed=0, limit_train=50, val_size=100)
    assert len(chosen(train)) == 50 and chosen(train) == chosen(load_data(TrainConfig(limit_train=50), data, data)[0])
    assert len(chosen(val)) == 100 and set(chosen(val)).isdisjoint(chosen(train))       # not shrunk, not shared
    assert val.split_digest.startswith("val100from1000-") and "does not train on" in val.origin
    again, other = split(data, seed=0, limit_train=50, val_size=100)[1], split(data, seed=1, limit_train=50,
                                                                               val_size=100)[1]
    assert chosen(again) == chosen(val) and chosen(other) != chosen(val)           # seeded by the run's seed
    assert again.split_digest == val.split_digest != other.split_digest


def test_without_enough_spare_images_the_training_subset_is_carved_as_before():
    data = Numbers(1000)
    train, val = split(data, seed=0, limit_train=950, val_size=100)               # 50 spare < 100
    assert (len(chosen(train)), len(chosen(val))) == (855, 95) and set(chosen(val)).isdisjoint(chosen(train))
    assert "carved out of the training subset: 50 spare examples are fewer than val_size 100" == val.origin
    assert val.split_digest.startswith("val95of950-")
    whole_train, whole_val = split(data, seed=0)                                   # no limit: nothing spare
    assert (len(chosen(whole_train)), len(chosen(whole_val))) == (900, 100)
    assert whole_val.origin == "carved out of the training subset"
    from hipcore.train.validation import digest_size

    assert digest_size(val.split_digest) == 95 and digest_size(whole_val.split_digest) == 100


def test_quick_validation_images_overlap_neither_its_training_images_nor_the_test_set():
    import hashlib

    from hipcore.experiments.common import IMAGE_TABLE, train_overrides
    from hipcore.train.validation import split_validation

    cfg = TrainConfig(**train_overrides(IMAGE_TABLE["quick"]))
    train, test = load_data(cfg.replace(limit_test=None))                         # the whole test set
    train, val = split_validation(train, cfg)
    assert (len(train), len(val)) == (6000, 6000)

    def images(dataset):
        inputs, _ = dataset.get_batch(torch.arange(len(dataset)))
        pixels = next(iter(inputs.values()))                                       # [n, 784, 1]
        return {hashlib.sha1(p.numpy().tobytes()).hexdigest() for p in pixels}

    seen = images(val)
    assert len(seen) == 6000 and seen.isdisjoint(images(train)) and seen.isdisjoint(images(test))


def test_a_run_says_where_its_validation_came_from_and_refuses_other_validation_data(tmp_path, capsys):
    import pytest
    from test_train_engine import Toy, config

    from hipcore.train import ConfigMismatchError, train

    cfg = config(tmp_path, epochs=1, val_fraction=0.25, limit_train=48, val_size=16, quiet=False)
    train(cfg, train_data=Toy(80), test_data=Toy(32, 1))
    assert "16 validation (of the 32 training examples it does not train on)" in capsys.readouterr().err
    with pytest.raises(ConfigMismatchError, match="validation data fingerprint: val16from80-"):
        train(cfg, train_data=Toy(96), test_data=Toy(32, 1))                    # other spare images
