"""Fingerprints: short digests that say what a dataset's content is, not where it lies.

    files_fingerprint([p1, p2])          names, sizes and SHA-256 contents of files
    arrays_fingerprint(points, labels)   dtype, shape and bytes of in-memory arrays

A file's SHA-256 is cached (in memory and in the user cache's fingerprints.json) under its
resolved path, size and modification time, so fingerprinting the same unchanged files again
costs a stat each. Every Dataset carries `fingerprint` (its split's), and
`registry.dataset_fingerprint(name)` gives both splits' without loading them; a run records it, a
resumption on other data is refused, and the notebooks' run cache names its runs with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hipcore.data.base import cache_root
from hipcore.files import sha256_file, write_text_atomic

LENGTH = 16                     # hex digits kept: 64 bits


def _short(h) -> str:
    return h.hexdigest()[:LENGTH]


_memory: dict[str, tuple[int, int, str]] = {}


def _cache_file() -> Path:
    return cache_root() / "fingerprints.json"


def file_digest(path: str | os.PathLike, cached: bool = True) -> str:
    """SHA-256 of a file's content, cached by (resolved path, size, mtime, ctime) unless
    cached=False (then read afresh: the full-content check)."""
    path = Path(path).resolve()
    if not cached:
        return sha256_file(path)
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    key = str(path)
    if key in _memory and _memory[key][:3] == stamp:
        return _memory[key][3]
    try:
        stored = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        stored = {}
    entry = stored.get(key) if isinstance(stored, dict) else None
    if isinstance(entry, list) and len(entry) == 4 and tuple(entry[:3]) == stamp:
        digest = entry[3]
    else:
        digest = sha256_file(path)
        stored = stored if isinstance(stored, dict) else {}
        stored[key] = [*stamp, digest]
        try:
            _cache_file().parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(_cache_file(), json.dumps(stored))
        except OSError:                      # a read-only cache only costs the next hashing
            pass
    _memory[key] = (*stamp, digest)
    return digest


def files_fingerprint(paths: Iterable[str | os.PathLike], names: Iterable[str] | None = None) -> str:
    """Digest of (name, size, content) of each file; names default to the base names, so the
    same files in another folder give the same fingerprint."""
    paths = [Path(p) for p in paths]
    names = list(names) if names is not None else [p.name for p in paths]
    h = hashlib.sha256()
    for name, path in zip(names, paths):
        h.update(json.dumps([name, path.stat().st_size, file_digest(path)]).encode())
    return _short(h)


def listing_fingerprint(items: Any) -> str:
    """Digest of any JSON-able description (a file list with sizes and times, options)."""
    return _short(hashlib.sha256(json.dumps(items, sort_keys=True).encode()))


def arrays_fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return _short(h)
