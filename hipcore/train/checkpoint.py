"""Checkpoints: atomic writes, random-number states, and models rebuilt from a file.

A checkpoint is a plain dict of tensors, dicts, lists, numbers and strings, so it loads with
`torch.load(path, weights_only=True)`:

    format, step, epoch, elapsed, best, best_step, metrics,
    config (TrainConfig dict), model_config (HiPConfig dict), modalities,
    model, optimizer, scheduler, loader (BatchLoader state), rng (one entry per rank), running
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import HiPConfig, ModalitySpec

FORMAT = 1


def save_atomic(state: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside `path`, fsync, then os.replace: a reader (or a
    restart after SIGKILL) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a hipcore training checkpoint")
    return state


# ---- random-number states as tensors and lists ----

def rng_state() -> dict[str, Any]:
    """The torch, CUDA, numpy and python generators' states, weights_only-safe."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---- models ----

def modalities_to_dict(modalities: dict[str, ModalitySpec]) -> dict[str, Any]:
    return {n: {"num_inputs": s.num_inputs, "channels": s.channels, "grid": list(s.grid),
                "order": s.order} for n, s in modalities.items()}


def modalities_from_dict(d: dict[str, Any]) -> dict[str, ModalitySpec]:
    return {n: ModalitySpec(s["num_inputs"], s["channels"], tuple(s["grid"]), s["order"])
            for n, s in d.items()}


def load_model(path: str | os.PathLike):
    """The HiP stored in a checkpoint, in eval mode on the CPU (for figures and analysis)."""
    from ..model import HiP

    state = load(path)
    model = HiP(HiPConfig.from_dict(state["model_config"]), modalities_from_dict(state["modalities"]))
    model.load_state_dict(state["model"])
    return model.eval()
