"""TrainConfig: everything a run depends on, in one frozen, JSON-friendly dataclass."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping

from ..config import HiPConfig
from ..device import PRECISIONS

TASKS = ("supervised", "pretrain")
OPTIMIZERS = ("adamw", "lamb")
TRANSFERS = ("all", "positions", "positions_frozen", "none")

MAX_EPOCHS_FIELD = 100_000          # bounds epoch counts given as numbers (1e308 would overflow)
# Fields that may change between a run and its resumption: they do not change what is computed.
RESUMABLE_CHANGES = ("quiet", "device", "checkpoint_every")
# Opt-in fields and their off values: a run that leaves them off has the run_id it had before
# they existed, and a run saved before them reads them as off.
VALIDATION_OFF = {"val_fraction": 0.0, "plateau": False}
# The plateau rule's settings (their defaults are TrainConfig's, below: PLATEAU_DEFAULTS).
PLATEAU_FIELDS = ("min_epochs", "plateau_points", "plateau_relative", "plateau_patience")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: supervised classification or MAE pretraining."""

    task: str = "supervised"            # 'supervised' (classification) or 'pretrain' (MAE)
    # data
    dataset: str = "fashion_mnist"      # a hipcore.data.load_dataset name
    data_dir: str | None = None         # where the dataset lives (None: its default places)
    ordering: str | None = None         # input order, e.g. 'raster', 'hilbert', 'shuffled'
    data_options: dict = field(default_factory=dict)  # more load_dataset options, e.g. num_points
    augment: bool = True                # the dataset's own train-time augmentation, if it has one
    limit_train: int | None = None      # train on a fixed random subset of this many examples
    limit_test: int | None = None       # evaluate on a fixed random subset of this many examples
    # model
    variant: str = "small3"             # a variant name, or a .json file holding a HiPConfig dict
    model: dict = field(default_factory=dict)  # HiPConfig overrides, e.g. {'position': 'fourier'}
    # schedule
    epochs: int = 10                    # with plateau: the cap (max epochs) of the run
    max_steps: int | None = None        # stop after this many optimiser steps (overrides epochs)
    batch_size: int = 128               # global batch, split evenly over the ranks
    eval_batch_size: int = 256          # per rank
    # optimiser
    optimizer: str = "adamw"            # 'adamw' or 'lamb'
    lr: float = 1e-3                    # peak learning rate, after warm-up
    min_lr: float = 0.0                 # the cosine decays to this
    weight_decay: float = 0.05          # on weight matrices only (not biases, norms, tables)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 1.0          # linear warm-up length in epochs ...
    warmup_steps: int | None = None     # ... or in steps (wins when set)
    clip_grad: float | None = 1.0       # max global gradient norm (None: no clipping)
    label_smoothing: float = 0.0        # supervised only
    # masked auto-encoding
    mask_ratio: float = 0.85            # fraction of each group's positions hidden from the encoder
    norm_pix: bool = False              # MSE against per-example normalised targets
    # fine-tuning
    init_from: str | None = None        # an MAE checkpoint to start a supervised run from
    transfer: str = "all"               # what init_from gives: 'all', 'positions', 'positions_frozen', 'none'
    # validation and the plateau (hipcore.train.validation, hipcore.train.plateau)
    val_fraction: float = 0.0           # carve this fraction of the training subset out as a
                                        # validation set (0: none; test-based selection as before)
    plateau: bool = False               # stop at the validation plateau (needs val_fraction > 0)
    min_epochs: int = 4                 # the plateau rule waits this many epochs
    plateau_points: float = 0.3         # top-1 points the last quarter of the epochs must gain
    plateau_relative: float = 0.01      # MAE: relative validation-loss decrease it must make
    plateau_patience: int = 1           # the last max(patience, a quarter of the epochs) are judged
    # run
    seed: int = 0
    run_dir: str | None = None          # None: runs/<task>-<dataset>-<variant>-seed<seed>
    checkpoint_every: int = 0           # also checkpoint every this many steps (0: epoch ends only)
    log_every: int = 50                 # a train loss row every this many steps
    device: str = "auto"                # 'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'
    precision: str = "auto"             # 'auto', 'fp32', 'bf16' or 'fp16' (see hipcore.device);
                                        # a run stores the one 'auto' resolved to
    quiet: bool = False                 # no progress bar, no epoch lines

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_options", dict(self.data_options))
        object.__setattr__(self, "model", dict(self.model))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        _require(self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}")
        _require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        _require(self.transfer in TRANSFERS, f"transfer must be one of {TRANSFERS}, got {self.transfer!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "log_every"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, f"{name} must be a positive int, got {value!r}")
        for name in ("max_steps", "limit_train", "limit_test"):
            value = getattr(self, name)
            _require(value is None or (isinstance(value, int) and value > 0),
                     f"{name} must be a positive int or None, got {value!r}")
        _require(isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 0,
                 f"checkpoint_every must be an int >= 0, got {self.checkpoint_every!r}")
        _require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _require(0 <= self.min_lr <= self.lr, f"min_lr must be in [0, lr], got {self.min_lr}")
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"betas must be two numbers in [0, 1), got {self.betas}")
        _require(0 <= self.warmup_epochs <= MAX_EPOCHS_FIELD,
                 f"warmup_epochs must be a number of epochs in [0, {MAX_EPOCHS_FIELD}], got {self.warmup_epochs}")
        _require(isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63,
                 f"seed must be a whole number in [0, 2**63), got {self.seed!r}")
        _require(self.warmup_steps is None or self.warmup_steps >= 0,
                 f"warmup_steps must be >= 0, got {self.warmup_steps}")
        _require(self.clip_grad is None or self.clip_grad > 0,
                 f"clip_grad must be > 0 or None, got {self.clip_grad}")
        _require(0 <= self.label_smoothing < 1,
                 f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _require(0 < self.mask_ratio < 1, f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        _require(self.init_from is None or self.task == "supervised",
                 "init_from is for fine-tuning: use it with task='supervised'")
        _require(self.precision in PRECISIONS,
                 f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        _require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                 f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {self.device!r}")
        _require(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        _require(not self.plateau or self.val_fraction > 0,
                 "plateau stops on the validation set: set val_fraction > 0 with it")
        _require(not self.plateau or self.max_steps is None,
                 "plateau runs stop by epochs (epochs is their cap): leave max_steps unset")
        _require(isinstance(self.min_epochs, int) and 1 <= self.min_epochs,
                 f"min_epochs must be a positive int, got {self.min_epochs!r}")
        _require(not self.plateau or self.min_epochs <= self.epochs,
                 f"min_epochs ({self.min_epochs}) must not exceed the cap, epochs ({self.epochs})")
        _require(isinstance(self.plateau_patience, int) and self.plateau_patience >= 1,
                 f"plateau_patience must be a positive int, got {self.plateau_patience!r}")
        _require(self.plateau_points >= 0 and self.plateau_relative >= 0,
                 "plateau_points and plateau_relative must be >= 0")
        known = {f.name for f in dataclasses.fields(HiPConfig)} - {"num_classes"}
        unknown = sorted(set(self.model) - known)
        _require(not unknown, f"unknown model option(s) {unknown}; HiPConfig fields are "
                              f"{sorted(known)} (num_classes comes from the dataset)")

    @property
    def resolved_run_dir(self) -> str:
        if self.run_dir is not None:
            return self.run_dir
        variant = self.variant.rsplit("/", 1)[-1].removesuffix(".json")
        return f"runs/{self.task}-{self.dataset}-{variant}-seed{self.seed}"

    @property
    def run_id(self) -> str:
        """<task>-<hash of every field that changes results>: equal for equal experiments."""
        d = {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES + ("run_dir",)}
        for k, off in VALIDATION_OFF.items():           # opt-in fields, when off, leave ids as they were
            if d[k] == off:
                del d[k]
        if not self.plateau:
            for k in PLATEAU_DEFAULTS:
                del d[k]
        if self.init_from:     # the pretraining run's folder and file name, not where they lie
            d["init_from"] = "/".join(PurePath(self.init_from).parts[-2:])
        digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.task}-{digest}"

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        d = upgrade(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        _require(not unknown, f"unknown TrainConfig field(s) {unknown}")
        return cls(**d)

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """'field: other -> self' for each field (resumable ones aside) that differs from a dict."""
        mine, other = self.to_dict(), upgrade(other)
        keys = sorted((set(mine) | set(other)) - set(RESUMABLE_CHANGES))
        return [f"{k}: {other.get(k)!r} -> {mine.get(k)!r}" for k in keys if mine.get(k) != other.get(k)]


PLATEAU_DEFAULTS = {k: TrainConfig.__dataclass_fields__[k].default for k in PLATEAU_FIELDS}


def upgrade(d: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config dict in today's fields: runs written before `precision` existed carry
    `bf16` (False: float32; True: bfloat16 autocast, which only CUDA applied then); runs
    written before validation and the plateau existed had them off."""
    d = dict(d)
    if "bf16" in d and "precision" not in d:
        d["precision"] = "bf16" if d.pop("bf16") else "fp32"
    for k, off in {**VALIDATION_OFF, **PLATEAU_DEFAULTS}.items():   # saved before they existed
        d.setdefault(k, off)
    return d
