"""Configurations: one frozen dataclass per block, one per model, and the named variants.

The paper's tables use the official code's names; ours map one to one:

| ours             | official                        | paper                 |
|------------------|---------------------------------|-----------------------|
| groups           | num_groups                      | groups G              |
| latents          | z_index_dim                     | latents per group K   |
| channels         | num_z_channels                  | channels D            |
| self_attends     | num_self_attends_per_block      | self-attn layers L    |
| heads            | num_self_attend_heads           | heads                 |
| embed_channels   | num_embedding_channels          | E                     |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch

ACTIVATIONS = ("sq_relu", "relu", "gelu")
REGROUP_TYPES = ("reshape", "transpose_reshape")
POSITION_KINDS = ("learned", "fourier")
READOUTS = ("mean", "query")
DENSE_SOURCES = ("decoder", "bottleneck")   # the latents the segmentation head reads


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def whole_number(value: Any, name: str, minimum: int = 1) -> int:
    """`value` when it is an int >= minimum; ValueError naming `name` and the value otherwise.
    A bool is not a number here (True would pass for 1), nor is 2.0 or '2'."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    _require(ok, f"{name} must be {'a positive int' if minimum == 1 else f'an int >= {minimum}'}, got {value!r}")
    return value


def _fraction(value: Any, name: str) -> None:
    """ValueError unless `value` is a real number (not a bool) in [0, 1)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0
    _require(ok, f"{name} must be a number in [0, 1), got {value!r}")


def _flag(value: Any, name: str) -> None:
    _require(isinstance(value, bool), f"{name} must be True or False, got {value!r}")


@dataclass(frozen=True, eq=False)
class ModalitySpec:
    """What the model must know about one input modality before it sees data.

    num_inputs: M, the length of the flattened input [B, M, C].
    channels: C, the channels of each input element (3 for RGB pixels, 3 for xyz points).
    grid: the index-space shape whose raster flattening has M elements, e.g. (28, 28) for
        an image or (M,) for a sequence; Fourier features are computed on it. Defaults to (M,).
    order: optional LongTensor [M]: element m of the input is raster position order[m] of
        the grid (an image flattened in Hilbert or shuffled order). Only Fourier features use
        it; learned tables are indexed by input position whatever the order.
    """

    num_inputs: int
    channels: int
    grid: tuple[int, ...] = ()
    order: torch.Tensor | None = None

    def __post_init__(self) -> None:
        whole_number(self.num_inputs, "num_inputs")
        whole_number(self.channels, "channels")
        _require(isinstance(self.grid, (tuple, list)), f"grid must be a tuple of sizes, got {self.grid!r}")
        grid = tuple(self.grid) or (self.num_inputs,)
        for i, n in enumerate(grid):
            whole_number(n, f"grid[{i}]")
        size = 1
        for n in grid:
            size *= n
        _require(size == self.num_inputs,
                 f"grid {grid} has {size} elements but num_inputs is {self.num_inputs}")
        object.__setattr__(self, "grid", grid)
        if self.order is not None:
            order = torch.as_tensor(self.order, dtype=torch.long)
            _require(order.shape == (self.num_inputs,),
                     f"order must have shape ({self.num_inputs},), got {tuple(order.shape)}")
            _require(torch.equal(order.sort().values, torch.arange(self.num_inputs)),
                     "order must be a permutation of range(num_inputs)")
            object.__setattr__(self, "order", order)

    def to_dict(self, *, plain: bool = False) -> dict[str, Any]:
        """{num_inputs, channels, grid, order}. order stays a tensor (for checkpoints) unless
        `plain`: then JSON-ready, 'identity' for the raster order, else a list (or None)."""
        order = self.order
        if plain and order is not None:
            order = "identity" if torch.equal(order.cpu(), torch.arange(self.num_inputs)) else order.tolist()
        return {"num_inputs": self.num_inputs, "channels": self.channels, "grid": list(self.grid), "order": order}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModalitySpec":
        """The inverse of `to_dict`, plain or not."""
        order = d["order"]
        if isinstance(order, str):
            if order != "identity":
                raise ValueError(f"a modality's order is a permutation, 'identity' or null, got {order!r}")
            order = torch.arange(d["num_inputs"])
        elif order is not None:
            order = torch.as_tensor(order, dtype=torch.long)
        return cls(d["num_inputs"], d["channels"], tuple(d["grid"]), order)


def modalities_to_dict(modalities: Mapping[str, ModalitySpec], *, plain: bool = False) -> dict[str, Any]:
    return {name: spec.to_dict(plain=plain) for name, spec in modalities.items()}


def modalities_from_dict(d: Mapping[str, Any]) -> dict[str, ModalitySpec]:
    return {name: ModalitySpec.from_dict(spec) for name, spec in d.items()}


@dataclass(frozen=True)
class BlockConfig:
    """One HiP block: cross-attention from K latents per group, then L self-attention layers."""

    groups: int                 # G: independent groups, weights shared across them
    latents: int                # K: latents per group
    channels: int               # D: latent width
    self_attends: int           # L: self-attention layers after the cross-attention
    heads: int                  # self-attention heads
    cross_heads: int = 1        # cross-attention heads (1 in every paper model)
    cross_widening: int = 1     # MLP widening factor after cross-attention
    self_widening: int = 4      # MLP widening factor after self-attention
    repeats: int = 1            # the L layers applied this many times with shared weights
    latents_train: int | None = None  # train-time random subset of the K latents (None: all)

    def __post_init__(self) -> None:
        for name in ("groups", "latents", "channels", "heads", "cross_heads",
                     "cross_widening", "self_widening", "repeats"):
            whole_number(getattr(self, name), f"BlockConfig.{name}")
        whole_number(self.self_attends, "BlockConfig.self_attends", minimum=0)
        _require(self.channels % self.heads == 0,
                 f"heads ({self.heads}) must divide channels ({self.channels})")
        _require(self.channels % self.cross_heads == 0,
                 f"cross_heads ({self.cross_heads}) must divide channels ({self.channels})")
        if self.latents_train is not None:
            whole_number(self.latents_train, "BlockConfig.latents_train")
            _require(self.latents_train <= self.latents,
                     f"latents_train must be in 1..{self.latents}, got {self.latents_train}")


@dataclass(frozen=True)
class HiPConfig:
    """A whole model: encoder blocks, one processor block (the middle one), mirrored decoder.

    A single block is a flat Perceiver (IO): its one group is the processor.
    """

    blocks: tuple[BlockConfig, ...]
    embed_channels: int = 32                 # E: every modality is embedded to this width
    position: str = "learned"                # 'learned' tables or 'fourier' features
    position_channels: int | None = None     # raw learned-table width (None: E)
    project_positions: bool = False          # project learned tables even when width == E
    fourier_bands: int = 64                  # Fourier frequency bands per grid dimension
    regroup: str = "reshape"                 # how latents move between levels
    activation: str = "sq_relu"
    dropout: float = 0.0                     # after self-attention and its MLP
    drop_path: float = 0.0                   # stochastic depth on self-attention residuals
    num_classes: int = 0                     # > 0 adds a classification read-out
    readout: str = "mean"                    # 'mean' of processor latents, or a learned 'query'
    dense_classes: int = 0                   # > 0 adds a segmentation head: logits per position
    dense_from: str = "decoder"              # its latents: the finest 'decoder' level's, or the
                                             # processor's ('bottleneck', decoder blocks skipped)
    checkpoint: bool = False                 # recompute each layer's activations in backward:
                                             # less memory for ~1/3 more compute (training only)

    def __post_init__(self) -> None:
        _require(isinstance(self.blocks, (tuple, list)),
                 f"blocks must be a sequence of BlockConfig, got {type(self.blocks).__name__} {self.blocks!r}")
        blocks = tuple(self.blocks)
        object.__setattr__(self, "blocks", blocks)
        _require(len(blocks) % 2 == 1,
                 f"a HiP needs an odd number of blocks (encoders, processor, decoders), got {len(blocks)}")
        _require(all(isinstance(b, BlockConfig) for b in blocks), "blocks must be BlockConfig")
        _require(blocks[len(blocks) // 2].groups == 1,
                 f"the processor (block {len(blocks) // 2}) must have 1 group, "
                 f"got {blocks[len(blocks) // 2].groups}")
        whole_number(self.embed_channels, "embed_channels")
        _require(self.position in POSITION_KINDS,
                 f"position must be one of {POSITION_KINDS}, got {self.position!r}")
        _require(self.regroup in REGROUP_TYPES,
                 f"regroup must be one of {REGROUP_TYPES}, got {self.regroup!r}")
        _require(self.activation in ACTIVATIONS,
                 f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        _require(self.readout in READOUTS,
                 f"readout must be one of {READOUTS}, got {self.readout!r}")
        _require(self.dense_from in DENSE_SOURCES,
                 f"dense_from must be one of {DENSE_SOURCES}, got {self.dense_from!r}")
        whole_number(self.dense_classes, "dense_classes", minimum=0)
        _fraction(self.dropout, "dropout")
        _fraction(self.drop_path, "drop_path")
        whole_number(self.num_classes, "num_classes", minimum=0)
        whole_number(self.fourier_bands, "fourier_bands")
        if self.position_channels is not None:
            whole_number(self.position_channels, "position_channels")
        _flag(self.project_positions, "project_positions")
        _flag(self.checkpoint, "checkpoint")

    @property
    def processor_index(self) -> int:
        return len(self.blocks) // 2

    @property
    def raw_position_channels(self) -> int:
        return self.position_channels or self.embed_channels

    def replace(self, **changes: Any) -> "HiPConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HiPConfig":
        d = dict(d)
        d["blocks"] = tuple(BlockConfig(**b) for b in d["blocks"])
        return cls(**d)


def blocks_from_columns(*, groups, self_attends, heads, channels, latents, **shared) -> tuple[BlockConfig, ...]:
    """Blocks from the paper's column-per-block tables (one sequence per row)."""
    rows = (groups, self_attends, heads, channels, latents)
    _require(len({len(r) for r in rows}) == 1, "every row of a variant table needs one entry per block")
    return tuple(BlockConfig(groups=g, self_attends=layers, heads=h, channels=d, latents=k, **shared)
                 for g, layers, h, d, k in zip(*rows))


# The paper's models (PAPER.md, "Configurations"), plus small ones that keep their rules.
_VARIANTS: dict[str, dict[str, Any]] = {
    "hip16": dict(
        embed_channels=32,
        blocks=dict(groups=(16, 4, 1, 1, 1, 4, 16), self_attends=(2, 2, 18, 2, 1, 1, 1),
                    heads=(4, 8, 16, 32, 16, 8, 4), channels=(128, 256, 512, 1024, 512, 256, 128),
                    latents=(128, 256, 256, 64, 256, 256, 128))),
    "hip256": dict(
        embed_channels=16,
        blocks=dict(groups=(256, 64, 16, 4, 1, 1, 1, 4, 16, 64, 256),
                    self_attends=(1, 1, 2, 2, 18, 2, 1, 1, 1, 1, 1),
                    heads=(1, 2, 4, 8, 16, 32, 16, 8, 4, 2, 1),
                    channels=(64, 96, 128, 256, 512, 1024, 256, 128, 64, 32, 16),
                    latents=(32, 64, 128, 256, 256, 64, 256, 256, 128, 64, 32))),
    "mini": dict(
        embed_channels=32,
        blocks=dict(groups=(16, 1, 16), self_attends=(2, 1, 1), heads=(4, 32, 4),
                    channels=(128, 1024, 128), latents=(128, 64, 128))),
    # CPU-scale: 28 x 28 = 784 inputs, 16 groups of 49 pixels at the first level.
    "small3": dict(
        embed_channels=32,
        blocks=dict(groups=(16, 1, 16), self_attends=(1, 2, 1), heads=(2, 4, 2),
                    channels=(64, 128, 64), latents=(16, 64, 16))),
    "small5": dict(
        embed_channels=32,
        blocks=dict(groups=(16, 4, 1, 4, 16), self_attends=(1, 1, 2, 1, 1),
                    heads=(2, 4, 4, 4, 2), channels=(64, 96, 128, 96, 64),
                    latents=(16, 32, 64, 32, 16))),
    # Flat baselines from the same code: one block, one group.
    "perceiver_small": dict(
        embed_channels=32,
        blocks=dict(groups=(1,), self_attends=(4,), heads=(4,), channels=(128,), latents=(64,))),
    # Perceiver IO, ImageNet (Jaegle et al. 2021, arXiv 2107.14795, and the official config in
    # deepmind-research perceiver/train/experiment.py): 512 latents x 1024 channels; one
    # cross-attention (1 head, q/k/v as wide as the inputs, MLP widening 1); 8 repeats of 6
    # self-attention layers (8 heads, widening 1) sharing weights across repeats; 2-D Fourier
    # features with 64 bands concatenated to the pixels: 3 + 2 * (2 * 64 + 1) = 261 channels.
    # A linear map of that concatenation is the sum of maps of its parts, so E = 261 embeds
    # the pixels and projects the features to the same width. Read out by a learned query
    # (the official classification decoder). 48.4M parameters train in a classification step.
    "perceiver_io_imagenet": dict(
        embed_channels=261, position="fourier", fourier_bands=64, readout="query",
        blocks=dict(groups=(1,), self_attends=(6,), heads=(8,), channels=(1024,), latents=(512,),
                    repeats=8, self_widening=1)),
}

VARIANT_NAMES = tuple(_VARIANTS)


def variant(name: str, **overrides: Any) -> HiPConfig:
    """The named configuration, with any HiPConfig field overridden (e.g. num_classes=10)."""
    if name not in _VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANT_NAMES)}")
    spec = dict(_VARIANTS[name])
    columns = dict(spec.pop("blocks"))
    shared = {k: columns.pop(k) for k in list(columns) if not isinstance(columns[k], tuple)}
    spec["blocks"] = blocks_from_columns(**columns, **shared)
    spec.update(overrides)
    return HiPConfig(**spec)
