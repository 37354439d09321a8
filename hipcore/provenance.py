"""Where a result came from: the code (git commit, dirty or not, a fingerprint of the training
code), the packages, the machine, and how long each notebook took.

- `code_fingerprint()`: a hash of the source of everything that trains (hipcore/model,
  hipcore/train, hipcore/data, hipcore/config.py, hipcore/device.py). The notebooks' run cache keys its run
  folders by it, so a run trained by other code is never reused.
- `collect(...)`: the record written as `provenance.json` into every results folder and
  into `results/executed/<profile>/` by `reproduce` (with every notebook's wall time).
- `hipcore.summary` says it in SUMMARY.md and the README, generated from those records,
  never typed.

Paths in a record are relative to the repository root.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from . import device

REPO = Path(__file__).resolve().parent.parent
TRAINING_CODE = ("hipcore/model", "hipcore/train", "hipcore/data", "hipcore/config.py", "hipcore/device.py")
PACKAGES = ("torch", "numpy", "matplotlib", "papermill", "nbformat")
FILE = "provenance.json"


def code_fingerprint(root: Path = REPO, parts: tuple[str, ...] = TRAINING_CODE) -> str:
    """sha256 (first 12 hex digits) of the training code's .py files: their paths and bytes."""
    digest = hashlib.sha256()
    for part in parts:
        path = root / part
        if not path.exists():
            raise FileNotFoundError(f"training code {part} is missing under {root}")
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


WRITTEN_BY_RUNS = ("results", "README.md")


def git_state(root: Path = REPO) -> dict[str, Any]:
    """{'commit': sha or None, 'dirty': True/False/None}: None when this is not a git checkout;
    dirty when tracked files other than those runs write (WRITTEN_BY_RUNS) differ from HEAD."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    # What runs write (results/, the README's generated blocks) does not make the code dirty.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":!{p}" for p in WRITTEN_BY_RUNS)) \
        if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


@lru_cache(maxsize=1)
def packages() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine(settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`device.machine()` and the precision the runs used (settings['precision'], 'auto' when
    the settings name none, as resolved on this machine)."""
    precision = device.resolve((settings or {}).get("precision") or "auto", device.pick_device("auto"))
    return {**device.machine(), "precision": str(precision)}


def collect(settings: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The whole record: git, training-code fingerprint, packages, machine, plus `extra`."""
    return {**git_state(), "code_fingerprint": code_fingerprint(), "packages": packages(),
            "machine": machine(settings), "written": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **extra}


def write(folder: str | Path, settings: Mapping[str, Any] | None = None, **extra: Any) -> Path:
    """collect(...) as `<folder>/provenance.json`."""
    path = Path(folder) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collect(settings, **extra), indent=2, default=str) + "\n")
    return path


def command(subcommand: str, **options: Any) -> str:
    """The `python -m hipcore` command line that wrote a folder, for its provenance: each option
    given as --name value (a list space-joined, True a bare flag; None, False and [] left out),
    less --out, which is the folder itself."""
    words = [f"python -m hipcore {subcommand}"]
    for name, value in options.items():
        if isinstance(value, (list, tuple)):
            value = " ".join(map(str, value)) or None
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        words.append(flag if value is True else f"{flag} {value}")
    return " ".join(words)


def relative(path: str | Path, root: Path | None = None) -> str:
    """A path relative to the checkout (`hipcore.locations.home`, else the package's parent
    folder) when it lies inside it (as given otherwise)."""
    if root is None:
        from .locations import HomeNotFound, home

        try:
            root = home()
        except HomeNotFound:
            root = REPO
    resolved = Path(path).resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(path)


# ---- reading a record ----

def read(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / FILE
    return json.loads(path.read_text()) if path.exists() else None


def reproduce_record(folder: str | Path, notebook_seconds: Mapping[str, float], profile: str) -> Path:
    """What `reproduce` leaves in results/executed/<profile>/: provenance plus every notebook's time."""
    return write(folder, None, profile=profile, notebook_seconds=dict(notebook_seconds),
                 total_seconds=sum(notebook_seconds.values()), command=command("reproduce", profile=profile),
                 python=sys.version.split()[0])
