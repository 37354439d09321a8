"""From an MAE checkpoint to a classifier: which weights carry over.

    'all'               every weight except the (new) classifier head
    'positions'         only the positional embeddings (tables and projections), trainable
    'positions_frozen'  the same, then frozen
    'none'              nothing: the control run, from scratch
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from . import checkpoint

MODES = ("all", "positions", "positions_frozen", "none")


def _names(model: nn.Module, mode: str) -> list[str]:
    own = model.state_dict()
    if mode == "all":
        return [k for k in own if not k.startswith("classifier.")]
    return [k for k in own if k.startswith("positions.")]


def transfer(model: nn.Module, source: str | os.PathLike | dict[str, Any], mode: str) -> list[str]:
    """Load the weights that `mode` transfers from `source` (a checkpoint path or its dict)
    into `model` (a freshly built HiP); returns the names loaded. Raises ValueError, naming
    the parameters, when the checkpoint does not fit the model."""
    if mode not in MODES:
        raise ValueError(f"transfer must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return []
    where = source if not isinstance(source, dict) else "the checkpoint"
    state = source if isinstance(source, dict) else checkpoint.load(source)
    weights, own = state["model"], model.state_dict()
    theirs = state.get("model_config", {}).get("position")
    if theirs is not None and theirs != model.config.position:
        raise ValueError(f"{where} has {theirs!r} positions but this model uses "
                         f"{model.config.position!r}: build it with position={theirs!r}")
    names = _names(model, mode)
    missing = [k for k in names if k not in weights]
    extra = [k for k in weights if k not in own and not k.startswith("classifier.")] if mode == "all" else []
    wrong = [f"{k} {tuple(weights[k].shape)} in the checkpoint, {tuple(own[k].shape)} here"
             for k in names if k in weights and weights[k].shape != own[k].shape]
    if missing or extra or wrong:
        lines = ([f"missing from it: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}"] if missing else []) + \
                ([f"not in this model: {', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}"] if extra else []) + \
                ([f"different shapes: {'; '.join(wrong[:6])}{' ...' if len(wrong) > 6 else ''}"] if wrong else [])
        raise ValueError(f"{where} does not fit this model for transfer={mode!r} (same variant, "
                         f"model options, dataset and ordering needed):\n  " + "\n  ".join(lines))
    model.load_state_dict({k: weights[k] for k in names}, strict=False)
    if mode == "positions_frozen":
        model.positions.requires_grad_(False)
    return names
