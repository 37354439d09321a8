"""Checkpoints: atomic writes verified on load, random-number states, models rebuilt from a file.

A checkpoint is a plain dict of tensors, dicts, lists, numbers and strings, so it loads with
`torch.load(path, weights_only=True)` (never anything else):

    format, step, config (TrainConfig dict), model_config (HiPConfig dict), modalities,
    model, optimizer, scheduler, loader (BatchLoader state), rng (one entry per rank), run,
    data (the datasets' fingerprints), source (what init_from was), digest

`digest` is a SHA-256 of everything else in the dict (every tensor's dtype, shape and bytes,
every key and value), computed when it is saved and checked when it is loaded, so flipped
bits inside a tensor, which the archive format does not notice, are refused. A checkpoint
without a digest loads only through the explicit legacy path: `upgrade_legacy(path)` (`python
-m hipcore checkpoint-upgrade PATH`) checks a file written before digests existed (format 1),
says so, and re-saves it with its digest; one of this version's format without its digest was
modified and is refused. Anything unreadable, truncated, foreign or tampered raises
CheckpointError naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import HiPConfig, modalities_from_dict
from ..errors import HipcoreError
from ..files import write_atomic

FORMAT = 2            # 2: always carries its digest; 1: from before digests were required
LEGACY_FORMAT = 1
TRAINING_KEYS = ("step", "config", "model_config", "modalities", "model", "optimizer", "scheduler",
                 "loader", "rng", "run")


class CheckpointError(HipcoreError, ValueError):
    """A checkpoint that cannot be used: missing, unreadable, truncated, foreign or tampered."""


def digest(state: Any) -> str:
    """SHA-256 over a checkpoint's content (its 'digest' entry aside): keys, values, and every
    tensor's dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        elif isinstance(x, dict):
            keys = sorted((k for k in x if x is not state or k != "digest"), key=repr)
            h.update(f"D{len(keys)}".encode())
            for k in keys:
                feed(k)
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"L{len(x)}".encode())
            for v in x:
                feed(v)
        else:
            h.update(f"V{type(x).__name__}:{x!r};".encode())

    feed(state)
    return h.hexdigest()


def save_atomic(state: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save `state` with its digest to a temporary file beside `path`, fsync, then
    os.replace: a reader (or a restart after SIGKILL) sees the old file or the new one."""
    state = {**state, "digest": digest(state)}
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load(path: str | os.PathLike, *, training: bool = False, advice: str | None = None) -> dict[str, Any]:
    """The verified checkpoint at `path`. training=True also requires what a resumption needs.
    CheckpointError (message: the file, what is wrong, then `advice` or the usual remedy)."""
    path = Path(path)
    try:
        return _load(path, training)
    except CheckpointError as error:
        raise CheckpointError(f"{error}\n{advice or remedy(path)}") from None


def upgrade_legacy(path: str | os.PathLike) -> dict[str, Any]:
    """The explicit legacy path: a checkpoint written before digests existed (format 1, no
    digest) is read weights_only, its structure checked, and saved again with its digest.
    Refuses anything else (a digested file needs no upgrade; another format without its digest
    was modified)."""
    path = Path(path)
    state = _load(path, False, legacy=True)
    if "digest" in state:
        raise CheckpointError(f"checkpoint {path} already carries its digest: nothing to upgrade")
    if state.get("format") != LEGACY_FORMAT:
        raise CheckpointError(f"checkpoint {path} is format {state.get('format')!r} without its digest: it was "
                              "modified, not written before digests existed")
    save_atomic(state, path)
    return state


def _load(path: Path, training: bool, legacy: bool = False) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file, so not a checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:   # torch and pickle raise many types for a bad file; their
        # messages can suggest loading without weights_only, which must never be done here
        raise CheckpointError(f"checkpoint {path} is unreadable: truncated, corrupted or not a "
                              "checkpoint at all") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a hipcore training checkpoint (no model weights in it)")
    model = state["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        raise CheckpointError(f"{path} is not a hipcore training checkpoint: its model is a "
                              f"{type(model).__name__}, not a dict of named weight tensors")
    if "digest" not in state and not legacy:
        if state.get("format") == LEGACY_FORMAT:
            raise CheckpointError(f"checkpoint {path} has no digest: it was written before digests existed. "
                                  f"Check and re-save it with one: python -m hipcore checkpoint-upgrade {path}")
        raise CheckpointError(f"checkpoint {path} was modified: its digest is missing")
    if "digest" in state and digest(state) != state["digest"]:
        raise CheckpointError(f"checkpoint {path} is corrupted or was modified: its content does "
                              "not match the digest written with it")
    missing = [k for k in TRAINING_KEYS if k not in state] if training else []
    if missing:
        raise CheckpointError(f"{path} is not a complete hipcore training checkpoint (missing "
                              f"{', '.join(missing)})")
    return state


def intact(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at `path` when it is present and verifies, else None."""
    try:
        return _load(Path(path), True)
    except CheckpointError:
        return None


def remedy(path: Path) -> str:
    """What to do about a bad checkpoint: for a run's last.pt, continue from its best.pt when
    that is intact (the exact commands), else start over."""
    best = path.with_name("best.pt")
    if path.name == "last.pt":
        saved = intact(best)
        if saved is not None:
            last, bad, good = (shlex.quote(str(p)) for p in (path, f"{path}.bad", best))   # safe to paste
            return (f"Its best.pt (step {saved['step']}) is intact: continue from it with\n"
                    f"  mv {last} {bad} && cp {good} {last}\n"
                    "then rerun the same command; or move the run directory away to start over.")
        return f"No intact best.pt beside it: move {path.parent} away (or use another run_dir) to start over."
    return "Pass an intact checkpoint (a run's last.pt or best.pt), written by hipcore."


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

def load_model(path: str | os.PathLike):
    """The HiP stored in a checkpoint, in eval mode on the CPU (for figures and analysis)."""
    from ..model import HiP

    state = load(path)
    model = HiP(HiPConfig.from_dict(state["model_config"]), modalities_from_dict(state["modalities"]))
    model.load_state_dict(state["model"])
    return model.eval()
