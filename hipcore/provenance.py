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
import os
import platform
import re
import subprocess
import sys
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from . import device
from .digests import sign
from .errors import HipcoreError
from .files import read_json, write_text_atomic

REPO = Path(__file__).resolve().parent.parent
TRAINING_CODE = ("hipcore/model", "hipcore/train", "hipcore/data", "hipcore/config.py", "hipcore/device.py")
PACKAGES = ("torch", "numpy", "matplotlib", "papermill", "nbformat")
FILE = "provenance.json"
RUNS = "runs.json"      # a results folder's runs, one row each as experiments.common.run_arm returned it:
                        # what a reading notebook starts from, and the precision each run recorded


# Everything whose code makes a result: the package and the notebooks. A results folder is
# "verified" when these files, as they ran, are byte for byte those of the commit it names.
RESULT_CODE = ("hipcore", "notebooks")
SOURCE_SUFFIXES = (".py", ".ipynb")
COMMIT_ENV = "HIPCORE_COMMIT"                # the commit a copied tree was made from
FINGERPRINT_ENV = "HIPCORE_CODE_FINGERPRINT"  # that commit's result_fingerprint, computed where git has it


def _digest(files: list[tuple[str, bytes]]) -> str:
    """sha256 (first 12 hex digits) of (path, bytes) pairs, in path order."""
    digest = hashlib.sha256()
    for name, data in sorted(files, key=lambda f: PurePosixPath(f[0]).parts):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:12]


def _tree_files(root: Path, parts: tuple[str, ...], suffixes: tuple[str, ...],
                what: str | None = None) -> list[tuple[str, bytes]]:
    """(path, bytes) of the files of `parts` under root; a missing part is an error when `what`
    names it, else it contributes nothing (an installed package has no notebooks/)."""
    files = []
    for part in parts:
        path = root / part
        if not path.exists():
            if what is None:
                continue
            raise FileNotFoundError(f"{what} {part} is missing under {root}")
        found = [path] if path.is_file() else [f for f in path.rglob("*") if f.suffix in suffixes and f.is_file()]
        files += [(f.relative_to(root).as_posix(), f.read_bytes()) for f in found if "__pycache__" not in f.parts]
    return files


def code_fingerprint(root: Path = REPO, parts: tuple[str, ...] = TRAINING_CODE) -> str:
    """sha256 (first 12 hex digits) of the training code's .py files: their paths and bytes."""
    return _digest(_tree_files(root, parts, (".py",), "training code"))


def imported_training_code(root: Path = REPO, parts: tuple[str, ...] = TRAINING_CODE) -> list[str]:
    """The training code's files (paths under root) that this process has imported: the code a
    run in it ran, and no other."""
    found = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        try:
            name = Path(file).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
        if any(name == part or name.startswith(part + "/") for part in parts):
            found.add(name)
    return sorted(found)


def file_digests(names: list[str], root: Path = REPO) -> dict[str, str]:
    """{path: sha256 (first 12 hex digits) of its bytes} of the named files; 'missing' for one
    that is not there."""
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest()[:12] if (root / n).is_file() else "missing"
            for n in names}


def result_fingerprint(root: Path = REPO) -> str:
    """The fingerprint of every file whose code makes a result (RESULT_CODE) in this tree (an
    installed copy, without notebooks/, never equals a commit's)."""
    return _digest(_tree_files(root, RESULT_CODE, SOURCE_SUFFIXES))


def commit_fingerprint(commit: str, root: Path = REPO) -> str | None:
    """result_fingerprint of `commit`'s files, read from git's objects (None where this
    checkout's git does not hold that commit)."""
    listing = _git(root, "ls-tree", "-r", "-z", "--name-only", commit, "--", *RESULT_CODE)
    if listing is None:
        return None
    files = []
    for name in filter(None, listing.split("\0")):
        if name.endswith(SOURCE_SUFFIXES):
            data = _git_bytes(root, "cat-file", "blob", f"{commit}:{name}")
            if data is None:
                return None
            files.append((name, data))
    return _digest(files)


def _git_bytes(root: Path, *args: str) -> bytes | None:
    try:
        # --no-optional-locks: reading the state never takes the checkout's .git/index.lock
        # (a `git status` refreshing the index would block a user's git command meanwhile)
        done = subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, timeout=60,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git(root: Path, *args: str) -> str | None:
    out = _git_bytes(root, *args)
    return None if out is None else out.decode().strip()


WRITTEN_BY_RUNS = ("results", "README.md")


def git_state(root: Path = REPO) -> dict[str, Any]:
    """{'commit': sha or None, 'dirty': True/False/None}: None when this is not a git checkout;
    dirty when tracked files other than those runs write (WRITTEN_BY_RUNS) differ from HEAD."""
    commit = _git(root, "rev-parse", "HEAD")
    # What runs write (results/, the README's generated blocks) does not make the code dirty.
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".",
                  *(f":!{p}" for p in WRITTEN_BY_RUNS)) if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def commit_paths(paths: list[str | Path], message: str, env: Mapping[str, str] | None = None) -> None:
    """Stage `paths` (new, changed and deleted files below them; git pathspecs, so an entry
    ':(exclude)<path>' leaves that path out) and commit them alone, with `message`, in the
    repository that holds the first; CalledProcessError when git fails."""
    where = Path(paths[0])
    where = where if where.is_dir() else where.parent
    names = [str(p) for p in paths]
    subprocess.run(["git", "add", "-A", "--", *names], cwd=where, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", message, "--", *names], cwd=where, check=True, env=env)


def code_identity(root: Path = REPO, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Which commit's code made a result, and whether that is verified.

    A tree copied to another machine (a GPU) may carry stale git metadata: name its commit in
    $HIPCORE_COMMIT (and, where that machine's git lacks the commit, its fingerprint from
    `python -m hipcore provenance-env` in $HIPCORE_CODE_FINGERPRINT). The result is verified
    when the fingerprint of the code that ran (`result_fingerprint`) equals that commit's, read
    from git or given; else it names the commit it ran at, and says why it is unverified. In a
    checkout, HEAD with a clean tree is verified by git itself.

    -> {'commit', 'dirty', 'code_fingerprint' (training code), 'result_fingerprint',
        'verified': bool, 'verified_by': 'git status' | 'git objects' | 'given fingerprint' | None,
        'unverified': reason or None}"""
    environ = os.environ if environ is None else environ
    check_environment(root, environ)
    state = git_state(root)
    ran = result_fingerprint(root)
    out = {**state, "code_fingerprint": code_fingerprint(root), "result_fingerprint": ran,
           "verified": False, "verified_by": None, "unverified": None}
    named = (environ.get(COMMIT_ENV) or "").strip()
    if not named:
        if state["commit"] and state["dirty"] is False:
            return {**out, "verified": True, "verified_by": "git status"}
        out["unverified"] = ("not a git checkout and no $HIPCORE_COMMIT" if not state["commit"]
                             else "the tree differs from its commit (dirty)")
        return out
    expected = commit_fingerprint(named, root) if on_history(named, root) else None
    how = "git objects"
    if expected is None:
        expected, how = (environ.get(FINGERPRINT_ENV) or "").strip() or None, "given fingerprint"
    out.update(commit=named, dirty=None)
    if expected is None:
        out["unverified"] = (f"$HIPCORE_COMMIT={named} is not in this checkout's git and no "
                             f"${FINGERPRINT_ENV} was given")
    elif expected != ran:
        out["unverified"] = f"the code that ran ({ran}) is not {named}'s ({expected})"
    else:
        out.update(dirty=False, verified=True, verified_by=how)
    return out


COMMIT = re.compile(r"[0-9a-f]{40}")
FINGERPRINT = re.compile(r"[0-9a-f]{12}")        # _digest's form


class ProvenanceError(HipcoreError, ValueError):
    """$HIPCORE_COMMIT or $HIPCORE_CODE_FINGERPRINT holds what no commit or fingerprint is."""


def check_environment(root: Path = REPO, environ: Mapping[str, str] | None = None) -> None:
    """Refuse, naming the variable, a $HIPCORE_COMMIT that is not a full 40-hex commit id or
    that this checkout's git holds off its history (not an ancestor of HEAD), and a
    $HIPCORE_CODE_FINGERPRINT that is not 12 hex digits: what is recorded as a verified
    commit is one, never 'HEAD' or text that lands in SUMMARY's provenance section."""
    environ = os.environ if environ is None else environ
    named = environ.get(COMMIT_ENV)
    if named is not None and named.strip():
        if not COMMIT.fullmatch(named.strip()):
            raise ProvenanceError(f"${COMMIT_ENV} must be a full commit id (40 hex digits, as `python -m hipcore "
                                  f"provenance-env` prints it), got {named[:60]!r}")
        if on_history(named.strip(), root) is False:
            raise ProvenanceError(f"${COMMIT_ENV}={named.strip()} is not on this checkout's history (no branch "
                                  "or tag holds it): name the commit the code was copied from")
    given = environ.get(FINGERPRINT_ENV)
    if given is not None and given.strip() and not FINGERPRINT.fullmatch(given.strip()):
        raise ProvenanceError(f"${FINGERPRINT_ENV} must be a code fingerprint (12 hex digits, as `python -m "
                              f"hipcore provenance-env` prints it), got {given[:60]!r}")


def on_history(commit: str, root: Path = REPO) -> bool | None:
    """Whether this checkout's git holds `commit` on its history: an ancestor of HEAD, or of
    another branch or tag; None where its git does not hold the commit at all (a copied tree:
    its fingerprint then decides)."""
    if _git_bytes(root, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        return None
    if _git_bytes(root, "merge-base", "--is-ancestor", commit, "HEAD") is not None:
        return True
    return bool(_git(root, "for-each-ref", "--count=1", "--contains", commit, "refs/heads", "refs/tags"))


@lru_cache(maxsize=1)
def packages() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine(settings: Mapping[str, Any] | None = None, folder: str | Path | None = None) -> dict[str, Any]:
    """`device.machine()` and the precision the runs computed in, as they recorded it."""
    return {**device.machine(), "precision": recorded_precision(settings, folder)}


def recorded_precision(settings: Mapping[str, Any] | None = None, folder: str | Path | None = None) -> str:
    """The precision the runs recorded: the 'precision' of the rows of `folder`'s runs.json (each
    from its run's config.json; several joined by '+'), else settings['precision'] when it names
    one. Only where neither records it (settings 'auto', no runs) is device.resolve asked,
    whose answer on this machine is the one every run here was given."""
    path = Path(folder) / RUNS if folder is not None else None
    if path is not None and path.is_file():
        rows = read_json(path)
        found = sorted({r["precision"] for r in rows if isinstance(r, dict) and r.get("precision")})
        if found:
            return "+".join(found)
    requested = (settings or {}).get("precision") or "auto"
    return requested if requested != "auto" else device.resolve("auto", device.pick_device("auto"))


def collect(settings: Mapping[str, Any] | None = None, folder: str | Path | None = None,
            **extra: Any) -> dict[str, Any]:
    """The whole record: git, training-code fingerprint, packages, machine, plus `extra`; the
    precision is what the runs of `folder` recorded (`recorded_precision`)."""
    return {**code_identity(), "packages": packages(),
            "machine": machine(settings, folder), "written": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **extra}


def write(folder: str | Path, settings: Mapping[str, Any] | None = None, **extra: Any) -> Path:
    """collect(...) as `<folder>/provenance.json`, then the folder's SHA256SUMS (`digests.sign`)."""
    path = Path(folder) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(collect(settings, folder, **extra), indent=2, default=str) + "\n")
    sign(path.parent)                 # written last: the folder's files as its run left them (hipcore.digests)
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
    """<folder>/provenance.json (None without one); a ValueError naming it when it is no record."""
    path = Path(folder) / FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a provenance record (not JSON: {error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a provenance record (a JSON {type(record).__name__}, not an object)")
    return record


def reproduce_record(folder: str | Path, notebook_seconds: Mapping[str, float], profile: str,
                     parts: list[Mapping[str, Any]], missing: list[str]) -> Path:
    """What `reproduce` leaves in results/executed/<profile>/: provenance plus every notebook's
    time, the parts it ran in (each: its notebooks, its machine, and how many runs the run cache
    held when it started: 0, every run was trained) and the notebooks still to run. The
    top-level cached_runs_at_start sums the parts' (0 only when every part started empty)."""
    cached = [p.get("cached_runs_at_start") for p in parts]
    return write(folder, None, profile=profile, notebook_seconds=dict(notebook_seconds),
                 total_seconds=sum(notebook_seconds.values()), command=command("reproduce", profile=profile),
                 python=sys.version.split()[0], parts=[dict(p) for p in parts], missing=list(missing),
                 cached_runs_at_start=None if None in cached else sum(cached))


def cmd_provenance_env(args) -> int:
    """Prints HIPCORE_COMMIT=<HEAD> HIPCORE_CODE_FINGERPRINT=<its fingerprint> for a clean
    checkout. Set them before a run on a machine whose copy of the tree carries other git
    metadata (a GPU machine): its results are then recorded as verified when the code that
    ran is that commit's."""
    state = git_state()
    if not state["commit"]:
        raise ValueError("provenance-env needs a git checkout: it names HEAD for a copy of this tree")
    if state["dirty"]:
        raise ValueError("the tree differs from HEAD: commit first, so the copy runs a commit's code")
    print(f"{COMMIT_ENV}={state['commit']} {FINGERPRINT_ENV}={commit_fingerprint(state['commit'])}")
    return 0


def add_commands(sub) -> None:
    """`provenance-env` on an argparse subparsers object."""
    env = sub.add_parser("provenance-env", help="the variables that let a copy of this tree prove its commit",
                         description=cmd_provenance_env.__doc__)
    env.set_defaults(func=cmd_provenance_env)
