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
