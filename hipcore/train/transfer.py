"""From an MAE checkpoint to a classifier: which weights carry over.

    'all'               every weight except the (new) classifier or segmentation head
    'positions'         only the positional embeddings (tables and projections), trainable
    'positions_frozen'  the same, then frozen
    'none'              nothing: the control run, from scratch
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..config import modalities_from_dict
from ..errors import HipcoreError
from . import checkpoint

MODES = ("all", "positions", "positions_frozen", "none")


def _names(model: nn.Module, mode: str) -> list[str]:
    own = model.state_dict()
    if mode == "all":
        return [k for k in own if not k.startswith(("classifier.", "dense_head."))]   # the new heads
    return [k for k in own if k.startswith("positions.")]


class TransferMismatchError(HipcoreError, ValueError):
    """The checkpoint was trained on inputs other than this model's (modalities, grid, order,
    position kind): its weights would mean something else here."""


def check_inputs(state: dict[str, Any], model: nn.Module, where: str) -> None:
    """Refuse a checkpoint whose position kind or modalities (names, sizes, channels, grid,
    element order) differ from the model's, naming both sides."""
    theirs = state.get("model_config", {}).get("position")
    if theirs is not None and theirs != model.config.position:
        raise TransferMismatchError(f"{where} has {theirs!r} positions but this model uses "
                                    f"{model.config.position!r}: build it with position={theirs!r}")
    if "modalities" not in state:
        return
    saved = modalities_from_dict(state["modalities"])
    problems = []
    if sorted(saved) != sorted(model.modalities):
        problems.append(f"modalities {sorted(saved)} in the checkpoint, {sorted(model.modalities)} here")
    for name in sorted(set(saved) & set(model.modalities)):
        a, b = saved[name], model.modalities[name]
        for what in ("num_inputs", "channels", "grid"):
            if getattr(a, what) != getattr(b, what):
                problems.append(f"{name} {what} {getattr(a, what)} in the checkpoint, {getattr(b, what)} here")
        if not torch.equal(_order(a), _order(b)):
            problems.append(f"{name} element order {_describe(a)} in the checkpoint, {_describe(b)} here "
                            "(pretrain and fine-tune with the same ordering)")
    if problems:
        raise TransferMismatchError(f"{where} was trained on other inputs than this model's:\n  "
                                    + "\n  ".join(problems))


def _order(spec) -> torch.Tensor:
    return torch.arange(spec.num_inputs) if spec.order is None else spec.order


def _describe(spec) -> str:
    order = _order(spec)
    if torch.equal(order, torch.arange(spec.num_inputs)):
        return "raster (identity)"
    return f"[{', '.join(str(int(v)) for v in order[:4])}, ...]"


def transfer(model: nn.Module, source: str | os.PathLike | dict[str, Any], mode: str,
             name: str | os.PathLike | None = None) -> list[str]:
    """Load the weights that `mode` transfers from `source` (a checkpoint path or its dict,
    called `name` in messages) into `model` (a freshly built HiP); returns the names loaded.
    Raises ValueError, naming both sides, when the checkpoint does not fit the model or was
    trained on other inputs (modalities, grid, element order, position kind)."""
    if mode not in MODES:
        raise ValueError(f"transfer must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return []
    where = str(name or (source if not isinstance(source, dict) else "the checkpoint"))
    state = source if isinstance(source, dict) else checkpoint.load(source)
    weights, own = state["model"], model.state_dict()
    check_inputs(state, model, where)
    names = _names(model, mode)
    missing = [k for k in names if k not in weights]
    extra = [k for k in weights if k not in own and not k.startswith("classifier.")] if mode == "all" else []
    wrong = [f"{k} {tuple(weights[k].shape)} in the checkpoint, {tuple(own[k].shape)} here"
             for k in names if k in weights and weights[k].shape != own[k].shape]
    if missing or extra or wrong:
        def listed(what: str, items: list[str], sep: str = ", ") -> list[str]:
            return [f"{what}: {sep.join(items[:6])}{' ...' if len(items) > 6 else ''}"] if items else []

        lines = (listed("missing from it", missing) + listed("not in this model", extra)
                 + listed("different shapes", wrong, "; "))
        raise ValueError(f"{where} does not fit this model for transfer={mode!r} (same variant, "
                         f"model options, dataset and ordering needed):\n  " + "\n  ".join(lines))
    model.load_state_dict({k: weights[k] for k in names}, strict=False)
    if mode == "positions_frozen":
        model.positions.requires_grad_(False)
    return names
