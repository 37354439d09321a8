"""How long a notebook's training will take on this machine, said before it starts.

Each model of the plan (variant, positions, MAE or classification) is timed for a few
training steps (forward, backward and the optimiser's step, on a batch of the run's own
data, in the run's precision, after one warm-up step); a run's time is its steps times that.
Runs already finished in the run cache cost nothing. Evaluation (the test and validation sets
after every epoch), data loading and the machine being busy are not counted, so the estimate
is a floor.

    print(estimate.plan_line([([pretrain_cfg, supervised_cfg], train_set, test_set), ...]))
    # 'training 12 runs of 18 (6 finished in the run cache): about 41 min on this machine ...'
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..device import autocast, pick_device
from ..model import HiP
from ..train import TrainConfig
from ..train.engine import compute_loss, freeze_decoder, load_data, model_config
from ..train.optim import build_optimizer
from ..train.prepare import head_classes
from ..train.validation import split_validation


def step_model(cfg: TrainConfig, train_set) -> HiP:
    """The model a run of `cfg` trains, on the CPU, seeded by cfg.seed: its head sized as the
    training loop sizes it (`prepare.head_classes`), and the parts its task never runs frozen as
    the loop freezes them (the decoder for classification; the reconstruction head, and reading
    the bottleneck the decoder, for segmentation)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = HiP(model_config(cfg, head_classes(cfg, train_set)), train_set.modalities)
    if cfg.task == "supervised":
        freeze_decoder(model)
    elif cfg.task == "segment":
        from ..train.dense import freeze_unused  # late: other tasks never load the dense modules

        freeze_unused(model)
    return model


def step_seconds(cfg: TrainConfig, train_set, repeats: int = 2) -> float:
    """Best wall seconds of one training step of `cfg` on the first batch of `train_set`."""
    device = pick_device("auto")
    model = step_model(cfg, train_set).to(device)
    optimizer = build_optimizer(model, cfg)
    inputs, labels = train_set.get_batch(torch.arange(min(cfg.batch_size, len(train_set))), train=True)
    inputs, labels = {k: v.to(device) for k, v in inputs.items()}, labels.to(device)
    best = float("inf")
    for i in range(repeats + 1):                       # the first step warms up
        start = time.perf_counter()
        with autocast(cfg.precision, device):
            loss, _, _ = compute_loss(model, model, inputs, labels, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def run_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimiser steps of a run on n_train examples, validation ones held out (its cap, for a
    plateau run); the loader drops a last partial batch."""
    return cfg.max_steps or cfg.epochs * max(1, n_train // cfg.batch_size)


def finished(cfg: TrainConfig) -> bool:
    """Whether the run cache holds this run's last checkpoint (a run killed part-way counts as
    finished here: the estimate errs low for it)."""
    return (Path(cfg.run_dir) / "last.pt").is_file()


Job = tuple[list[TrainConfig], Any, Any]     # a run's TrainConfigs (MAE pretraining first), its train and test data


def plan_seconds(jobs: list[Job]) -> tuple[float, int, int]:
    """(estimated seconds, runs to train, runs in all) of a plan's jobs. A pretraining that
    several runs share is counted once."""
    timed: dict[tuple, float] = {}
    seconds, to_train, seen = 0.0, 0, set()
    for configs, train_data, test_data in jobs:
        for cfg in configs:
            if cfg.run_dir in seen or finished(cfg):
                continue
            seen.add(cfg.run_dir)
            to_train += cfg.task == "supervised"
            train_set, _ = split_validation(load_data(cfg, train_data, test_data)[0], cfg)
            key = (cfg.variant, cfg.task, cfg.batch_size, cfg.precision, repr(sorted(cfg.model.items())),
                   repr(train_set.modalities))
            if key not in timed:
                timed[key] = step_seconds(cfg, train_set)
            seconds += timed[key] * run_steps(cfg, len(train_set))
    return seconds, to_train, len(jobs)


def plan_line(jobs: list[Job]) -> str:
    """One sentence: how many runs will train and about how long that takes here."""
    seconds, to_train, total = plan_seconds(jobs)
    if not to_train and not seconds:
        return f"all {total} runs are finished in the run cache: nothing to train"
    cap = " at most (plateau runs stop earlier)" if any(c.plateau for cfgs, _, _ in jobs for c in cfgs) else ""
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    return (f"training {to_train} of {total} runs ({total - to_train} finished in the run cache): about "
            f"{took}{cap} on this machine, from a timed step of each model (evaluation not counted)")
