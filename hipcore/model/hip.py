"""The Hierarchical Perceiver: embed -> group -> encoder blocks -> processor -> decoder blocks.

    inputs {name: [B, M, C]}
      -> embed C -> E, add positions [M, E]           (Embedder, LearnedPositions | FourierPositions)
      -> group into [B, G, N, E]                      (GroupLayout)
      -> block 0 .. n-1, regrouping in between        (HiPBlock, regroup)
           decoder block i adds encoder block n-1-i to its latent queries (U-Net skips)
      -> reconstruction head: positions query the last latents, E -> C per modality
      -> logits: read out from the processor's latents
      -> dense logits (segmentation head): positions query the last or the processor's latents

A model with one block and one group is a flat Perceiver IO built by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.utils.checkpoint
from torch import nn

from ..config import BlockConfig, HiPConfig, ModalitySpec
from .grouping import GroupLayout, regroup
from .layers import CrossAttention, SelfAttention, init_table, linear
from .positions import FourierPositions, LearnedPositions


@dataclass
class HiPOutput:
    reconstruction: dict[str, torch.Tensor] | None    # {name: [B, M, C]}, None if not asked
    logits: torch.Tensor | None                       # [B, num_classes], None without read-out
    latents: list[torch.Tensor] = field(default_factory=list)  # per block [B, G, K, D]
    dense: dict[str, torch.Tensor] | None = None      # {name: [B, M, dense_classes]}, None without the head


class Embedder(nn.Module):
    """Per-modality linear maps C -> E, and the zero-initialised unembedding E -> C."""

    def __init__(self, modalities: dict[str, ModalitySpec], embed_channels: int):
        super().__init__()
        self.embed = nn.ModuleDict({n: linear(s.channels, embed_channels) for n, s in modalities.items()})
        self.unembed = nn.ModuleDict({n: linear(embed_channels, s.channels, scale=0.0)
                                      for n, s in modalities.items()})

    def forward(self, name: str, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x [B, M, C] @ W.T + bias + positions [M, E] -> [B, M, E], in one batched matmul.

        baddbmm writes the positions into the output and accumulates the product onto them:
        one pass over [B, M, E] instead of three (linear, broadcast bias, add), and its
        backward sums the positions' gradient over the batch without a separate add node.
        """
        layer = self.embed[name]
        batch = x.shape[0]
        base = (positions + layer.bias).expand(batch, -1, -1)                 # [B, M, E], a view
        return torch.baddbmm(base, x, layer.weight.t().expand(batch, -1, -1))


class HiPBlock(nn.Module):
    """K latents per group cross-attend to the group's inputs, then L self-attention layers.

    Weights are shared by all groups; only the latent queries are per group ([G*K, D]).
    """

    def __init__(self, cfg: BlockConfig, in_channels: int, *, skip_channels: int | None,
                 act: str, dropout: float, drop_path: float, checkpoint: bool = False):
        super().__init__()
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.latents = nn.Parameter(init_table(torch.empty(cfg.groups * cfg.latents, cfg.channels)))
        self.skip = None
        if skip_channels is not None and skip_channels != cfg.channels:
            self.skip = linear(skip_channels, cfg.channels)        # U-Net skip, width-matched
        self.cross_attend = CrossAttention(cfg.channels, in_channels, heads=cfg.cross_heads,
                                           widening=cfg.cross_widening, act=act)
        self.self_attends = nn.ModuleList(
            SelfAttention(cfg.channels, heads=cfg.heads, widening=cfg.self_widening, act=act,
                          dropout=dropout, drop_path=drop_path)
            for _ in range(cfg.self_attends))

    def queries(self, batch: int, device: torch.device) -> torch.Tensor:
        """[1, G, K, D], or at train time with latents_train a random subset [B, G, K', D]."""
        g, k, d = self.cfg.groups, self.cfg.latents, self.cfg.channels
        queries = self.latents.view(1, g, k, d)
        keep = self.cfg.latents_train
        if self.training and keep is not None and keep < k:
            idx = torch.rand(batch, g, k, device=device).argsort(dim=-1)[..., :keep]
            queries = queries.expand(batch, g, k, d).gather(2, idx[..., None].expand(-1, -1, -1, d))
        return queries

    def forward(self, inputs: torch.Tensor, key_mask: torch.Tensor | None = None,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        """inputs [B, G, N, C], key_mask [B, G, N], skip [B, G, K, D'] -> latents [B, G, K, D]."""
        if inputs.shape[1] != self.cfg.groups:
            raise ValueError(f"block expects {self.cfg.groups} groups, got {inputs.shape[1]}")
        queries = self.queries(inputs.shape[0], inputs.device)
        if skip is not None:
            if skip.shape[2] != queries.shape[2]:
                raise ValueError(f"U-Net skip has {skip.shape[2]} latents per group, "
                                 f"queries have {queries.shape[2]}")
            queries = queries + (skip if self.skip is None else self.skip(skip))
        z = self.run(self.cross_attend, queries, inputs, key_mask)
        for _ in range(self.cfg.repeats):
            for layer in self.self_attends:
                z = self.run(layer, z)
        return z

    def run(self, layer: nn.Module, *args: torch.Tensor | None) -> torch.Tensor:
        """layer(*args); with checkpointing, its activations are recomputed in backward."""
        if self.checkpoint and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)


class ClassifierHead(nn.Module):
    """Logits from the processor's latents: mean-pool or a learned query, then LN -> Linear."""

    def __init__(self, channels: int, num_classes: int, kind: str, act: str):
        super().__init__()
        self.kind = kind
        if kind == "query":
            self.query = nn.Parameter(init_table(torch.empty(1, channels)))
            self.cross_attend = CrossAttention(channels, channels, heads=1, widening=1, act=act)
        self.norm = nn.LayerNorm(channels)
        self.linear = linear(channels, num_classes)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, 1, K, D] -> logits [B, num_classes]."""
        if self.kind == "query":
            pooled = self.cross_attend(self.query.view(1, 1, 1, -1), latents)[:, 0, 0]
        else:
            pooled = latents.mean(dim=(1, 2))
        return self.linear(self.norm(pooled))


class HiP(nn.Module):
    """Hierarchical Perceiver over a fixed set of named modalities.

    Call with any non-empty subset of the modalities: {name: [B, M, C]} float tensors.
    `visible` ([B, N'] long, positions within a group, the same for every group) keeps only
    those inputs for the encoder, as groupwise MAE masking does; the reconstruction head
    still answers for every position.
    """

    def __init__(self, config: HiPConfig, modalities: dict[str, ModalitySpec]):
        super().__init__()
        if not isinstance(modalities, Mapping):
            raise ValueError(f"modalities must be a mapping {{name: ModalitySpec}}, got a {type(modalities).__name__}")
        if not modalities:
            raise ValueError("a HiP needs at least one modality")
        for name, spec in modalities.items():
            if not isinstance(spec, ModalitySpec):
                raise TypeError(f"modality {name!r} must be a ModalitySpec, got {type(spec).__name__}")
        first, last = config.blocks[0], config.blocks[-1]
        if first.groups != last.groups:
            raise ValueError(f"the last block must have as many groups as the first "
                             f"({last.groups} != {first.groups}) for the reconstruction head")
        self.config = config
        self.modalities = dict(modalities)
        e = config.embed_channels
        self.embedder = Embedder(modalities, e)
        if config.position == "learned":
            self.positions = LearnedPositions(modalities, config.raw_position_channels, e,
                                              project=config.project_positions)
        else:
            self.positions = FourierPositions(modalities, config.fourier_bands, e)
        self.blocks = nn.ModuleList()
        widths, proc = [], config.processor_index
        for i, cfg in enumerate(config.blocks):
            skip = widths[len(config.blocks) - 1 - i] if i > proc else None
            self.blocks.append(HiPBlock(cfg, widths[-1] if widths else e, skip_channels=skip,
                                        act=config.activation, dropout=config.dropout,
                                        drop_path=config.drop_path, checkpoint=config.checkpoint))
            widths.append(cfg.channels)
        self.reconstruction_head = CrossAttention(e, last.channels, heads=1, widening=1,
                                                  act=config.activation, query_residual=False)
        self.classifier = None
        if config.num_classes:
            self.classifier = ClassifierHead(config.blocks[proc].channels, config.num_classes,
                                             config.readout, config.activation)
        self.dense_head = None
        if config.dense_classes:
            from .dense import SegmentationHead  # late: a model without the head never loads it

            source = last if config.dense_from == "decoder" else config.blocks[proc]
            self.dense_head = SegmentationHead(e, source.channels, config.dense_classes, config.activation)
        self._layouts: dict[tuple[str, ...], GroupLayout] = {}

    # ---- the pieces of forward, in order ----

    def check_inputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Validate {name: [B, M, C]} and return it in the model's modality order."""
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError("inputs must be a non-empty dict {modality name: [B, M, C] tensor}")
        unknown = [n for n in inputs if n not in self.modalities]
        if unknown:
            raise KeyError(f"unknown modality {unknown[0]!r}; this model has {list(self.modalities)}")
        batch = None
        for name, x in inputs.items():
            spec = self.modalities[name]
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"modality {name!r}: expected a tensor, got {type(x).__name__}")
            if not x.is_floating_point():
                raise TypeError(f"modality {name!r}: expected a float tensor, got {x.dtype}")
            if x.dim() != 3:
                raise ValueError(f"modality {name!r}: expected rank 3 [B, M, C], got shape {tuple(x.shape)}")
            if x.shape[0] == 0:
                raise ValueError(f"modality {name!r}: empty batch")
            if x.shape[1] != spec.num_inputs:
                raise ValueError(f"modality {name!r}: expected M = {spec.num_inputs} inputs, got {x.shape[1]}")
            if x.shape[2] != spec.channels:
                raise ValueError(f"modality {name!r}: expected C = {spec.channels} channels, got {x.shape[2]}")
            if batch is not None and x.shape[0] != batch:
                raise ValueError(f"modality {name!r}: batch size {x.shape[0]} differs from {batch}")
            batch = x.shape[0]
        return {n: inputs[n] for n in self.modalities if n in inputs}

    def layout(self, names: tuple[str, ...]) -> GroupLayout:
        if names not in self._layouts:
            sizes = {n: self.modalities[n].num_inputs for n in names}
            self._layouts[names] = GroupLayout.build(sizes, self.config.blocks[0].groups)
        return self._layouts[names]

    def embed(self, inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """{name: [B, M, C]} -> tokens {name: [B, M, E]} and positions {name: [M, E]}."""
        dtype = self.embedder.embed[next(iter(inputs))].weight.dtype
        positions = {n: self.positions(n) for n in inputs}
        tokens = {n: self.embedder(n, x.to(dtype), positions[n]) for n, x in inputs.items()}
        return tokens, positions

    @staticmethod
    def select_visible(z: torch.Tensor, key_mask: torch.Tensor | None,
                       visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Keep positions `visible` [B, N'] of every group: z [B, G, N, E] -> [B, G, N', E]."""
        b, g, n, e = z.shape
        if visible.dim() != 2 or visible.shape[0] != b or visible.dtype != torch.long:
            raise ValueError(f"visible must be a long tensor [B={b}, N'], got {visible.dtype} {tuple(visible.shape)}")
        if visible.shape[1] == 0:
            raise ValueError("visible keeps no position: give at least one per group")
        in_range = (visible.min() >= 0) & (visible.max() < n)
        once = (visible.sort(dim=1).values.diff(dim=1) != 0).all()
        if not bool(in_range & once):                     # one device sync for both checks
            raise ValueError(f"visible positions must lie in [0, {n}) (the group size)" if not bool(in_range)
                             else "visible names a position twice in a row: each kept position once")
        idx = visible[:, None, :].expand(b, g, -1)
        z = z.gather(2, idx[..., None].expand(-1, -1, -1, e))
        if key_mask is not None:
            key_mask = key_mask.gather(2, idx)
        return z, key_mask

    def encode(self, z: torch.Tensor, key_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """Grouped tokens [B, G, N, E] -> latents of the encoder blocks and the processor."""
        latents: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks[:self.config.processor_index + 1]):
            if i > 0:
                z = regroup(z, block.cfg.groups, self.config.regroup)
            z = block(z, key_mask if i == 0 else None)
            latents.append(z)
        return latents

    def decode(self, latents: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decoder blocks, each adding its mirror encoder block's latents to its queries."""
        n, z = len(self.blocks), latents[-1]
        for i in range(self.config.processor_index + 1, n):
            block = self.blocks[i]
            z = block(regroup(z, block.cfg.groups, self.config.regroup), skip=latents[n - 1 - i])
            latents.append(z)
        return latents

    def reconstruct(self, latents: torch.Tensor, positions: dict[str, torch.Tensor],
                    layout: GroupLayout) -> dict[str, torch.Tensor]:
        """Positions query the last latents [B, G, K, D] -> {name: [B, M, C]}."""
        queries = layout.group({n: p[None] for n, p in positions.items()})   # [1, G, N, E]
        out = layout.ungroup(self.reconstruction_head(queries, latents))       # {n: [B, M, E]}
        return {n: self.embedder.unembed[n](x) for n, x in out.items()}

    def forward(self, inputs: dict[str, torch.Tensor], *, visible: torch.Tensor | None = None,
                reconstruct: bool = True) -> HiPOutput:
        inputs = self.check_inputs(inputs)
        layout = self.layout(tuple(inputs))
        tokens, positions = self.embed(inputs)
        z = layout.group(tokens)                                               # [B, G, N, E]
        key_mask = layout.key_mask(z.device)
        if key_mask is not None:
            key_mask = key_mask.expand(z.shape[0], -1, -1)                      # [B, G, N]
        if visible is not None:
            z, key_mask = self.select_visible(z, key_mask, visible)
        latents = self.encode(z, key_mask)
        logits = None if self.classifier is None else self.classifier(latents[-1])
        reconstruction = dense = None
        bottleneck = latents[-1]                                               # [B, 1, K, D]
        if reconstruct or (self.dense_head is not None and self.config.dense_from == "decoder"):
            latents = self.decode(latents)
        if reconstruct:
            reconstruction = self.reconstruct(latents[-1], positions, layout)
        if self.dense_head is not None:
            source = latents[-1] if self.config.dense_from == "decoder" else bottleneck
            dense = self.dense_head(source, positions, layout)
        return HiPOutput(reconstruction, logits, latents, dense)


def build(name_or_config: str | HiPConfig, modalities: dict[str, ModalitySpec], **overrides) -> HiP:
    """A HiP from a variant name (see config.VARIANT_NAMES) or a HiPConfig."""
    from ..config import variant

    if isinstance(name_or_config, HiPConfig):
        config = name_or_config.replace(**overrides) if overrides else name_or_config
    else:
        config = variant(name_or_config, **overrides)
    return HiP(config, modalities)


def check_fits(model: HiP, modalities: Mapping[str, ModalitySpec], what: str = "the data") -> None:
    """ValueError unless `modalities` (a dataset's) are exactly the model's: the same inputs,
    channels, grid and input order (a model trained in raster order does not read Hilbert)."""
    for name, spec in model.modalities.items():
        if name not in modalities:
            raise ValueError(f"the model reads modality {name!r}, which {what} does not have")
        other = modalities[name]
        mine = (spec.num_inputs, spec.channels, tuple(spec.grid))
        theirs = (other.num_inputs, other.channels, tuple(other.grid))
        if mine != theirs:
            raise ValueError(f"the model reads {name!r} as {spec.num_inputs} inputs x {spec.channels} channels on "
                             f"grid {tuple(spec.grid)}; {what} gives {theirs[0]} x {theirs[1]} on grid {theirs[2]}")
        a = torch.arange(spec.num_inputs) if spec.order is None else spec.order
        b = torch.arange(other.num_inputs) if other.order is None else other.order
        if not torch.equal(a.cpu(), b.cpu()):
            raise ValueError(f"the model was trained with {name!r} flattened in another order than {what}'s: "
                             "load the data in the model's ordering (raster for the shipped weights)")
