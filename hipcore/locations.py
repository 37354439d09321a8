"""Where the notebooks, the run cache and the results live: a working checkout, never the
installed package.

`home()` is, in order:
  1. $HIPCORE_HOME, when set (it must hold `notebooks/`);
  2. the checkout around the current directory: the nearest folder at or above it that holds
     `notebooks/` and a `pyproject.toml` of the project `hipcore`;
  3. the checkout the package was imported from (an editable install, or PYTHONPATH pointing
     into a checkout), recognised the same way.
A copy installed into site-packages is never a home: it has no notebooks, and runs written
beside it would be lost with the next install. Without a home, `HomeNotFound` says how to
name one. Below the home: `notebooks/`, `runs/` (the notebooks' run cache; $HIPCORE_RUNS puts
it elsewhere) and `results/`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from .errors import HipcoreError

HOME_ENV = "HIPCORE_HOME"
RUNS_ENV = "HIPCORE_RUNS"
PACKAGE_DIR = Path(__file__).resolve().parent


class HomeNotFound(HipcoreError):
    """Neither $HIPCORE_HOME nor a checkout of hipcore around the current directory."""


def is_checkout(folder: Path) -> bool:
    """A folder holding notebooks/ and the pyproject.toml of the project named hipcore."""
    pyproject = folder / "pyproject.toml"
    if not ((folder / "notebooks").is_dir() and pyproject.is_file()):
        return False
    return re.search(r'^name\s*=\s*"hipcore"\s*$', pyproject.read_text(errors="replace"), re.M) is not None


def find_checkout(start: Path) -> Path | None:
    """The nearest checkout at or above `start`, or None."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if is_checkout(folder):
            return folder
    return None


def home() -> Path:
    """The folder holding notebooks/, runs/ and results/ (see the module's docstring)."""
    named = os.environ.get(HOME_ENV)
    if named:
        folder = Path(named).expanduser().resolve()
        if not (folder / "notebooks").is_dir():
            raise HomeNotFound(f"{HOME_ENV}={named} holds no notebooks/ folder; point it at a "
                               f"checkout of hipcore")
        return folder
    for start in (Path.cwd(), PACKAGE_DIR.parent):
        found = find_checkout(start)
        if found is not None:
            return found
    raise HomeNotFound(f"no checkout of hipcore around {Path.cwd()}: run from inside a checkout "
                       f"(git clone the repository) or set {HOME_ENV} to one")


def resolve_relative(path: str | Path) -> Path:
    """A path as `provenance.relative` recorded it: a relative one is read from the checkout
    (from the current folder without one), an absolute one as given."""
    path = Path(path)
    if path.is_absolute():
        return path
    try:
        return home() / path
    except HomeNotFound:
        return path.resolve()


def notebooks_dir() -> Path:
    return home() / "notebooks"


def runs_dir() -> Path:
    """The notebooks' run cache: $HIPCORE_RUNS, else <home>/runs."""
    named = os.environ.get(RUNS_ENV)
    return Path(named).expanduser().resolve() if named else home() / "runs"


def results_dir() -> Path:
    return home() / "results"


# Set in a Binder session's environment by BinderHub.
BINDER_VARIABLES = ("BINDER_LAUNCH_HOST", "BINDER_REPO_URL", "BINDER_REQUEST", "BINDER_SERVICE_HOST")


def binder_detected(environ: Mapping[str, str] | None = None) -> str | None:
    """The first of BinderHub's variables set in the environment, or None off Binder."""
    environ = os.environ if environ is None else environ
    return next((name for name in BINDER_VARIABLES if environ.get(name)), None)
