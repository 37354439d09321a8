"""Atomic file writes with one recognisable temporary name, the cleanup of the ones a killed
process left behind, a file's SHA-256, and one writer at a time in a folder (`folder_lock`).

Every temporary file of hipcore is named `.<target name>.<pid>.hipcore-tmp` beside its
target, so a cleanup can remove exactly these (and only those whose writer is gone), never
a user's file that happens to look temporary.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import DiskFullError, HipcoreError

TEMP_SUFFIX = ".hipcore-tmp"
_TEMP = re.compile(r"^\..+\.(\d+)" + re.escape(TEMP_SUFFIX) + r"$")


def temp_path(path: str | os.PathLike, tag: str = "") -> Path:
    """The temporary name this process writes `path` under (`tag` tells several apart)."""
    path = Path(path)
    return path.with_name(f".{path.name}{tag}.{os.getpid()}{TEMP_SUFFIX}")


FULL = (errno.ENOSPC, errno.EDQUOT)
LOW_SPACE = 1 << 20        # bytes: a writer that failed with less than this free ran out of space


def disk_full(error: BaseException, folder: str | os.PathLike) -> bool:
    """Whether `error` (or one it was raised from) says the disk or quota is full, or is a
    writer's failure (torch.save's 'file write failed') on a folder with almost no space left."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, (OSError, RuntimeError)):
        try:
            return shutil.disk_usage(folder).free < LOW_SPACE
        except OSError:
            return False
    return False


def no_space(path: str | os.PathLike, what: str = "") -> DiskFullError:
    """The one-line error for a write to `path` that found its disk full."""
    path = Path(path)
    return DiskFullError(f"no space left on {path.parent} (writing {what or path.name}); nothing was "
                         f"left half-written: free some space and run again")


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """write(tmp) to the temporary name, fsync it, then rename it onto `path`: a reader, or a
    restart after SIGKILL, sees the old file or the new one, never half of one. A full disk is
    a DiskFullError naming the folder; the old file, if any, stays."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        if disk_full(error, path.parent):
            raise no_space(path) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def write_csv_atomic(path: str | os.PathLike, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """A CSV of `rows` (dicts; keys beyond `fields` ignored, missing ones left empty) with a
    header of `fields`, written whole or not at all (write_text_atomic); returns its path."""
    import csv
    import io

    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())
    return Path(path)


def read_csv_rows(path: str | os.PathLike, needs: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV as dicts of text; a ValueError naming the file when a column of `needs`
    is missing."""
    import csv

    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in needs if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        return list(reader)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                 # another user's live process
        return True
    return True


def clean_temps(folder: str | os.PathLike, *, only_dead: bool = True) -> list[Path]:
    """Remove hipcore's temporary files in `folder` (not below it); with only_dead, those whose
    writing process no longer exists on this machine. Returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMP.match(path.name)
        if match and path.is_file() and not (only_dead and _alive(int(match.group(1)))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- one writer at a time ----

class FolderBusy(HipcoreError, OSError):
    """Another process holds the folder's lock for longer than this one would wait."""


LOCK_WAIT_S = 120.0       # an export or a signing takes seconds: wait for the other, then refuse
LOCK_POLL_S = 0.2


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str, wait_s: float | None = None) -> Iterator[Path]:
    """Hold an exclusive OS lock (flock) on `folder` itself while the block runs: a second
    writer (`what`, e.g. 'weights export') waits for it, saying so once on stderr, and after
    `wait_s` seconds (default LOCK_WAIT_S) is refused with one line. The kernel drops the lock
    when its process ends, however it ends, and nothing is left in the folder. Yields the
    folder, resolved."""
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    folder = Path(folder).resolve()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline, said = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            if time.monotonic() >= deadline:
                raise FolderBusy(f"{folder} is being written by another {what} (waited {wait_s:.0f} s): run "
                                 "again when it has finished") from None
            if not said:
                print(f"waiting up to {wait_s:.0f} s for another {what} writing {folder}", file=sys.stderr, flush=True)
                said = True
            time.sleep(LOCK_POLL_S)
        yield folder
    finally:
        os.close(fd)                 # releases the lock


def inside(folder: str | os.PathLike, name: str) -> Path | None:
    """`folder`/`name` resolved, when `name` is a plain file name there (no folder part, no
    '..', not a link leading out of the folder); None otherwise."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        return None
    root = Path(folder).resolve()
    path = (root / name).resolve()
    return path if path.parent == root else None


def read_json(path: str | os.PathLike, error: type[Exception] = ValueError, hint: str = "") -> Any:
    """The JSON in `path`; `error` naming the file (and `hint`, what to do) when it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except ValueError as bad:                 # UnicodeDecodeError and JSONDecodeError alike
        raise error(f"{path}: not JSON ({bad}){hint}") from None
