"""Attention and MLP layers of a HiP block, on grouped arrays [B, G, N, C].

Groups are folded into the batch axis for attention, so all groups of all examples run in
one `scaled_dot_product_attention` call with shared weights. A plain path computes the same
attention explicitly (float32 softmax) and can record the weights for plots.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def init_linear(layer: nn.Linear, scale: float = 1.0) -> nn.Linear:
    """Fan-in truncated-normal weights and zero bias (the official model's initialiser)."""
    fan_in = layer.weight.shape[1]
    std = math.sqrt(scale / fan_in) / 0.87962566103423978  # std of N(0,1) truncated at +-2
    if scale == 0.0:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def linear(in_features: int, out_features: int, *, bias: bool = True, scale: float = 1.0) -> nn.Linear:
    return init_linear(nn.Linear(in_features, out_features, bias=bias), scale)


def init_table(table: torch.Tensor) -> torch.Tensor:
    """A learned [index, channels] table, scaled by its index size as in the official model."""
    std = math.sqrt(1.0 / table.shape[0]) / 0.87962566103423978
    with torch.no_grad():
        return nn.init.trunc_normal_(table, std=std, a=-2 * std, b=2 * std)


class _SquaredReLU(torch.autograd.Function):
    """relu(x)^2 saving only relu(x): half the memory traffic of autograd's pow backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(x)
        ctx.save_for_backward(r)
        return r.square()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return torch.mul(r, 2).mul_(grad)


class SquaredReLU(nn.Module):
    """The paper's activation, relu(x)^2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SquaredReLU.apply(x)


def activation(name: str) -> nn.Module:
    return {"sq_relu": SquaredReLU, "relu": nn.ReLU, "gelu": nn.GELU}[name]()


class MLP(nn.Module):
    """Pre-LN dense block: LN -> Linear(C, wC) -> act -> Linear(wC, C) -> dropout."""

    def __init__(self, channels: int, widening: int, act: str, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.hidden = linear(channels, widening * channels)
        self.act = activation(act)
        self.out = linear(widening * channels, channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.out(self.act(self.hidden(self.norm(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch for whole examples (dim 0) at train time."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.rate
        return x * keep.to(x.dtype)  # not rescaled, as in the official model


# Attention on a CPU with at most this many scores per head runs as two matmuls around a
# float32 softmax instead of scaled_dot_product_attention: for the small per-group blocks of
# HiP (16-64 latents over 16-256 keys) the flash kernel is slower, above all its bf16 backward.
MATMUL_SCORES = 64 * 1024


def uses_matmuls(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether attention of q [.., Nq, dk] over k [.., Nk, dk] takes the two-matmul path."""
    return q.device.type == "cpu" and q.shape[-2] * k.shape[-2] <= MATMUL_SCORES


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
           *, plain: bool, scale: float | None = None,
           values: Callable[[torch.Tensor], torch.Tensor] | None = None
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention over folded groups.

    q: [BG, H, Nq, dk], k: [BG, H, Nk, dk], v: [BG, H, Nk, dv]; key_mask: [BG, Nk] bool, True
    where the key is real; scale: of the scores (default 1/sqrt(dk)); values: applied to the
    attended values before empty groups are zeroed. Queries whose keys are all padding output
    zeros (never NaN). Returns out [BG, H, Nq, dv'] and, on the plain path, the weights
    [BG, H, Nq, Nk].
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    empty = None
    if key_mask is not None:
        empty = ~key_mask.any(dim=-1)                    # [BG] groups with no real key
        key_mask = key_mask | empty[:, None]             # attend uniformly; zeroed below
        key_mask = key_mask[:, None, None, :]            # [BG, 1, 1, Nk]
    if plain:
        scores = torch.einsum("bhqc,bhkc->bhqk", q.float(), k.float()) * scale
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask, float("-inf"))
        weights = scores.softmax(dim=-1)                 # float32 softmax
        out = torch.einsum("bhqk,bhkc->bhqc", weights, v.float()).to(v.dtype)
    elif uses_matmuls(q, k):
        weights = None
        scores = (q * scale) @ k.transpose(-1, -2)       # [BG, H, Nq, Nk] in q's dtype
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask, float("-inf"))
        # A CPU's bf16 softmax accumulates in float32 and rounds once: a float32 softmax rounded
        # to bf16, without the two casts (and with a one-pass backward).
        out = scores.softmax(dim=-1).to(v.dtype) @ v
    else:
        weights = None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, scale=scale)
    if values is not None:
        out = values(out)
    if empty is not None:
        out = out.masked_fill(empty[:, None, None, None], 0.0)
    return out, weights


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value inputs ([B, G, N, C] each).

    q/k width `qk_channels`, value width `v_channels`, output `out_channels`; the key and
    value projections are fused into one matmul (self-attention fuses all three).

    Few queries over many wide inputs (a flat Perceiver's cross-attention: 64 latents over
    50,176 pixels of 261 channels) take the key and value projections to the query side
    (`absorbs_projections`): per head, scores = (q W_k) x^T and out = (softmax x) W_v + b_v,
    the same function by associativity (the key bias shifts all of a query's scores alike,
    which softmax ignores), without projecting every input. `ABSORB_GAIN` is the least
    saving in FLOPs that takes this path.
    """

    ABSORB_GAIN = 2.0

    def __init__(self, q_in: int, kv_in: int, *, heads: int, qk_channels: int, v_channels: int,
                 out_channels: int, fused_qkv: bool = False):
        super().__init__()
        if qk_channels % heads or v_channels % heads:
            raise ValueError(f"{heads} heads must divide qk ({qk_channels}) and v ({v_channels}) widths")
        self.heads, self.qk_channels, self.v_channels = heads, qk_channels, v_channels
        self.fused_qkv = fused_qkv
        if fused_qkv:
            if q_in != kv_in:
                raise ValueError("fused q/k/v needs equal query and key/value widths")
            self.qkv = linear(q_in, 2 * qk_channels + v_channels)
        else:
            self.q = linear(q_in, qk_channels)
            self.kv = linear(kv_in, qk_channels + v_channels)
        self.out = linear(v_channels, out_channels)
        self.plain = False            # True: explicit float32 softmax path
        self.record = False           # True: keep the last weights in .weights (plain path)
        self.weights: torch.Tensor | None = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b g n (h c) -> (b g) h n c", h=self.heads)

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None, *, q: torch.Tensor | None = None) -> torch.Tensor:
        """x_q: [B|1, G, Nq, Cq], x_kv: [B, G, Nk, Ckv], key_mask: [B, G, Nk] -> [B, G, Nq, D].

        `q` may hold an already projected query [B|1, G, Nq, qk] (shared across the batch).
        """
        if self.fused_qkv:
            q, k, v = self.qkv(x_q).split([self.qk_channels, self.qk_channels, self.v_channels], -1)
        else:
            q = self.q(x_q) if q is None else q
            if self.absorbs_projections(q.shape[-2], x_kv.shape[-2]):
                return self.attend_inputs(q, x_kv, key_mask)
            k, v = self.kv(x_kv).split([self.qk_channels, self.v_channels], -1)
        batch, groups = k.shape[:2]
        q = q.expand(batch, *q.shape[1:])                       # shared queries: a view
        mask = None if key_mask is None else key_mask.reshape(batch * groups, -1)
        out, weights = attend(self.split_heads(q), self.split_heads(k), self.split_heads(v),
                              mask, plain=self.plain or self.record)
        return self.finish(out, weights, batch)

    def absorbs_projections(self, queries: int, keys: int) -> bool:
        """Whether attending with the key/value projections on the query side saves at least
        ABSORB_GAIN times the FLOPs (per group: projecting `keys` inputs and attending in the
        projected widths, against moving W_k and W_v to the `queries` and attending in the
        input width once per head)."""
        if self.fused_qkv:
            return False
        width, projected_width = self.kv.in_features, self.qk_channels + self.v_channels
        projected = 2 * keys * projected_width * (width + queries)
        absorbed = 2 * queries * width * (projected_width + 2 * self.heads * keys)
        return self.ABSORB_GAIN * absorbed <= projected

    def attend_inputs(self, q: torch.Tensor, x_kv: torch.Tensor,
                      key_mask: torch.Tensor | None) -> torch.Tensor:
        """Attention straight over the inputs: q [B|1, G, Nq, qk], x_kv [B, G, Nk, C] -> [B, G, Nq, D]."""
        batch, groups, n, width = x_kv.shape
        heads, dk, dv = self.heads, self.qk_channels // self.heads, self.v_channels // self.heads
        w_k, w_v = self.kv.weight.split([self.qk_channels, self.v_channels])   # [qk, C], [v, C]
        b_v = self.kv.bias[self.qk_channels:].view(heads, 1, dv)
        q = rearrange(q, "b g n (h c) -> b g h n c", h=heads)
        q = q @ w_k.view(heads, dk, width)                                   # [B|1, G, H, Nq, C]
        q = q.expand(batch, *q.shape[1:]).reshape(batch * groups, heads, -1, width)
        x = x_kv.reshape(batch * groups, 1, n, width).expand(-1, heads, -1, -1)  # [BG, H, Nk, C]
        mask = None if key_mask is None else key_mask.reshape(batch * groups, -1)
        w_v = w_v.view(heads, dv, width).transpose(1, 2)                     # [H, C, dv]
        out, weights = attend(q, x, x, mask, plain=self.plain or self.record, scale=dk ** -0.5,
                              values=lambda o: o @ w_v + b_v)                # [BG, H, Nq, dv]
        return self.finish(out, weights, batch)

    def finish(self, out: torch.Tensor, weights: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Heads [BG, H, Nq, dv] -> the output projection [B, G, Nq, D]; keeps recorded weights."""
        if self.record:
            self.weights = weights.detach()
        out = rearrange(out, "(b g) h n c -> b g n (h c)", b=batch)
        return self.out(out)


class CrossAttention(nn.Module):
    """Latent queries attend to a group's inputs, then an MLP (the HiP 'projector').

    Pre-LN on queries and inputs; q/k/v width = the input width; output width = the query
    width; residual on the queries unless `query_residual` is False (reconstruction head).
    """

    def __init__(self, query_channels: int, input_channels: int, *, heads: int, widening: int,
                 act: str, query_residual: bool = True):
        super().__init__()
        self.query_norm = nn.LayerNorm(query_channels)
        self.input_norm = nn.LayerNorm(input_channels)
        self.attention = Attention(query_channels, input_channels, heads=heads,
                                   qk_channels=input_channels, v_channels=input_channels,
                                   out_channels=query_channels)
        self.mlp = MLP(query_channels, widening, act)
        self.query_residual = query_residual

    def forward(self, queries: torch.Tensor, inputs: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """queries: [B|1, G, K, D], inputs: [B, G, N, C], key_mask: [B, G, N] -> [B, G, K, D]."""
        q = self.attention.q(self.query_norm(queries))          # once per group if shared
        z = self.attention(None, self.input_norm(inputs), key_mask, q=q)
        if self.query_residual:
            z = z + queries
        return z + self.mlp(z)


class SelfAttention(nn.Module):
    """Pre-LN self-attention among the latents of each group, then an MLP."""

    def __init__(self, channels: int, *, heads: int, widening: int, act: str,
                 dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attention = Attention(channels, channels, heads=heads, qk_channels=channels,
                                   v_channels=channels, out_channels=channels, fused_qkv=True)
        self.dropout = nn.Dropout(dropout)
        self.mlp = MLP(channels, widening, act, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: [B, G, K, D] -> [B, G, K, D]."""
        z = z + self.drop_path(self.dropout(self.attention(self.norm(z))))
        return z + self.drop_path(self.mlp(z))


@contextmanager
def plain_attention(model: nn.Module, *, record: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Run `model` on the plain attention path; with record=True, collect the weights.

    Yields a dict filled on exit with {module name: weights [B*G, H, Nq, Nk]}.
    """
    layers = {name: m for name, m in model.named_modules() if isinstance(m, Attention)}
    saved = {name: (m.plain, m.record) for name, m in layers.items()}
    weights: dict[str, torch.Tensor] = {}
    for m in layers.values():
        m.plain, m.record, m.weights = True, record, None
    try:
        yield weights
    finally:
        for name, m in layers.items():
            if m.weights is not None:
                weights[name] = m.weights
            m.plain, m.record = saved[name]
            m.weights = None
