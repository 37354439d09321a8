"""TrainConfig: everything a run depends on, in one frozen, JSON-friendly dataclass."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping

from ..config import VARIANT_NAMES, BlockConfig, HiPConfig, variant
from ..device import PRECISIONS

TASKS = ("supervised", "segment", "pretrain")
# The learning rate after warm-up: 'cosine' decays to min_lr at the run's last step (its cap, with
# the plateau rule); 'constant' holds it, so that the cap does not shape the curve and the rule,
# not the cap, ends the run (the converged profile's stages).
SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("adamw", "lamb")
TRANSFERS = ("all", "positions", "positions_frozen", "none")

MAX_EPOCHS_FIELD = 100_000          # bounds epoch counts given as numbers (1e308 would overflow)
# Fields that may change between a run and its resumption: they do not change what is computed.
RESUMABLE_CHANGES = ("quiet", "device", "checkpoint_every")
# Opt-in fields and their off values: a run that leaves them off has the run_id it had before
# they existed, and a run saved before them reads them as off.
OPT_IN_OFF = {"val_fraction": 0.0, "plateau": False, "schedule": "cosine"}
# Fields part of a run's identity only with validation on, and only with the plateau on (their
# defaults are TrainConfig's, below: VALIDATION_DEFAULTS, PLATEAU_DEFAULTS; they fill in runs
# saved before the fields existed).
VALIDATION_FIELDS = ("val_size",)
PLATEAU_FIELDS = ("min_epochs", "plateau_window", "plateau_slope", "plateau_loss_slope", "plateau_loss_cv",
                  "plateau_confidence")
# The rule before the trend test (the last quarter's gain): a run saved with the plateau on under
# it is refused on resumption (the fields differ); without the plateau they never mattered.
RETIRED_PLATEAU = ("plateau_points", "plateau_relative", "plateau_patience")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: supervised classification, segmentation or MAE pretraining."""

    task: str = "supervised"            # 'supervised' (classification), 'segment' (a label per
                                        # pixel, hipcore.train.dense) or 'pretrain' (MAE)
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
    schedule: str = "cosine"            # after warm-up: 'cosine' to min_lr, or 'constant' (SCHEDULES)
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
    val_fraction: float = 0.0           # validation on (> 0) or off (0: test-based selection as before);
                                        # where the dataset has too few spare images, this fraction
                                        # of the training subset is carved out instead
    val_size: int = 6000                # validation images taken from the training images the run
                                        # does not train on (those limit_train leaves), when there are as many
    plateau: bool = False               # stop at the validation plateau (needs val_fraction > 0)
    min_epochs: int = 4                 # the plateau rule waits this many epochs (and a whole window)
    plateau_window: int = 12            # the last this many epochs: the trend's least-squares line
    plateau_slope: float = 0.2          # top-1 points per epoch the trend must be confidently below
    plateau_loss_slope: float = 0.0025  # MAE: relative validation-loss decrease per epoch, the same way
    plateau_loss_cv: float = 0.42       # MAE: sd over mean of one image's validation loss (its noise)
    plateau_confidence: float = 0.9995  # one-sided level of "confidently below"
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
        _require(isinstance(self.data_options, Mapping), f"data_options must be a mapping, got {self.data_options!r}")
        _require(isinstance(self.model, Mapping), f"model must be a mapping, got {self.model!r}")
        _require(isinstance(self.betas, (tuple, list)) and len(self.betas) == 2,
                 f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "data_options", dict(self.data_options))
        object.__setattr__(self, "model", dict(self.model))
        for i, b in enumerate(self.betas):
            _number(b, f"betas[{i}]", 0.0, 1.0, high_open=True)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        _check_choices(self)
        _check_counts(self)
        _check_numbers(self)
        _check_flags_and_text(self)
        _check_plateau(self)
        _require(self.init_from is None or self.task != "pretrain",
                 "init_from is for fine-tuning: use it with task='supervised' or 'segment'")
        check_model(self.model, self.variant)

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
        for k, off in OPT_IN_OFF.items():           # opt-in fields, when off, leave ids as they were
            if d[k] == off:
                del d[k]
        if not self.val_fraction:
            for k in VALIDATION_FIELDS:
                del d[k]
        if not self.plateau:
            for k in PLATEAU_FIELDS:
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


VALIDATION_DEFAULTS = {k: TrainConfig.__dataclass_fields__[k].default for k in VALIDATION_FIELDS}
PLATEAU_DEFAULTS = {k: TrainConfig.__dataclass_fields__[k].default for k in PLATEAU_FIELDS}


# ---- the checks of __post_init__: a bool is not a number, NaN and infinities are no value ----

MAX_SEED = 2**63                    # seeds fit in a signed 64-bit integer (torch, numpy)
DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def _whole(value: Any, name: str, minimum: int = 1, maximum: int | None = None, optional: bool = False) -> None:
    """ValueError unless `value` is an int (not a bool) in [minimum, maximum] (or None, if optional)."""
    if optional and value is None:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    ok = ok and (maximum is None or value <= maximum)
    kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    _require(ok, f"{name} must be {kind}{' or None' if optional else ''}, got {value!r}"
                 + (f" (at most {maximum})" if maximum is not None else ""))


def _number(value: Any, name: str, low: float, high: float = math.inf, *, low_open: bool = False,
            high_open: bool = False, optional: bool = False, what: str = "") -> None:
    """ValueError unless `value` is a finite int or float (not a bool) between low and high."""
    if optional and value is None:
        return
    real = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = real and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    span = (f"{'above' if low_open else 'at least'} {low:g}" if math.isinf(high) else
            f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
    what = what or ("" if real else "a finite number")
    _require(ok, f"{name} must be {what + ' ' if what else ''}{span}{' or None' if optional else ''}, got {value!r}")


def _check_choices(cfg: TrainConfig) -> None:
    for name, choices in (("task", TASKS), ("optimizer", OPTIMIZERS), ("transfer", TRANSFERS),
                          ("precision", PRECISIONS), ("schedule", SCHEDULES)):
        value = getattr(cfg, name)
        _require(isinstance(value, str) and value in choices, f"{name} must be one of {choices}, got {value!r}")
    _require(isinstance(cfg.device, str) and DEVICE_NAME.fullmatch(cfg.device) is not None,
             f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {cfg.device!r}")


def _check_counts(cfg: TrainConfig) -> None:
    """Whole numbers: epochs, steps, batches, limits, seed."""
    _whole(cfg.epochs, "epochs", maximum=MAX_EPOCHS_FIELD)
    for name in ("batch_size", "eval_batch_size", "log_every"):
        _whole(getattr(cfg, name), name)
    for name in ("max_steps", "limit_train", "limit_test"):
        _whole(getattr(cfg, name), name, optional=True)
    _whole(cfg.checkpoint_every, "checkpoint_every", minimum=0)
    _whole(cfg.warmup_steps, "warmup_steps", minimum=0, optional=True)
    _require(isinstance(cfg.seed, int) and not isinstance(cfg.seed, bool) and 0 <= cfg.seed < MAX_SEED,
             f"seed must be a whole number in [0, 2**63), got {cfg.seed!r}")


def _check_numbers(cfg: TrainConfig) -> None:
    """Real numbers: rates, fractions, the warm-up in epochs, clipping."""
    _number(cfg.lr, "lr", 0.0, low_open=True)
    _number(cfg.min_lr, "min_lr", 0.0, cfg.lr)
    _number(cfg.weight_decay, "weight_decay", 0.0)
    _number(cfg.warmup_epochs, "warmup_epochs", 0.0, MAX_EPOCHS_FIELD, what="a number of epochs")
    _number(cfg.clip_grad, "clip_grad", 0.0, low_open=True, optional=True)
    _number(cfg.label_smoothing, "label_smoothing", 0.0, 1.0, high_open=True)
    _number(cfg.mask_ratio, "mask_ratio", 0.0, 1.0, low_open=True, high_open=True)
    _number(cfg.val_fraction, "val_fraction", 0.0, 1.0, high_open=True)


def _check_flags_and_text(cfg: TrainConfig) -> None:
    for name in ("augment", "norm_pix", "plateau", "quiet"):
        value = getattr(cfg, name)
        _require(isinstance(value, bool), f"{name} must be True or False, got {value!r}")
    for name in ("dataset", "variant"):
        value = getattr(cfg, name)
        _require(isinstance(value, str) and value.strip() != "", f"{name} must be a name, got {value!r}")
    for name in ("data_dir", "ordering", "init_from", "run_dir"):
        value = getattr(cfg, name)
        _require(value is None or isinstance(value, str), f"{name} must be text or None, got {value!r}")


def _check_plateau(cfg: TrainConfig) -> None:
    _require(not cfg.plateau or cfg.val_fraction > 0,
             "plateau stops on the validation set: set val_fraction > 0 with it")
    _require(not cfg.plateau or cfg.max_steps is None,
             "plateau runs stop by epochs (epochs is their cap): leave max_steps unset")
    _whole(cfg.min_epochs, "min_epochs", maximum=MAX_EPOCHS_FIELD)
    _require(not cfg.plateau or cfg.min_epochs <= cfg.epochs,
             f"min_epochs ({cfg.min_epochs}) must not exceed the cap, epochs ({cfg.epochs})")
    _whole(cfg.val_size, "val_size")
    _whole(cfg.plateau_window, "plateau_window", minimum=3, maximum=MAX_EPOCHS_FIELD)   # a line and its scatter
    _number(cfg.plateau_slope, "plateau_slope", 0.0, 100.0)
    _number(cfg.plateau_loss_slope, "plateau_loss_slope", 0.0, 1.0)
    _number(cfg.plateau_loss_cv, "plateau_loss_cv", 0.0, low_open=True)
    _number(cfg.plateau_confidence, "plateau_confidence", 0.5, 1.0, high_open=True)


def check_model(model: Mapping[str, Any], variant_name: str) -> None:
    """ValueError naming the option unless `model` holds HiPConfig fields whose values the
    model takes: `blocks` a list of BlockConfig dicts, every other field of its type and range
    (checked on `variant_name`'s blocks when it is a named variant)."""
    known = {f.name for f in dataclasses.fields(HiPConfig)} - {"num_classes", "dense_classes"}
    unknown = sorted(set(model) - known)
    _require(not unknown, f"unknown model option(s) {unknown}; HiPConfig fields are "
                          f"{sorted(known)} (num_classes and dense_classes come from the dataset and the task)")
    rest = {k: v for k, v in model.items() if k != "blocks"}
    blocks = model_blocks(model["blocks"]) if "blocks" in model else None
    if blocks is None and variant_name not in VARIANT_NAMES:
        blocks = (BlockConfig(groups=1, latents=1, channels=1, self_attends=0, heads=1),)   # fields alone
    try:
        (variant(variant_name) if blocks is None else HiPConfig(blocks=blocks)).replace(**rest)
    except TypeError as error:
        raise ValueError(f"model options {rest}: {error}") from None


def variant_file(path: str) -> HiPConfig:
    """The HiPConfig a variant .json file holds; a ValueError naming the file when it is not
    JSON, not a dict of HiPConfig fields, or holds values the model does not take."""
    try:
        with open(path) as f:
            d = json.load(f)
    except ValueError as error:
        raise ValueError(f"variant file {path} is not JSON ({error})") from None
    try:
        _require(isinstance(d, Mapping), f"must hold a dict of HiPConfig fields, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(HiPConfig)}
        unknown = sorted(set(d) - fields)
        _require(not unknown and "blocks" in d, f"unknown field(s) {unknown} or no blocks; fields: {sorted(fields)}")
        return HiPConfig(**{**d, "blocks": model_blocks(d["blocks"])})
    except ValueError as error:
        raise ValueError(f"variant file {path}: {error}") from None


def model_blocks(blocks: Any) -> tuple[BlockConfig, ...]:
    """The model option `blocks` (a list of dicts, one per block, of BlockConfig fields) as BlockConfigs."""
    _require(isinstance(blocks, (list, tuple)) and len(blocks) > 0,
             f"model option blocks must be a list of blocks (dicts of BlockConfig fields), got {blocks!r}")
    fields = [f.name for f in dataclasses.fields(BlockConfig)]
    required = [f.name for f in dataclasses.fields(BlockConfig) if f.default is dataclasses.MISSING]
    out = []
    for i, block in enumerate(blocks):
        _require(isinstance(block, Mapping), f"model option blocks[{i}] must be a dict of BlockConfig "
                                             f"fields ({', '.join(fields)}), got {block!r}")
        unknown, missing = sorted(set(block) - set(fields)), [f for f in required if f not in block]
        _require(not unknown and not missing,
                 f"model option blocks[{i}] {dict(block)}: " + "; ".join(
                     ([f"unknown field(s) {', '.join(map(str, unknown))}"] if unknown else [])
                     + ([f"missing {', '.join(missing)}"] if missing else []))
                 + f" (BlockConfig fields: {', '.join(fields)}; required: {', '.join(required)})")
        out.append(BlockConfig(**block))
    return tuple(out)


def upgrade(d: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config dict in today's fields: runs written before `precision` existed carry
    `bf16` (False: float32; True: bfloat16 autocast, which only CUDA applied then); runs
    written before validation and the plateau existed had them off; runs written under the
    plateau's earlier rule keep its fields only where the plateau was on (`RETIRED_PLATEAU`)."""
    d = dict(d)
    if "bf16" in d and "precision" not in d:
        d["precision"] = "bf16" if d.pop("bf16") else "fp32"
    for k, off in {**OPT_IN_OFF, **VALIDATION_DEFAULTS, **PLATEAU_DEFAULTS}.items():   # saved before they existed
        d.setdefault(k, off)
    if not d["plateau"]:
        for k in RETIRED_PLATEAU:
            d.pop(k, None)
    return d
