import torch


def pytest_configure(config):
    # Small test models run as fast on one thread, and one thread cannot be starved by a
    # second busy process the way two spinning OpenMP threads on two cores can.
    torch.set_num_threads(1)
