"""00_tour: one batch of real images through a small HiP, level by level: a model with random
weights, or (pretrained=True) the shipped trained classifier and MAE model (hipcore.pretrained)."""

from __future__ import annotations

import time
from typing import Any

import torch

from ..model import HiP, HiPOutput, build, check_fits, plain_attention
from . import common, regime

NOTEBOOK = "00_tour"     # notebooks/<NOTEBOOK>.ipynb, its results in results/<NOTEBOOK>/<profile>/

# Per profile: which model, how many images go through it.
TABLE = common.profiles({
    "smoke": {"batch_size": 4},
    "binder": {"batch_size": 16},
    "quick": {"batch_size": 32},
    "full": {"variant": "small5"},
    "paper": {"variant": "hip16", "batch_size": 8},
})


def role(model: HiP, index: int) -> str:
    proc = model.config.processor_index
    if index == proc:
        return "processor"
    return f"encoder {index + 1}" if index < proc else f"decoder {index - proc}"


def level_rows(model: HiP, out: HiPOutput) -> list[dict[str, Any]]:
    """One row per block: its role, G, K, D, and the shape of its latents [B, G, K, D]."""
    rows = []
    for i, (block, z) in enumerate(zip(model.blocks, out.latents)):
        cfg = block.cfg
        rows.append({"block": i, "role": role(model, i), "groups": cfg.groups, "latents": cfg.latents,
                     "channels": cfg.channels, "self_attends": cfg.self_attends,
                     "shape": tuple(z.shape)})
    return rows


def run_batch(model: HiP, inputs: dict[str, torch.Tensor]) -> tuple[HiPOutput, dict[str, torch.Tensor], float]:
    """Forward once on the plain path, recording every attention map; returns the wall time."""
    model.eval()
    start = time.perf_counter()
    with torch.no_grad(), plain_attention(model, record=True) as weights:
        out = model(inputs)
    return out, weights, time.perf_counter() - start


def first_level_weights(weights: dict[str, torch.Tensor], batch: int, example: int = 0) -> torch.Tensor:
    """The first block's cross-attention for one example: [G, heads, K, N]."""
    w = weights["blocks.0.cross_attend.attention"]                 # [B*G, heads, K, N]
    return w.view(batch, -1, *w.shape[1:])[example]


def models(variant: str, data, shipped=None) -> tuple[HiP, HiP | None]:
    """(the model the tour runs, an MAE model or None). Without `shipped`: `variant` with
    random weights (seed torch first) and no MAE model; with the shipped weights (a
    `hipcore.pretrained.Pair`): its classifier and MAE model, checked to read `data` as given."""
    if shipped is None:
        return build(variant, data.modalities, num_classes=data.num_classes), None
    mae, classifier = shipped.models()
    for model in (mae, classifier):
        check_fits(model, data.modalities, "this notebook's dataset and ordering")
    return classifier, mae


def attention_title(variant_name: str, shipped=None) -> str:
    if shipped is None:
        return f"First-level attention of an untrained {variant_name} (random weights)"
    return f"First-level attention of the trained {variant_name}, shipped weights {shipped.classifier}"


def write(S, model: HiP, seconds: float, levels: list[dict[str, Any]], *, dataset: str, ordering: str,
          shipped=None) -> None:
    """metrics.csv (parameters, forward seconds), summary.json (the levels), provenance; a tour
    that keeps its committed folder writes nothing."""
    n_params, run_id, seed = sum(p.numel() for p in model.parameters()), f"tour-{S['variant']}", S.seeds[0]
    metrics = [{"run_id": run_id, "seed": seed, "split": "test", "metric": "parameters", "value": n_params},
               {"run_id": run_id, "seed": seed, "split": "test", "metric": "forward_seconds", "value": seconds}]
    regime.write_results(S, metrics=metrics, variant=S["variant"], dataset=dataset, ordering=ordering,
                         weights=shipped and [shipped.classifier, shipped.mae], parameters=n_params, levels=levels,
                         forward_seconds=seconds)
