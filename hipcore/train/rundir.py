"""A run directory: one writer at a time, known by what it is rather than how it is spelled.

    with claim(cfg.resolved_run_dir) as run_dir:     # refuses '', a file, a read-only folder,
        ...                                          # and a folder another live run holds

The claim is an OS lock (fcntl.flock) on `<run_dir>/.hipcore-lock`, held by the open file for
the whole run: the kernel drops it when the process ends, however it ends, so the lock of a
killed run never blocks. The file records its holder (pid, host, start time) for the refusal
message. While the lock is held, temporary files left in the directory by a killed writer
are removed (only hipcore's own names).

A resumed run is compared with its checkpoint field by field, but where the run directory
lives (`r`, `./r`, `r/`, an absolute path, or a moved folder) is not part of what a run is,
and a fine-tuning run's `init_from` is compared by the identity of the pretraining checkpoint
(its run_id and content digest, recorded in the checkpoint), not by its path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import HipcoreError
from ..files import clean_temps
from .config import TrainConfig

LOCK_NAME = ".hipcore-lock"
# Temporary names written by earlier versions (cleaned as well, inside a locked run directory).
LEGACY_TEMPS = (".last.pt.tmp*", ".best.pt.tmp*", ".metrics.csv.tmp", ".timing.csv.tmp",
                ".config.json.tmp", ".versions.json.tmp")


class RunDirError(HipcoreError, ValueError):
    """The run directory cannot be used: unusable path, held by another run, or inconsistent."""


def check_path(run_dir: str | os.PathLike | None) -> Path:
    """The run directory as an absolute path; refuses an empty name and a non-directory."""
    if run_dir is None or not str(run_dir).strip():
        raise RunDirError(f"run_dir is empty ({str(run_dir)!r}): name a folder for the run's files "
                          "(an unset shell variable gives this)")
    path = Path(run_dir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run_dir {run_dir} is a file, not a folder: name a folder for the run's files")
    return path


@contextlib.contextmanager
def claim(run_dir: str | os.PathLike | None, enabled: bool = True, wait_s: float = 0.0) -> Iterator[Path]:
    """Create and lock the run directory for this process (enabled=False: only check the path,
    for ranks other than 0); yields its absolute path. A directory another process holds is a
    RunDirError at once, or, with wait_s > 0, after waiting up to wait_s seconds for it (saying
    so once on stderr): two notebooks sharing a run cache then train a shared run once, the
    second resuming the first's finished run."""
    path = check_path(run_dir)
    if not enabled:
        yield path
        return
    lock = path / LOCK_NAME
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Never through a link: a link planted at the lock's name would have the run truncate
        # and overwrite whatever file it points to.
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        handle = os.fdopen(fd, "a+")
    except OSError as error:
        if error.errno == errno.ELOOP or lock.is_symlink():
            raise RunDirError(f"{lock} is a symbolic link, not this run's lock file: remove it "
                              "(hipcore never creates one) and rerun") from None
        raise RunDirError(f"cannot write to run_dir {path} ({error.strerror}): make it writable, "
                          "or copy the run to a folder you can write and rerun there") from None
    with handle:
        _lock(handle, path, wait_s)
        _HELD.add(handle.fileno())
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}) + "\n")
        handle.flush()
        clean_temps(path, only_dead=False)                 # no other writer can be here now
        for pattern in LEGACY_TEMPS:
            for stale in path.glob(pattern):
                stale.unlink(missing_ok=True)
        try:
            yield path
        finally:
            _HELD.discard(handle.fileno())


POLL_S = 0.5


# ---- a run's lock belongs to the process that claimed it, never to its children ----

_HELD: set[int] = set()          # descriptors of the run locks this process holds


def _drop_held_locks() -> None:
    """In a forked child (a decoding pool, a data worker): point each held lock's descriptor
    at /dev/null, so the child shares no reference to the lock and an orphan that outlives a
    killed parent never keeps the run locked. The parent's lock is untouched."""
    if not _HELD:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for fd in _HELD:
            os.dup2(null, fd)
    finally:
        os.close(null)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_held_locks)


def _lock(handle, path: Path, wait_s: float) -> None:
    """flock the lock file, retrying for up to wait_s seconds while another process holds it."""
    deadline, said = time.monotonic() + wait_s, False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        handle.seek(0)
        holder = _holder(handle.read())
        if time.monotonic() >= deadline:
            waited = f" (waited {wait_s:.0f} s)" if wait_s > 0 else ""
            raise RunDirError(f"run_dir {path} is in use by another run ({holder}){waited}; "
                              "wait for it to finish, or use another run_dir")
        if not said:
            print(f"waiting up to {wait_s:.0f} s for run_dir {path}, in use by another run ({holder})",
                  file=sys.stderr, flush=True)
            said = True
        time.sleep(POLL_S)


def _holder(text: str) -> str:
    try:
        h = json.loads(text)
        return f"pid {h['pid']} on host {h['host']}, started {h['started']}"
    except (ValueError, KeyError, TypeError):
        return "its holder has not recorded itself yet"


# ---- what a run is ----

def config_differences(cfg: TrainConfig, saved: Mapping[str, Any]) -> list[str]:
    """cfg.differences(saved) without the run directory's spelling or place, and with init_from
    compared only as set or not (its identity is checked against the checkpoint's source)."""
    other = dict(saved)
    other["run_dir"] = cfg.run_dir
    if (other.get("init_from") is None) == (cfg.init_from is None):
        other["init_from"] = cfg.init_from
    return cfg.differences(other)


def source_identity(state: Mapping[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """What a fine-tuning run starts from: the pretraining run's id and the checkpoint's digest
    (its path is kept for messages only)."""
    from .checkpoint import digest

    return {"run_id": state.get("run_id") or _run_id(state.get("config")), "step": state.get("step"),
            "digest": state.get("digest") or digest(state), "path": str(path)}


def _run_id(config: Mapping[str, Any] | None) -> str | None:
    try:
        return TrainConfig.from_dict(config).run_id
    except (TypeError, ValueError):          # none, or written with other fields
        return None


def same_source(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.get("run_id") == b.get("run_id") and a.get("digest") == b.get("digest")


def describe_source(s: Mapping[str, Any]) -> str:
    return f"run {s.get('run_id')} step {s.get('step')} digest {str(s.get('digest'))[:12]} ({s.get('path')})"
