"""Run notebooks through papermill: one at a time, all of them, or a sweep over parameters.

A sweep runs one executed notebook and one results folder per point of the grid
(parameters x seeds) and then concatenates every point's metrics.csv, with the point's
parameters as extra columns, into `<out>/sweep_metrics.csv`.
"""

from __future__ import annotations

import ast
import csv
import itertools
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import locations

NOTEBOOKS: Path | None = None       # None: <home>/notebooks, the checkout's (hipcore.locations)


def notebooks_dir() -> Path:
    return NOTEBOOKS if NOTEBOOKS is not None else locations.notebooks_dir()


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, '[0, 1]' -> [0, 1], 'raster' -> 'raster'."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def find_notebook(name: str | Path) -> Path:
    """A path, or a name like '02' / '02_flattening_ablation' in notebooks/."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.exists():
        return path
    notebooks = notebooks_dir()
    matches = sorted(notebooks.glob(f"{name}*.ipynb"))
    if len(matches) != 1:
        have = ", ".join(p.stem for p in sorted(notebooks.glob("[0-9]*.ipynb")))
        raise FileNotFoundError(f"no single notebook matches {str(name)!r}; notebooks: {have}")
    return matches[0]


def run_notebook(notebook: Path, output: Path, parameters: Mapping[str, Any], *,
                 cwd: Path | None = None, log_output: bool = False) -> float:
    """Execute `notebook` into `output` with papermill; returns the wall time in seconds."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(output), parameters=dict(parameters),
                               cwd=str(cwd or notebook.parent), log_output=log_output,
                               progress_bar=False)
    return time.perf_counter() - start


def point_name(point: Mapping[str, Any]) -> str:
    text = "_".join(f"{k}-{v}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9._-]+", "", text)[:120] or "default"


def sweep(notebook: str | Path, grid: Mapping[str, Iterable[Any]], seeds: Iterable[int] | None,
          out: Path, *, profile: str | None = None) -> Path:
    """Run every point of `grid` x `seeds`; returns the aggregated CSV's path."""
    nb = find_notebook(notebook)
    names = list(grid)
    points = [dict(zip(names, values)) for values in itertools.product(*(list(grid[n]) for n in names))]
    out = Path(out).resolve()
    rows: list[dict] = []
    for point in points:
        for seed in (list(seeds) if seeds is not None else [None]):
            params = dict(point)
            if seed is not None:
                params["seeds"] = [seed]
            if profile is not None:
                params["profile"] = profile
            name = point_name({**point, **({"seed": seed} if seed is not None else {})})
            results_dir = out / name
            params["results_dir"] = str(results_dir)
            seconds = run_notebook(nb, out / f"{name}.ipynb", params)
            print(f"{nb.stem} {name}: {seconds:.0f} s", flush=True)
            for metrics in sorted(results_dir.glob("*/*/metrics.csv")):
                with open(metrics, newline="") as f:
                    for row in csv.DictReader(f):
                        rows.append({**{f"param_{k}": json.dumps(v) for k, v in point.items()},
                                     "param_seed": seed, **row})
    target = out / "sweep_metrics.csv"
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(target, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return target


def reproduce(profile: str = "quick", results_dir: Path | None = None,
              readme: Path | None | str = "home") -> Path:
    """Run every numbered notebook at `profile` into results/executed/<profile>/, record each
    one's wall time with the provenance there, regenerate that profile's summary (and, at
    'quick', the README's times). Other profiles' files are never touched. By default the
    results and README are the checkout's (`hipcore.locations`); readme=None updates none."""
    from . import provenance
    from .report import executed_path, write_summary

    results_dir = locations.results_dir() if results_dir is None else results_dir
    readme = locations.home() / "README.md" if readme == "home" else readme
    executed_dir = executed_path(results_dir, profile)
    seconds = {}
    for nb in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        # relative to the notebook's folder (papermill's cwd), so no machine path is recorded
        where = os.path.relpath(Path(results_dir).resolve(), nb.parent.resolve())
        seconds[nb.stem] = run_notebook(nb, executed_dir / nb.name, {"profile": profile, "results_dir": where})
        print(f"{nb.stem}: {seconds[nb.stem]:.0f} s", flush=True)
    provenance.reproduce_record(executed_dir, seconds, profile)
    summary = write_summary(results_dir, profile)
    print(f"wrote {summary}")
    if profile == "quick" and readme is not None and provenance.update_readme(readme, results_dir, profile):
        print(f"updated the times in {readme}")
    return summary
