"""What every numbered notebook does in its first cells: profile, parameter checks, output folder.

A notebook's tagged `parameters` cell holds literals only; the next cell calls `setup(...)`,
which applies `HIPCORE_PROFILE` from the environment (how nbval runs them at 'smoke'), checks
every parameter against what is allowed (stopping with a message that lists the choices), and
returns the notebook's settings for that profile plus the folder its results go to:
`<results_dir>/<notebook>/<profile>/`.

Notebooks that can draw their figures from the shipped weights (`hipcore.pretrained`) have a
`pretrained` parameter: `shipped_weights(pretrained, ...)` checks it and finds the weights, and
`setup(..., shipped=...)` then takes the weights' variant and seed, refuses training settings
that would not apply, writes to `<results_dir>/<notebook>/pretrained/` (never over a profile's
results) and says in its first output where the figures come from.

Profiles:
- smoke: each notebook under 60 s on 2 CPU cores, for CI;
- binder: a few minutes each within Binder's 2 GB (`python -m hipcore.binder` checks the memory);
- quick: the whole set under 90 minutes on 2 CPU cores, the default of `make reproduce`;
- full:  longer runs started on purpose (overnight on CPU, minutes on a GPU);
- paper: the paper's own configurations, for a GPU cluster (documented, not run here).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .digests import check, unsign
from .locations import HomeNotFound, binder_detected, notebooks_dir

PROFILES = ("smoke", "binder", "quick", "full", "paper")
SHIPPED_FOLDER = "pretrained"     # <results_dir>/<notebook>/pretrained/: figures drawn from the shipped weights
PROFILE_ENV = "HIPCORE_PROFILE"
TRAIN_ENV = "HIPCORE_TRAIN"      # '1': train whatever the notebook's `train` says (how nbval runs them)
AUTO = "auto"            # a notebook's default: 'binder' on Binder (hipcore.locations.binder_detected), else 'quick'
DEFAULT_PROFILE = "quick"


class ParameterError(ValueError):
    """A notebook parameter that is not allowed; the message lists what is."""


def choose(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ParameterError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")
    return value


def choose_list(name: str, values: Any, allowed: Iterable[Any]) -> tuple:
    """A non-empty list (or tuple) of allowed values, without repeats, in the given order."""
    allowed = tuple(allowed)
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
        raise ParameterError(f"{name}={values!r} is not allowed; give a list drawn from "
                             f"{', '.join(map(repr, allowed))} (at least one)")
    for value in values:
        choose(name, value, allowed)
    return tuple(dict.fromkeys(values))


def profile_choice(profile: str) -> tuple[str, str]:
    """(profile, why): the notebook's `profile`, unless the environment's HIPCORE_PROFILE
    overrides it; 'auto' is 'binder' on Binder and 'quick' elsewhere. why names what chose it,
    for the notebook's first output."""

    why = "the notebook's parameter"
    if os.environ.get(PROFILE_ENV):
        profile, why = os.environ[PROFILE_ENV], f"{PROFILE_ENV}={os.environ[PROFILE_ENV]} in the environment"
    if profile == AUTO:
        variable = binder_detected()
        profile, why = (("binder", f"Binder detected ({variable} is set); set profile = 'quick' for longer runs")
                        if variable else (DEFAULT_PROFILE, "profile 'auto' off Binder"))
    return choose("profile", profile, (AUTO, *PROFILES)), why


def check_flag(name: str, value: Any) -> bool:
    """True or False, nothing else (not 0, 1 or 'yes')."""
    if not isinstance(value, bool):
        raise ParameterError(f"{name}={value!r} is not allowed; choose True or False")
    return value


def shipped_weights(pretrained: Any, *, dataset: str, variant: str | None = None):
    """None for pretrained=False; for True, the shipped (MAE, classifier) pair of `dataset`
    (and `variant`, when given): a `hipcore.pretrained.Pair`. ParameterError when none fits."""
    from .pretrained import UnknownWeights, pair

    if not check_flag("pretrained", pretrained):
        return None
    try:
        return pair(dataset=dataset, variant=variant)
    except UnknownWeights as error:
        raise ParameterError(f"pretrained=True: {error}") from None


def check_seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, int):
        seeds = (seeds,)
    try:
        seeds = tuple(seeds)
    except TypeError:
        raise ParameterError(f"seeds must be an int or a list of ints, got {seeds!r}") from None
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ParameterError(f"seeds must be a non-empty list of ints >= 0, got {list(seeds)!r}")
    return seeds


def check_data(notebook: str, dataset: str, data_dir: str | None) -> Path | None:
    """The dataset's folder (None: its default places): `dataset` must be one the registry lets
    `notebook` run on, and a dataset that needs a folder needs an existing one."""
    from .data.registry import entry, for_notebook

    choose("dataset", dataset, for_notebook(notebook))
    if data_dir in (None, ""):
        if entry(dataset).needs_dir:
            raise ParameterError(f"dataset={dataset!r} needs data_dir, the folder that holds it")
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise ParameterError(f"data_dir={str(data_dir)!r} is not a folder")
    return path


COMMITTED = "provenance.json"   # written last: a results folder that has it holds a finished run


@dataclass(frozen=True)
class Setup:
    notebook: str
    profile: str
    settings: Mapping[str, Any]          # this profile's row of the notebook's table
    out: Path                            # <results_dir>/<notebook>/<profile>/
    seeds: tuple[int, ...] = field(default=())
    started: float = field(default_factory=time.perf_counter)
    reading: bool = False                # True: figures and verdicts from `out`'s files, nothing trained

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def save_figure(self, fig, name: str):
        """Save `fig` as <out>/<name>.png, or only show it when reading committed results
        (which are never rewritten)."""
        from . import plots

        if self.reading:
            return None
        return plots.save_figure(fig, self.out / name)

    def figure(self, name: str, draw=None):
        """A figure drawn from trained weights: `draw()` saved as <out>/<name>.png, or, reading
        committed results (no weights here, `draw` None), the committed one shown."""
        if draw is None:
            return self.show_committed(name)
        return self.save_figure(draw(), name)

    def show_committed(self, name: str) -> None:
        """Show <out>/<name>.png as committed (a figure drawn from trained weights that a
        reading notebook does not have), or say that the results hold none."""
        from IPython.display import Image, display

        path = self.out / f"{name}.png"
        if path.is_file():
            display(Image(filename=str(path)))
        else:
            print(f"the committed results hold no {path.name}; train = True draws it")

    def record_provenance(self, **extra: Any) -> None:
        """`provenance.json` in this notebook's results folder: code, packages, machine, and the
        wall time since `setup` (the notebook's own run). Call it as the last step. A notebook
        reading committed results writes nothing. It prints the folder relative to the checkout
        and returns nothing, so an executed notebook holds no machine path."""
        from . import provenance

        if self.reading:
            print("read from", provenance.relative(self.out), "(nothing written)")
            return
        provenance.write(self.out, self.settings, notebook=self.notebook, profile=self.profile,
                         seeds=list(self.seeds), wall_seconds=time.perf_counter() - self.started)
        print("results in", provenance.relative(self.out))


def committed_line(out: Path, profile: str) -> str:
    """The first output of a notebook reading committed results: where they come from."""
    from .provenance import read

    record = read(check(out / COMMITTED).parent) or {}      # its digest checked, a broken record named
    machine = record.get("machine") if isinstance(record.get("machine"), dict) else {}
    where = machine.get("gpu") or f"{machine.get('cpu', 'an unrecorded CPU')}, {machine.get('cores', '?')} cores"
    minutes = record.get("wall_seconds")
    took = f", {minutes / 60:.1f} min for this notebook" if isinstance(minutes, (int, float)) else ""
    return (f"reading the committed results of profile {profile!r} ({out.parent.name}/{out.name}: commit "
            f"{str(record.get('commit') or 'unrecorded')[:7]}, {where}, {machine.get('precision', '?')}{took}); "
            f"nothing is trained. Set train = True to train them here.")


def setup(notebook: str, *, profile: str, table: Mapping[str, Mapping[str, Any]],
          results_dir: str | os.PathLike = "results", seeds: Any = None,
          overrides: Mapping[str, Any] | None = None, fresh: bool = True,
          source: str | None = None, shipped=None, train: Any = True, default_data: bool = True,
          live: bool = False) -> Setup:
    """Resolve the profile, pick its settings from `table`, apply non-None `overrides`.

    `seeds=None` takes the profile's own `seeds`. With `fresh`, files the notebook writes
    cumulatively (comparisons.csv) are cleared so a rerun never mixes with an older one.
    With `train` False, a profile whose results folder holds a finished run (COMMITTED) is read,
    not trained: `Setup.reading`, and the notebook draws its figures and verdicts from the
    files; a profile with no such folder trains as with True, and so do settings other than the
    profile's (any override or seeds given, or `default_data` False: another dataset or folder).
    `source` says where the figures come from (printed under the profile line). `shipped`
    (from `shipped_weights`) draws them from the shipped weights instead: their variant and
    seed, no other override (nothing is trained), results in `<notebook>/pretrained/`.
    A `live` notebook (the tour: nothing to train, its figures cost seconds) draws its figures
    afresh either way; where it would read, it keeps the committed folder and writes nothing.
    """
    profile, why = profile_choice(profile)
    print(f"profile {profile}: {why}", flush=True)
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise ParameterError(f"notebook {notebook!r} has no settings for profiles {missing}")
    row = table[profile]
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if shipped is not None:
        overrides, given = shipped_overrides(shipped, overrides, seeds, row), (shipped.seed,)
    else:
        given = None if seeds is None else check_seeds(seeds)
        if source is not None:
            print(f"figures from {source}", flush=True)
    settings = overridden(row, overrides)
    out = results_folder(results_dir) / notebook / (SHIPPED_FOLDER if shipped is not None else profile)
    changed = [] if shipped is not None else changes(row, overrides, given, default_data)
    train = check_flag("train", train)
    reading = shipped is None and read_or_train(out, profile, changed, train, live)
    out.mkdir(parents=True, exist_ok=True)
    if not reading:
        unsign(out)                   # rewritten from here on; record_provenance signs it again
    if fresh and not reading:
        (out / "comparisons.csv").unlink(missing_ok=True)
    return Setup(notebook, profile, settings, out, check_seeds(given or settings.get("seeds", (0,))),
                 reading=reading)


def shipped_overrides(shipped, overrides: Mapping[str, Any], seeds: Any, row: Mapping[str, Any]) -> dict:
    """The overrides of a notebook drawing from the shipped weights: their variant, nothing else
    (ParameterError for a training setting or seeds other than theirs); says so in its output."""
    unused = sorted(k for k in overrides if k != "variant")
    if unused:
        raise ParameterError(f"{', '.join(unused)} set, but pretrained=True trains nothing, so "
                             f"{'they do' if len(unused) > 1 else 'it does'} not apply: leave "
                             f"{'them' if len(unused) > 1 else 'it'} None")
    if seeds is not None and check_seeds(seeds) != (shipped.seed,):
        raise ParameterError(f"seeds={seeds!r}, but the shipped weights are seed {shipped.seed}'s; "
                             f"with pretrained=True leave seeds at None (or [{shipped.seed}])")
    print("figures from the shipped weights (hipcore.pretrained), nothing is trained:\n"
          + shipped.describe(), flush=True)
    return {"variant": shipped.variant} if "variant" in row else {}


def overridden(row: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's row with `overrides` applied; ParameterError for a setting it does not have."""
    unknown = [k for k in overrides if k not in row]
    if unknown:
        raise ParameterError(f"unknown setting {unknown[0]!r}; settings are {sorted(row)}")
    return {**row, **overrides}


def changes(row: Mapping[str, Any], overrides: Mapping[str, Any], seeds: tuple[int, ...] | None,
            default_data: bool) -> list[str]:
    """What differs from the profile's committed results: overrides, seeds, the data."""
    changed = [k for k, v in overrides.items() if v != row.get(k)]
    if seeds is not None and seeds != check_seeds(row.get("seeds", (0,))):
        changed.append("seeds")
    return changed + ([] if default_data else ["data"])


def read_or_train(out: Path, profile: str, changed: list[str], train: bool, live: bool) -> bool:
    """Whether the notebook reads `out`'s committed results (True) or trains, saying which."""
    committed = (out / COMMITTED).is_file()
    train = train or os.environ.get(TRAIN_ENV) == "1"
    reading = not train and committed and not changed
    if reading and live:
        print(f"the committed results of profile {profile!r} ({out.parent.name}/{out.name}) are kept: the figures "
              "below are drawn afresh and nothing is written (make reproduce, or HIPCORE_TRAIN=1, rewrites them)",
              flush=True)
    elif reading:
        print(committed_line(out, profile), flush=True)
    elif not train:
        why = (f"{', '.join(changed)} set, unlike the committed results" if changed and committed
               else f"no committed results of profile {profile!r} in {out}")
        print(f"{why}: training", flush=True)
    return reading


def results_folder(results_dir: str | os.PathLike) -> Path:
    """A notebook's results_dir: a relative one (the parameters cell's '../results') is read from
    the checkout's notebooks/ folder, wherever papermill or Jupyter was started, so results
    never land outside the checkout; an absolute one as given. Without a checkout, from the
    current folder."""
    path = Path(results_dir).expanduser()
    if path.is_absolute():
        return path
    try:
        return (notebooks_dir() / path).resolve()
    except HomeNotFound:
        return path.resolve()


METRIC_FIELDS = ("run_id", "seed", "epoch", "step", "split", "metric", "value")


def write_metrics(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write tidy metric rows (METRIC_FIELDS; missing fields left empty) to a CSV, replacing it."""
    import csv
    import io

    from .files import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    for row in rows:
        unknown = set(row) - set(METRIC_FIELDS)
        if unknown:
            raise ValueError(f"metric rows take {METRIC_FIELDS}, got extra {sorted(unknown)}")
        writer.writerow(row)
    write_text_atomic(path, text.getvalue())
    return path


def read_summary(folder: str | os.PathLike) -> dict[str, Any]:
    """<folder>/summary.json as written by `write_summary_json`."""
    from .files import read_json

    path = check(Path(folder) / "summary.json")          # the one its folder's SHA256SUMS signs
    return read_json(path)


def write_summary_json(path: str | os.PathLike, summary: Mapping[str, Any]) -> Path:
    import json

    from .files import write_text_atomic

    path = Path(path)
    write_text_atomic(path, json.dumps(summary, indent=2, default=str) + "\n")
    return path
