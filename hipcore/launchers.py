"""Where readers open the notebooks: the Binder and Colab badges at the top of each notebook
and Colab's first cell, all generated from the one repository address in pyproject.toml's
[project.urls].

On Colab the first cell clones the repository into ~/hipcore and calls `colab`, which installs
it from there (the notebooks' extras), fetches Fashion-MNIST, moves into the clone's
notebooks/ (so runs and results land in a checkout, as everywhere else) and says whether a GPU
is there; training then uses it (device 'auto'). Elsewhere the cell does nothing.

`python -m hipcore.launchers` rewrites the badges and first cells after the address changes;
`--check` only reports notebooks that differ (tests/test_launchers.py runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

BRANCH = "main"
BADGE_BINDER = "[![Binder](https://mybinder.org/badge_logo.svg)]"
BADGE_COLAB = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
EXTRAS = {"05_efficiency": "notebooks,bench"}          # notebooks that need more than [notebooks]


def repository_url(pyproject: Path | None = None) -> str:
    """[project.urls] Repository of the checkout's pyproject.toml."""
    import tomllib

    from .locations import home

    pyproject = pyproject or home() / "pyproject.toml"
    urls = tomllib.loads(pyproject.read_text()).get("project", {}).get("urls", {})
    if "Repository" not in urls:
        raise KeyError(f"{pyproject} declares no Repository in [project.urls]")
    return urls["Repository"].rstrip("/")


def github_path(url: str) -> str:
    """'https://github.com/owner/name' -> 'owner/name' (Binder and Colab open GitHub repositories)."""
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?", url)
    if not match:
        raise ValueError(f"the repository address {url!r} is not https://github.com/<owner>/<name>")
    return match.group(1)


def badges(url: str, notebook: str) -> str:
    """The two badge lines of one notebook (its stem, e.g. '00_tour')."""
    repo = github_path(url)
    path = f"notebooks/{notebook}.ipynb"
    return (f"{BADGE_BINDER}(https://mybinder.org/v2/gh/{repo}/{BRANCH}?labpath={quote(path, safe='')})\n"
            f"{BADGE_COLAB}(https://colab.research.google.com/github/{repo}/blob/{BRANCH}/{path})\n")


def first_cell(url: str, notebook: str) -> str:
    """The notebook's first code cell: on Colab, clone the repository once, then `colab`."""
    extras = EXTRAS.get(notebook, "notebooks")
    return f'''# Colab: clone hipcore, then install it, fetch its data and find the GPU (`hipcore.launchers.colab`).
import os, subprocess, sys
if "google.colab" in sys.modules:                   # elsewhere this cell does nothing
    checkout = os.path.join(os.path.expanduser("~"), "hipcore")
    os.path.isdir(checkout) or subprocess.run(["git", "clone", "-q", "--depth", "1", "{url}", checkout], check=True)
    sys.path.insert(0, checkout)                    # hipcore from the clone, until colab installs it
    from hipcore.launchers import colab; colab(checkout, "{extras}")'''


def colab(checkout: str, extras: str = "notebooks") -> None:
    """On Colab, with the repository cloned into `checkout` (the notebooks' first cell): install
    it with `extras`, fetch Fashion-MNIST, move into its notebooks/ (runs and results land in the
    clone, as in every checkout) and say whether a GPU is there (training then uses it)."""
    import os
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", checkout + f"[{extras}]"], check=True)
    subprocess.run([sys.executable, "-m", "hipcore", "data", "fetch", "fashion-mnist"], check=True)
    os.chdir(os.path.join(checkout, "notebooks"))
    import torch

    print("hipcore installed;", f"training on the GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available()
          else "no GPU: Runtime > Change runtime type > GPU makes the runs faster")


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def sync(notebook: Path, url: str, *, write: bool = True) -> bool:
    """Bring one notebook's badges and first cell up to date; True when they differed."""
    nb = json.loads(notebook.read_text())
    cells = nb["cells"]
    if len(cells) < 2 or cells[0]["cell_type"] != "markdown" or cells[1]["cell_type"] != "code":
        raise ValueError(f"{notebook.name}: expected a markdown cell (badges) then a code cell (Colab)")
    intro = _source(cells[0]).splitlines(keepends=True)
    rest = [line for line in intro if not line.startswith((BADGE_BINDER, BADGE_COLAB))]
    text = badges(url, notebook.stem) + "".join(rest)
    code = first_cell(url, notebook.stem)
    changed = _source(cells[0]) != text or _source(cells[1]) != code
    if changed and write:
        cells[0]["source"], cells[1]["source"] = _lines(text), _lines(code)
        notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def main(argv: list[str] | None = None) -> int:
    from .locations import notebooks_dir

    parser = argparse.ArgumentParser(prog="python -m hipcore.launchers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only list the notebooks that differ; exit 1 if any")
    args = parser.parse_args(argv)
    url = repository_url()
    differ = [nb.name for nb in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
              if sync(nb, url, write=not args.check)]
    verb = "differ from" if args.check else "rewritten from"
    print(f"{len(differ)} notebooks {verb} {url}" + (f": {', '.join(differ)}" if differ else ""))
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
