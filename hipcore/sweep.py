"""Run notebooks through papermill: one at a time, all of them, or a sweep over parameters.

A sweep runs one executed notebook and one results folder per point of the grid
(parameters x seeds) and then concatenates every point's metrics.csv, with the point's
parameters as extra columns, into `<out>/sweep_metrics.csv`. Nothing runs until every
parameter is known to be one of the notebook's own (papermill would only warn and run the
defaults), and `seeds` goes to whichever of `seeds` or `seed` the notebook takes.

On the console each notebook shows one line when it starts, one per finished training run
(hipcore.progress) and one when it ends; the kernels run over IPC sockets where the system
has them, so they start without a warning about unencrypted TCP.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import itertools
import json
import math
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import locations
from .errors import HipcoreError
from .files import write_csv_atomic

NOTEBOOKS: Path | None = None       # None: <home>/notebooks, the checkout's (hipcore.locations)
SET_BY_SWEEP = {"results_dir": "the sweep sets it to a folder per point under --out",
                "profile": "use --profile"}


def notebooks_dir() -> Path:
    return NOTEBOOKS if NOTEBOOKS is not None else locations.notebooks_dir()


class NotebookError(HipcoreError):
    """A notebook cannot be swept as asked, or stopped with an error while it ran."""


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


def notebook_parameters(notebook: Path) -> list[str]:
    """The names in the notebook's tagged `parameters` cell, read by papermill's inspection."""
    import papermill
    from nbformat.validator import MissingIDFieldWarning

    with warnings.catch_warnings():      # stored notebooks may lack cell ids; reading them is fine
        warnings.simplefilter("ignore", MissingIDFieldWarning)
        return list(papermill.inspect_notebook(str(notebook)))


def parameter_defaults(notebook: Path) -> dict[str, Any]:
    """{name: the default the notebook's parameters cell gives it}, as Python values."""
    import papermill
    from nbformat.validator import MissingIDFieldWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingIDFieldWarning)
        found = papermill.inspect_notebook(str(notebook))
    return {name: parse_value(p["default"]) for name, p in found.items()}


def _kind(value: Any) -> str:
    return {bool: "True or False", int: "an int", float: "a number", str: "text", list: "a list",
            tuple: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


MAX_SEED = 2**63                     # seeds fit in a signed 64-bit integer


def _whole(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v < MAX_SEED


def _one_of(choices: Callable[[], Iterable[str]]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in tuple(choices())


def _list_of(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(ok(x) for x in v)


def _fraction(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1


def _variants() -> tuple[str, ...]:
    from .config import VARIANT_NAMES
    return VARIANT_NAMES


def _orderings() -> tuple[str, ...]:
    from .data import IMAGE_ORDERINGS, POINT_ORDERINGS
    return IMAGE_ORDERINGS + POINT_ORDERINGS


def _datasets() -> tuple[str, ...]:
    from .data import DATASETS
    return DATASETS


def _precisions() -> tuple[str, ...]:
    from .device import PRECISIONS
    return PRECISIONS


def _bench_models() -> tuple[str, ...]:
    from .bench.models import MODEL_NAMES
    return MODEL_NAMES


# The notebooks' parameters by name: what each takes (a notebook default of None, "the
# profile's", takes None as well). A parameter not named here takes its default's type.
PARAMETER_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "seed": ("a seed, a whole number in [0, 2**63)", _whole(0)),
    "seeds": ("a list of seeds, whole numbers in [0, 2**63)", _list_of(_whole(0))),
    "dataset": ("a dataset name", _one_of(_datasets)),
    "data_dir": ("a folder, as text", lambda v: isinstance(v, str) and v.strip() != ""),
    "resolution": ("a positive int", _whole(1)),
    "num_points": ("a positive int", _whole(1)),
    "batch": ("a positive int", _whole(1)),
    "repeats": ("a positive int", _whole(1)),
    "variant": ("a variant name", _one_of(_variants)),
    "flat_variant": ("a variant name", _one_of(_variants)),
    "precision": ("a precision", _one_of(_precisions)),
    "ordering": ("an ordering", _one_of(_orderings)),
    "pixel_orderings": ("a list of orderings", _list_of(_one_of(_orderings))),
    "models": ("a list of benchmark models", _list_of(_one_of(_bench_models))),
    "sides": ("a list of image sides (positive ints)", _list_of(_whole(1))),
    "pretrain_grid": ("a list of MAE epoch counts (positive ints)", _list_of(_whole(1))),
    "mask_ratio": ("a number in (0, 1)", _fraction),
    "compare_mask_ratio": ("a number in (0, 1)", _fraction),
}


def _plain_value(value: Any) -> bool:
    """A value a notebook parameter can hold: None, True/False, an int, a finite number, text,
    or a list of those (no mappings, sets or nested lists)."""
    if isinstance(value, (list, tuple)):
        return all(not isinstance(v, (list, tuple)) and _plain_value(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def _takes(default: Any, value: Any) -> bool:
    """Whether `value` has the type of a notebook default that is not None."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_value(notebook: Path, name: str, value: Any, default: Any) -> None:
    """NotebookError unless `value` is one the notebook's parameter `name` takes (its kind in
    PARAMETER_KINDS, else its default's type; None where the default is None)."""
    if not _plain_value(value):
        raise NotebookError(f"-p {name} {value!r}: a parameter takes None, True/False, a number, text or a "
                            f"list of those, not {_kind(value)} (numbers finite)")
    if value is None and default is None:
        return
    if name in PARAMETER_KINDS:
        what, ok = PARAMETER_KINDS[name]
        if not ok(value):
            raise NotebookError(f"-p {name} {value!r}: {notebook.stem} takes {what} there"
                                + (f" (its default is {default!r})" if default is not None else ""))
    elif default is not None and not _takes(default, value):
        raise NotebookError(f"-p {name} {value!r}: {notebook.stem} takes {_kind(default)} there "
                            f"(its default is {default!r})")


def check_types(notebook: Path, grid: Mapping[str, Iterable[Any]]) -> None:
    """Refuse, before any kernel starts, a -p value the notebook's parameter cannot take
    (`check_value`): an int where it has an int, a number where it has a float, True/False where
    it has a bool, text where it has text, and each named parameter's own kind and range."""
    defaults = parameter_defaults(notebook)
    for name, values in grid.items():
        for value in values:
            check_value(notebook, name, value, defaults.get(name))


def check_seeds(seeds: list[Any]) -> None:
    """--seeds: whole numbers in [0, 2**63), each once."""
    bad = [s for s in seeds if not _whole(0)(s)]
    if bad:
        raise NotebookError(f"--seeds {bad[0]!r}: a seed is a whole number in [0, 2**63)")
    if len(set(seeds)) < len(seeds):
        raise NotebookError(f"--seeds gives a seed twice: {seeds}")


def seed_parameter(notebook: Path, parameters: Iterable[str]) -> str:
    """'seeds' (a list) or 'seed' (an int): the parameter a notebook takes its seeds in."""
    for name in ("seeds", "seed"):
        if name in parameters:
            return name
    raise NotebookError(f"{notebook.stem} takes no seed parameter, so --seeds cannot be applied")


def check_parameters(notebook: Path, names: Iterable[str], *, seeds: bool = False,
                     profile: bool = False) -> str | None:
    """Refuse a name the notebook does not take (listing those it does), one the sweep sets
    itself, a seed given both in the grid and by --seeds, and a notebook without the
    results_dir (or, when one is asked for, profile) the sweep sets. Returns the seed
    parameter's name when `seeds` is asked for."""
    have = notebook_parameters(notebook)
    for name in ["results_dir"] + (["profile"] if profile else []):
        if name not in have:
            raise NotebookError(f"{notebook.stem} takes no {name} parameter, so the sweep cannot set it; "
                                f"its parameters: {', '.join(have)}")
    for name in names:
        if name in SET_BY_SWEEP:
            raise NotebookError(f"-p {name}: {SET_BY_SWEEP[name]}")
        if name not in have:
            raise NotebookError(f"{notebook.stem} has no parameter {name!r}; its parameters: {', '.join(have)}")
    if not seeds:
        return None
    seed_name = seed_parameter(notebook, have)
    if seed_name in names:
        raise NotebookError(f"{seed_name!r} is given both by -p and by --seeds; give it once")
    return seed_name


def kernel_config(sockets: Path | None = None):
    """Kernels talk over IPC sockets where the system has them (not Windows), which removes
    the cause of ipykernel's warning that TCP is unencrypted. The sockets are made in
    `sockets` (a folder of their own), never in the kernel's working folder (notebooks/)."""
    from traitlets.config import Config

    if os.name == "nt":
        return Config({"KernelManager": {"transport": "tcp"}})
    manager = {"transport": "ipc"}
    if sockets is not None:
        manager["ip"] = str(Path(sockets) / "kernel")
    return Config({"KernelManager": manager})


def quiet_kernel_manager() -> type:
    """jupyter_client sends a kernel SIGINT before its shutdown request; a kernel still handling a
    message then (papermill shuts it down right after the last cell) logs 'KeyboardInterrupt caught
    in kernel' as an error. The notebook has finished by then, so this manager only asks it to
    shut down (and still kills one that does not stop)."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietShutdown(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return QuietShutdown


def run_notebook(notebook: Path, output: Path, parameters: Mapping[str, Any], *,
                 cwd: Path | None = None) -> float:
    """Execute `notebook` into `output` with papermill, passing its training runs' progress
    lines to the console; returns the wall time in seconds. The kernel's sockets live in a
    temporary folder removed afterwards, however the notebook ends."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .progress import RunLines

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="hipcore-kernel-") as sockets:
            papermill.execute_notebook(str(notebook), str(output), parameters=dict(parameters),
                                       cwd=str(cwd or notebook.parent), progress_bar=False,
                                       stdout_file=RunLines(), config=kernel_config(Path(sockets)),
                                       kernel_manager_class=quiet_kernel_manager())
    except PapermillExecutionError as error:
        raise NotebookError(f"{notebook.stem} stopped in cell {error.exec_count}: {error.evalue} "
                            f"(the executed notebook, with the trace: {output})") from None
    finally:
        relative_paths(output)
    return time.perf_counter() - start


def relative_paths(executed: Path) -> None:
    """papermill records where it read and wrote a notebook as given (absolute paths of this
    machine): make them relative to the checkout (`provenance.relative`), in place."""
    import nbformat

    from .provenance import relative

    if not executed.exists():
        return
    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("papermill", {})
    changed = False
    for key in ("input_path", "output_path"):
        if isinstance(meta.get(key), str) and meta[key] != relative(meta[key]):
            meta[key], changed = relative(meta[key]), True
    if changed:
        nbformat.write(nb, executed)


def plain(value: Any) -> Any:
    """A value as a CSV cell: numbers, strings and booleans as they are, None empty, lists as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, (str, int, float, bool)) else json.dumps(value)


def point_name(point: Mapping[str, Any]) -> str:
    """A file-system-safe name: 'ordering-raster_seed-1'."""
    text = "_".join(f"{k}-{v}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9._-]+", "", text)[:120] or "default"


def point_names(points: list[Mapping[str, Any]]) -> list[str]:
    """point_name of each point, with a short hash of the point's values added where two
    points would share a name (values differing only in punctuation, or too long)."""
    names = [point_name(p) for p in points]
    clash = {n for n in names if names.count(n) > 1}
    return [f"{n}-{hashlib.sha1(json.dumps(p, sort_keys=True, default=str).encode()).hexdigest()[:8]}"
            if n in clash else n for n, p in zip(names, points)]


def describe(point: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in point.items())


def sweep(notebook: str | Path, grid: Mapping[str, Iterable[Any]], seeds: Iterable[int] | None,
          out: Path, *, profile: str | None = None) -> Path:
    """Run every point of `grid` x `seeds`; returns the aggregated CSV's path."""
    from .provenance import check_environment

    nb = find_notebook(notebook)
    check_environment()                  # a bad $HIPCORE_COMMIT is refused now, not when results are written
    grid = {name: list(values) for name, values in grid.items()}
    seeds = None if seeds is None else list(seeds)
    names = list(grid)
    if seeds is not None:
        check_seeds(seeds)
    seed_name = check_parameters(nb, names, seeds=seeds is not None, profile=profile is not None)
    check_types(nb, grid)
    for name in names:
        values = [json.dumps(v, sort_keys=True) for v in grid[name]]
        if not values or len(set(values)) < len(values):
            raise NotebookError(f"-p {name} needs at least one value and each value once, got {list(grid[name])}")
    grid_points = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    points = [{**p, "seed": s} if s is not None else p
              for p in grid_points for s in (seeds if seeds is not None else [None])]
    out = Path(out).resolve()
    rows: list[dict] = []
    for i, (point, name) in enumerate(zip(points, point_names(points)), 1):
        params = {k: v for k, v in point.items() if k != "seed" or seed_name is None}
        if seed_name is not None:
            params[seed_name] = [point["seed"]] if seed_name == "seeds" else point["seed"]
        if profile is not None:
            params["profile"] = profile
        if "train" in notebook_parameters(nb) and "train" not in params:
            params["train"] = True                        # a sweep point trains; it never reads committed results
        results_dir = out / name
        params["results_dir"] = str(results_dir)
        step = f"[{i}/{len(points)}] {nb.stem}"
        print(f"{step} {describe(point)}", flush=True)
        seconds = run_notebook(nb, out / f"{name}.ipynb", params)
        print(f"{step} done in {seconds:.0f} s", flush=True)
        found = sorted(results_dir.glob("*/*/metrics.csv"))
        if not found:
            raise NotebookError(f"{nb.stem} wrote no metrics.csv under {results_dir} for {describe(point)}")
        for metrics in found:
            with open(metrics, newline="") as f:
                for row in csv.DictReader(f):
                    params = {f"param_{k}": plain(v) for k, v in point.items()}
                    row["arm"] = row.pop("run_id")          # what the notebooks' metrics name run_id is the arm
                    rows.append({"notebook": nb.stem, "point": name, **params, **row})
    fields = list(dict.fromkeys(k for row in rows for k in row))
    return write_csv_atomic(out / "sweep_metrics.csv", fields, rows)      # whole or not at all


def read_sweep(path: str | Path):
    """A sweep_metrics.csv as a pandas DataFrame with typed columns: seed, epoch and step as
    nullable integers, value as float, the rest (arm, split, metric, param_*) as text, except
    param_ columns whose every value is a whole number (nullable integers)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("seed", "epoch", "step"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column].replace("", None)).astype("Int64")
    frame["value"] = pd.to_numeric(frame["value"])
    for column in [c for c in frame if c.startswith("param_")]:
        if frame[column].str.fullmatch(r"-?\d+").all():
            frame[column] = frame[column].astype("Int64")
    return frame


def reproduce_one(nb: Path, step: str, profile: str, results_dir: Path, executed_dir: Path) -> float:
    """Run one notebook for `reproduce`, training (never reading what is committed); its seconds."""
    # relative to the notebook's folder (papermill's cwd), so no machine path is recorded
    where = os.path.relpath(Path(results_dir).resolve(), nb.parent.resolve())
    print(f"{step} at {profile}", flush=True)
    parameters = {"profile": profile, "results_dir": where}
    if "train" in notebook_parameters(nb):
        parameters["train"] = True
    seconds = run_notebook(nb, executed_dir / nb.name, parameters)
    print(f"{step} done in {seconds:.0f} s", flush=True)
    return seconds


def reproduce(profile: str = "quick", results_dir: Path | None = None,
              readme: Path | None | str = "home", resume: bool = False, commit: bool = False,
              only: list[str] | None = None) -> Path:
    """Run every numbered notebook at `profile` into results/executed/<profile>/, record each
    one's wall time with the provenance there, regenerate that profile's summary (and, at
    'quick', the README's times). Other profiles' files are never touched. By default the
    results and README are the checkout's (`hipcore.locations`); readme=None updates none.

    The record is rewritten as each notebook ends, naming the notebooks still missing, so a
    reproduce longer than a sitting runs in parts: `resume` keeps the notebooks an earlier part
    recorded (`resumable`: same profile, same code, signed) and runs the rest. `commit` commits
    results/ (and the README) after each notebook, from a clean checkout, so a part that is
    stopped keeps every notebook it finished. `only` (numbers such as '02') limits a part to those
    notebooks; the others stay missing. Notebooks that share runs (01, 02, 03 and 06 at 'quick')
    run in one part: two parts on different CPUs train a shared run to other digits, so a part
    that would split them is refused (`check_part`)."""
    from . import provenance
    from .notebook import TRAIN_ENV
    from .summary import executed_path

    provenance.check_environment()       # before any notebook runs
    if commit and provenance.git_state()["dirty"] is not False:
        raise HipcoreError("reproduce --commit needs a clean checkout (only results/ and the README may differ "
                           "from HEAD): commit or stash the code first")
    results_dir = locations.results_dir() if results_dir is None else results_dir
    readme = locations.home() / "README.md" if readme == "home" else readme
    executed_dir = executed_path(results_dir, profile)
    notebooks = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    seconds, parts = resumable(executed_dir, profile, [nb.stem for nb in notebooks]) if resume else ({}, [])
    if only is not None:
        unknown = sorted(set(only) - {nb.stem[:2] for nb in notebooks})
        if unknown or not only:
            raise HipcoreError(f"--notebooks: {', '.join(unknown) or 'none given'}: not among the numbered notebooks "
                               f"({', '.join(nb.stem[:2] for nb in notebooks)})")
    this_part = [nb for nb in notebooks if (only is None or nb.stem[:2] in only) and nb.stem not in seconds]
    check_part([nb.stem for nb in this_part], shared_runs(results_dir, profile, [nb.stem for nb in notebooks]))
    runs = locations.runs_dir()
    part = {"notebooks": [], "machine": provenance.machine(),
            "cached_runs_at_start": sum(1 for p in runs.iterdir() if (p / "last.pt").is_file()) if runs.is_dir() else 0}
    # Kernels inherit it: every notebook writes its results folder, the tour (no train
    # parameter, which otherwise keeps a committed folder) included.
    previous = os.environ.get(TRAIN_ENV)
    os.environ[TRAIN_ENV] = "1"
    written = None
    try:
        for i, nb in enumerate(notebooks, 1):
            step = f"[{i}/{len(notebooks)}] {nb.stem}"
            if nb.stem in seconds:
                print(f"{step}: kept from an earlier part ({seconds[nb.stem]:.0f} s)", flush=True)
                continue
            if nb not in this_part:
                print(f"{step}: left for another part", flush=True)
                continue
            seconds[nb.stem] = reproduce_one(nb, step, profile, results_dir, executed_dir)
            part["notebooks"].append(nb.stem)
            missing = [n.stem for n in notebooks if n.stem not in seconds]
            provenance.reproduce_record(executed_dir, seconds, profile, parts=[*parts, part], missing=missing)
            left = f"still to run: {', '.join(n[:2] for n in missing)}" if missing else "every notebook done"
            written = _reproduce_outputs(results_dir, profile, readme, commit and (
                f"{nb.stem} at {profile} from reproduce, part {len(parts) + 1} from a clean checkout on "
                f"{part['machine'].get('cpu')}: its results, executed notebook and time; summary regenerated; {left}"))
    finally:
        if previous is None:
            os.environ.pop(TRAIN_ENV, None)
        else:
            os.environ[TRAIN_ENV] = previous
    return written or _reproduce_outputs(results_dir, profile, readme, None)


def shared_runs(results_dir: Path, profile: str, notebooks: list[str]) -> dict[str, dict[str, str]]:
    """{notebook: {each notebook it shares runs with, directly or through others: a run that
    links it in}}, from what their results at `profile` trained (runs.json, read checked: each
    run's directory and its MAE pretraining's). The run cache serves a run to every notebook that
    trains it. A notebook without runs.json (it trains nothing, or has not run) shares nothing."""
    from .results import read_runs_file

    runs: dict[str, set[str]] = {}
    for name in notebooks:
        path = Path(results_dir) / name / profile / "runs.json"
        if path.is_file():
            runs[name] = {Path(row[key]).name for row in read_runs_file(path)
                          for key in ("run_dir", "pretrain_run_dir") if isinstance(row.get(key), str)}
    links = {a: {b: min(runs[a] & runs[b]) for b in runs if b != a and runs[a] & runs[b]} for a in runs}
    shared: dict[str, dict[str, str]] = {}
    for start in notebooks:
        reached, todo = {start: ""}, [start]
        while todo:                                   # every notebook linked to `start`, a run per link
            here = todo.pop()
            for other, run in links.get(here, {}).items():
                if other not in reached:
                    reached[other] = run
                    todo.append(other)
        shared[start] = {name: run for name, run in reached.items() if name != start}
    return shared


def check_part(part: list[str], shared: Mapping[str, Mapping[str, str]]) -> None:
    """A reproduce part that runs some notebooks of a set that shares runs and leaves the others
    to another part (or keeps them from an earlier one) is refused, naming them and a shared run."""
    for name in part:
        left = sorted(set(shared.get(name, {})) - set(part))
        if left:
            group = sorted({name, *shared[name]})
            numbers = lambda names: ", ".join(n[:2] for n in names)      # noqa: E731
            raise HipcoreError(
                f"reproduce: {numbers(group)} share runs (such as {shared[name][left[0]]}) and this part runs "
                f"{numbers(n for n in group if n in part)} without {numbers(left)}: "
                "notebooks that share runs run in one part, as a part on another CPU trains a shared run to other "
                "digits; name them all with --notebooks (without --resume where an earlier part ran some)")


def resumable(executed_dir: Path, profile: str, notebooks: list[str]) -> tuple[dict[str, float], list[dict]]:
    """({notebook: seconds}, parts) that an earlier `reproduce` recorded in `executed_dir`, for
    `reproduce --resume` to keep; ({}, []) where none ran. A record that another profile or
    other code (hipcore/ or notebooks/: its result fingerprint) wrote, that no clean commit made,
    that is no longer as signed, or that lacks a notebook it names is refused, naming the file."""
    from . import provenance
    from .digests import check

    path = executed_dir / provenance.FILE
    record = provenance.read(executed_dir)
    if record is None:
        print(f"{path}: no earlier part to resume; every notebook runs")
        return {}, []
    check(path)
    if record.get("profile") != profile:
        raise HipcoreError(f"{path}: recorded profile {record.get('profile')!r}, not {profile!r}")
    if not isinstance(record.get("parts"), list) or not isinstance(record.get("notebook_seconds"), dict):
        raise HipcoreError(f"{path}: a record without parts (from before reproduce ran in parts); "
                           "run reproduce without --resume")
    now = provenance.result_fingerprint()
    if record.get("result_fingerprint") != now:
        raise HipcoreError(f"{path}: its notebooks ran the code of commit {str(record.get('commit'))[:7]} (result "
                           f"fingerprint {record.get('result_fingerprint')}) and this checkout's differs ({now}); "
                           "resume in a checkout of the commit that holds this record (git log -1 --format=%h -- "
                           f"{provenance.relative(path)}), or run reproduce without --resume")
    if record.get("verified") is not True:
        raise HipcoreError(f"{path}: not made by a clean commit ({record.get('unverified')}); run reproduce "
                           "without --resume")
    seconds = record["notebook_seconds"]
    for name in seconds:
        if name not in notebooks or not (executed_dir / f"{name}.ipynb").is_file():
            raise HipcoreError(f"{path}: records {name}, whose executed notebook {name}.ipynb is not beside it")
    return dict(seconds), list(record["parts"])


def _reproduce_outputs(results_dir: Path, profile: str, readme: Path | None, message: str | None) -> Path:
    """The profile's summary (and at 'quick' the README's blocks) from what is recorded now;
    with a commit `message`, results/ and the README committed."""
    from .summary import update_readme, write_summary

    written = write_summary(results_dir, profile)
    print(f"wrote {written}")
    status = update_readme(readme, results_dir, profile) if profile == "quick" and readme is not None else ""
    if status:
        print(f"{readme}: its generated blocks {status}")
    if message:
        from .provenance import commit_paths

        commit_paths([results_dir] + ([readme] if readme is not None else []), message)
    return written


SWEEP_EXAMPLE = "python -m hipcore sweep 03 -p mask_ratio 0.75 0.85 --seeds 0 1 2 --profile quick"


def cmd_sweep(args) -> int:
    """`python -m hipcore sweep`: the -p grid checked, then `sweep`."""
    grid = {}
    for name, *values in args.param or []:
        if not values:
            raise ValueError(f"-p {name} needs at least one value")
        if name in grid:
            raise ValueError(f"-p {name} is given twice; list all its values after one -p")
        grid[name] = [parse_value(v) for v in values]
    target = sweep(args.notebook, grid, args.seeds, args.out, profile=args.profile)
    print(f"wrote {target}")
    return 0


def cmd_reproduce(args) -> int:
    reproduce(args.profile, resume=args.resume, commit=args.commit, only=args.notebooks)
    return 0


def add_commands(sub) -> None:
    """`sweep` and `reproduce` on an argparse subparsers object."""
    from .argtypes import non_negative_int
    from .notebook import PROFILES

    grid = sub.add_parser("sweep", help="run a notebook over a grid of parameters and seeds",
                          description=f"Example: {SWEEP_EXAMPLE}. Every -p name must be one of the "
                                      "notebook's parameters; --seeds goes to its seed or seeds parameter. "
                                      "Writes one executed notebook and results folder per point and "
                                      "<out>/sweep_metrics.csv.")
    grid.add_argument("notebook", help="path, or a name prefix such as 02")
    grid.add_argument("-p", "--param", nargs="+", action="append", metavar=("NAME", "VALUE"),
                      help="a parameter and its values, read as Python literals where they parse (repeatable)")
    grid.add_argument("--seeds", nargs="+", type=non_negative_int, default=None,
                      help="one point per seed (default: the notebook's own seeds)")
    grid.add_argument("--profile", default=None, choices=PROFILES, help="default: the notebook's own")
    grid.add_argument("--out", default="results/sweeps", help="folder for executed notebooks and results")
    grid.set_defaults(func=cmd_sweep)

    every = sub.add_parser("reproduce", help="run every notebook at a profile into results/executed/<profile>/, "
                                             "then regenerate that profile's summary")
    every.add_argument("--profile", default="quick", choices=PROFILES, help="default quick")
    every.add_argument("--resume", action="store_true",
                       help="keep the notebooks an earlier part recorded (same profile and code) and run the rest")
    every.add_argument("--notebooks", nargs="+", metavar="NN", default=None,
                       help="run only these notebooks in this part (numbers; the others stay to run)")
    every.add_argument("--commit", action="store_true",
                       help="commit results/ and the README after each notebook (a clean checkout only)")
    every.set_defaults(func=cmd_reproduce)
