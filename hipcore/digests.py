"""Results that check themselves: each results folder holds `SHA256SUMS`, one
`<sha256>  <file name>` line per file (the format `sha256sum -c SHA256SUMS` checks), written
when the folder's run finishes (`provenance.write`, every writer's last step) and checked by
every loader before it reads a file of the folder.

    sign(folder)       SHA256SUMS over every file of the folder (not below it, not hidden ones)
    unsign(folder)     remove it: a writer starting to rewrite the folder (`notebook.setup`)
    check(path)        the file is the one signed: ResultsChanged naming it otherwise
    verify(folder)     every signed file is there and unchanged, and none is unsigned

A folder without SHA256SUMS (being written, or written before results were signed) reads
unverified; `tests/test_results.py` keeps every committed results folder signed.

    python -m hipcore results sign FOLDER...      re-sign results changed on purpose
    python -m hipcore results verify FOLDER...    check them (every results folder below FOLDER)
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from .errors import HipcoreError
from .files import inside, sha256_file, write_text_atomic

SUMS = "SHA256SUMS"
FINISHED = "provenance.json"     # written last by every results writer: the folder holds a finished run
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


class ResultsChanged(HipcoreError, ValueError):
    """A results file that is not the one its folder's SHA256SUMS signs; the message names it."""


def resign_hint(folder: str | os.PathLike) -> str:
    return f"if it was changed on purpose, re-sign the folder: python -m hipcore results sign {folder}"


def signed_files(folder: str | os.PathLike) -> list[Path]:
    """The files `sign` covers: every plain file of `folder` but SHA256SUMS and hidden names
    (temporary files, locks), sorted."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.is_symlink() and p.name != SUMS and not p.name.startswith("."))


def sign(folder: str | os.PathLike) -> Path:
    """Write <folder>/SHA256SUMS over `signed_files(folder)` (whole or not at all); its path."""
    folder = Path(folder)
    lines = [f"{sha256_file(p)}  {p.name}\n" for p in signed_files(folder)]
    write_text_atomic(folder / SUMS, "".join(lines))
    return folder / SUMS


def unsign(folder: str | os.PathLike) -> None:
    """Remove the folder's SHA256SUMS: its files are about to be rewritten."""
    (Path(folder) / SUMS).unlink(missing_ok=True)


def read_sums(folder: str | os.PathLike) -> dict[str, str] | None:
    """{file name: sha256} of <folder>/SHA256SUMS; None when the folder holds none."""
    path = Path(folder) / SUMS
    if not path.is_file():
        return None
    sums = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        match = _LINE.match(line)
        if not match or inside(folder, match.group(2)) is None or match.group(2) in sums:
            raise ResultsChanged(f"{path}: line {number} is not '<sha256>  <file name>' of a new file in its "
                                 f"folder; {resign_hint(Path(folder))}")
        sums[match.group(2)] = match.group(1)
    return sums


def check(path: str | os.PathLike) -> Path:
    """`path`, when its folder is unsigned or signs it with its present bytes; ResultsChanged
    naming it otherwise (changed, or added after the folder was signed)."""
    path = Path(path)
    sums = read_sums(path.parent)
    if sums is None:
        return path
    if path.name not in sums:
        raise ResultsChanged(f"{path}: not among the files {SUMS} of its folder signs (added after its run "
                             f"finished); {resign_hint(path.parent)}")
    if sha256_file(path) != sums[path.name]:
        raise ResultsChanged(f"{path}: changed since its folder was signed (its SHA-256 is not the one in "
                             f"{SUMS}); {resign_hint(path.parent)}")
    return path


def verify(folder: str | os.PathLike) -> int:
    """The number of files checked, when <folder>/SHA256SUMS signs exactly the folder's files
    as they are; ResultsChanged naming the first that is missing, changed or unsigned."""
    folder = Path(folder)
    sums = read_sums(folder)
    if sums is None:
        raise ResultsChanged(f"{folder}: holds no {SUMS}; sign it: python -m hipcore results sign {folder}")
    for name in sums:
        if not (folder / name).is_file():
            raise ResultsChanged(f"{folder / name}: signed in {SUMS} but missing; restore it "
                                 f"(git checkout), or {resign_hint(folder)}")
    for path in signed_files(folder):
        check(path)
    return len(sums)


def results_folders(root: str | os.PathLike) -> list[Path]:
    """`root` when it holds a finished run (provenance.json), else every folder below it that does."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    if (root / FINISHED).is_file():
        return [root]
    found = sorted(p.parent for p in root.rglob(FINISHED) if p.is_file())
    if not found:
        raise ValueError(f"{root} holds no results folder (none below it has a {FINISHED})")
    return found


# ---- the command line: python -m hipcore results sign|verify FOLDER... ----

def add_commands(sub) -> None:
    """The `results` command on the command line's subparsers."""
    parser = sub.add_parser("results", help="sign or verify results folders (their SHA256SUMS)",
                            description="Each results folder holds SHA256SUMS, which every loader checks; "
                                        "`sign` re-signs results changed on purpose, `verify` checks them. A "
                                        "FOLDER is a results folder (with provenance.json) or a folder above "
                                        "several, e.g. results.")
    parser.add_argument("action", choices=("sign", "verify"),
                        help="sign: write each folder's SHA256SUMS anew; verify: check its files against it")
    parser.add_argument("folders", nargs="+", metavar="FOLDER",
                        help="a results folder, or a folder above several (each one holding a provenance.json)")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    folders = [f for root in args.folders for f in results_folders(root)]
    for folder in folders:
        if args.action == "sign":
            print(f"signed {folder}: {len(read_sums(sign(folder).parent) or {})} files")
        else:
            print(f"verified {folder}: {verify(folder)} files unchanged")
    return 0
