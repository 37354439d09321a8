"""The segmentation head: one class-logit vector per input position, read from HiP's latents.

    dense_from 'decoder'      the finest decoder level's latents [B, G, K, D] (after every
                              decoder block): the full HiP, the paper's best VOC arm
    dense_from 'bottleneck'   the processor's latents [B, 1, K, D], the decoder blocks skipped

Either way the head is the reconstruction head with classes instead of input channels: the
position embeddings, grouped as the inputs were ([1, G, N, E]), cross-attend (one head, no
query residual) to the latents they read, then LayerNorm -> Linear E -> classes. Reading the
bottleneck, the processor has one group, so all G * N positions query its latents together.
A flat Perceiver IO (one block, one group) has one set of latents: both sources are that one,
and the head is Perceiver IO's query decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from .grouping import GroupLayout
from .layers import CrossAttention, linear


class SegmentationHead(nn.Module):
    """Position queries [1, G, N, E] attend to latents [B, G' (G or 1), K, D] -> logits per position."""

    def __init__(self, embed_channels: int, latent_channels: int, num_classes: int, act: str):
        super().__init__()
        self.cross_attend = CrossAttention(embed_channels, latent_channels, heads=1, widening=1,
                                           act=act, query_residual=False)
        self.norm = nn.LayerNorm(embed_channels)
        self.linear = linear(embed_channels, num_classes)

    def forward(self, latents: torch.Tensor, positions: dict[str, torch.Tensor],
                layout: GroupLayout) -> dict[str, torch.Tensor]:
        """latents [B, G', K, D], positions {name: [M, E]} -> logits {name: [B, M, classes]}."""
        queries = layout.group({n: p[None] for n, p in positions.items()})       # [1, G, N, E]
        g, n = queries.shape[1:3]
        if latents.shape[1] != g:                          # the bottleneck: one group reads all
            queries = queries.reshape(1, latents.shape[1], g * n // latents.shape[1], -1)
        out = self.cross_attend(queries, latents)                               # [B, G', G*N/G', E]
        out = out.reshape(out.shape[0], g, n, -1)                               # [B, G, N, E]
        return {name: self.linear(self.norm(x)) for name, x in layout.ungroup(out).items()}
