"""06_scaling: at what scale does MAE pretraining start to pay for learned positions?

F1 (MAE-learned positions beat classification-learned ones) measured as a curve rather than
at one budget: for each image side (positions = side^2) and each MAE pretraining length
(epochs), the paired per-seed effect

    MAE arm (E MAE epochs, then the profile's classification epochs)
      minus classification-learned positions (classification epochs only)      -> F1
      minus a FLOP-matched control (classification only, as many FLOPs as the
            MAE arm: `mae_positions.flop_budget`)                             -> not just compute

with its 95% t interval, against epochs and against the MAE arm's training TFLOPs. The
paper's explanation is that classification alone learns many position embeddings badly, so
the gap should grow with the number of positions: 28 x 28 Fashion-MNIST (784 positions)
beside the same images upsampled bilinearly to 56 x 56 (3,136 positions; `resolution`).

Beside each MAE run (and the classification-learned arm): the partial score of its position
table (F7: `position_tables`, the data's pixel correlation removed, 0 for no geometry beyond
content) beside the best content-only control's on the same seed's training images, and F7's
decision over seeds, so the curve says after how much pretraining the table holds the grid.

Every run is `common.run_arm`, so a point shared with notebooks 01-03 (28 x 28, the profile's
MAE length) is the same cached run. The regime beside the effects, as in notebooks 01-04: the
reference baselines on the same 28 x 28 training images (`Grid.references`), each point's test
top-1 against them (`point_accuracies`, for `plots.draw_baselines`) and each run's learning
curves (`Grid.runs`, for `regime.curve_rows`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import matplotlib.pyplot as plt
import pandas as pd

from .. import plots
from ..digests import check as check_digest
from ..report import directional_verdict
from ..results import grid_point, markdown
from ..stats import t_interval
from ..train import load_model
from . import common, regime
from . import position_tables as pt
from .image_arms import (
    COMPUTE_MATCHED,
    HIP_CLASSIFICATION,
    HIP_MAE,
    checkpoints,
    chosen_pixels,
    flop_budget,
    load_splits,
    model_tables,
    position_tables,
)

NOTEBOOK = "06_scaling"     # notebooks/<NOTEBOOK>.ipynb, its results in results/<NOTEBOOK>/<profile>/

NATIVE_SIDE = 28                      # Fashion-MNIST's own side: no resolution option, shared runs
ARMS = {"mae": HIP_MAE, "classification": HIP_CLASSIFICATION}
EFFECTS = {"F1: MAE minus classification-learned": "classification",
           "MAE minus FLOP-matched control": "control"}
# curve.csv's metrics of a position table: its partial score and its best content-only control's
GEOMETRY, CONTROL = "geometry", "geometry_control"
RAW = "structure"             # the raw score's metric in curves written before the partial score

# Per profile: the image notebooks' training settings, the sides and MAE lengths of the grid,
# and the MAE lengths whose point gets its FLOP-matched control ('controls').
TABLE = common.profiles({
    # CI: the plumbing: one short point and its control.
    "smoke": {**common.IMAGE_PROFILES["smoke"], "sides": (28,), "pretrain_grid": (1,), "controls": (1,)},
    "binder": {**common.IMAGE_PROFILES["binder"], "sides": (28,), "pretrain_grid": (1, 2), "controls": ()},
    # 2 CPU cores: 28 x 28, quick's own MAE length (8: the runs of 01-03, its control 03's) and 2.
    "quick": {**common.IMAGE_PROFILES["quick"], "sides": (28,), "pretrain_grid": (2, 8), "controls": (8,)},
    # The whole grid on quick's data (6,000 training images), 4 seeds: minutes on a GPU, hours on a CPU.
    "full": {**common.IMAGE_PROFILES["quick"], "sides": (28, 56), "pretrain_grid": (1, 2, 4, 8, 16),
             "controls": (1, 2, 4, 8, 16), "seeds": (0, 1, 2, 3)},
    # The same grid on all 60,000 images.
    "paper": {**common.without(common.IMAGE_PROFILES["quick"], "limit_train", "limit_test"), "sides": (28, 56),
              "pretrain_grid": (1, 2, 4, 8, 16, 32), "controls": (1, 2, 4, 8, 16, 32), "seeds": (0, 1, 2, 3)},
}, {"sides": "image sides", "pretrain_grid": "MAE lengths (epochs)",
    "controls": "MAE lengths with a FLOP-matched control"})


def data_options(side: int) -> dict[str, Any]:
    """load_dataset options of one side: none at 28 (so runs are shared with 01-03)."""
    if not isinstance(side, int) or isinstance(side, bool) or side < NATIVE_SIDE:
        raise ValueError(f"side must be an int >= {NATIVE_SIDE}, got {side!r}")
    return {} if side == NATIVE_SIDE else {"resolution": side}


def point_settings(settings: Mapping[str, Any], pretrain_epochs: int) -> dict[str, Any]:
    if not isinstance(pretrain_epochs, int) or pretrain_epochs < 1:
        raise ValueError(f"pretrain_epochs must be a positive int, got {pretrain_epochs!r}")
    return {**settings, "pretrain_epochs": pretrain_epochs}


def structure(arm, seed: int, settings: Mapping[str, Any], which: int, train_data=None,
              **data: Any) -> dict[str, float]:
    """The partial score of an arm's position table (which: 0 the MAE checkpoint, 1 the
    classifier) and its best content-only control's, on the seed's training images (from
    `train_data` when the training set is loaded already)."""
    tables, spec = model_tables({"table": load_model(checkpoints(arm, seed, settings, **data)[which])})
    images = pt.training_images(arm, seed, settings, train_data=train_data, **data)
    scores = pt.geometry_scores(tables, spec, *images, seed, fourier=False)
    return {GEOMETRY: scores[0]["score"], CONTROL: pt.best_control(scores, "table")}


class Grid(NamedTuple):
    """What run_grid trained: the tidy curve, the runs behind it and the reference baselines."""
    curve: pd.DataFrame       # side, positions, pretrain_epochs, arm, seed, metric, value
    runs: list[dict]          # run_arm's rows, 'arm' renamed to the point (results.grid_point)
    references: list[dict]    # baseline_rows: the baselines on the 28 x 28 training images, per seed


def run_grid(settings: Mapping[str, Any], seeds: tuple[int, ...], *, runs_dir=None, data_dir=None) -> Grid:
    """Train every point of the grid. The curve's metrics: test_accuracy (%), total_seconds,
    tflops (training FLOPs of the arm) and, for position tables, geometry (the partial score) and
    geometry_control (the best content-only control's); pretrain_epochs is 0 for arms without
    MAE, arm is 'mae', 'classification' or 'control'."""
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    references: list[dict[str, Any]] = []
    plan = [(side, e) for side in settings["sides"] for e in settings["pretrain_grid"]]
    for side in settings["sides"]:
        options = data_options(side)
        data = dict(dataset="fashion_mnist", data_dir=data_dir, data_options=options)
        train_data, test_data = load_splits("fashion_mnist", data_dir, options)
        kwargs = dict(runs_dir=runs_dir, train_data=train_data, test_data=test_data, **data)

        def add(arm_key: str, epochs: int, seed: int, result: Mapping[str, Any],
                extra: Mapping[str, float] = {}) -> None:
            # a control's pair is renamed with it: the MAE arm of its point
            matched = {"matches": grid_point("mae", side, epochs)} if result.get("matches") else {}
            runs.append({**result, "arm": grid_point(arm_key, side, epochs), **matched})
            values = {"test_accuracy": result["test_accuracy"], "total_seconds": result["total_seconds"],
                      "tflops": result["flops"] / 1e12, **extra}      # the FLOPs the run recorded
            rows.extend({"side": side, "positions": side * side, "pretrain_epochs": epochs, "arm": arm_key,
                         "seed": seed, "metric": m, "value": float(v)} for m, v in values.items())

        first = point_settings(settings, settings["pretrain_grid"][0])
        for seed in seeds:                                          # the classification arm: once per side
            result = common.run_arm(ARMS["classification"], seed, first, **kwargs)
            add("classification", 0, seed, result,
                structure(ARMS["classification"], seed, first, 1, train_data, runs_dir=runs_dir, **data))
        for epochs in settings["pretrain_grid"]:
            point = point_settings(settings, epochs)
            budget = flop_budget(point, train_data=train_data, **data)
            control = HIP_CLASSIFICATION.replace(label=COMPUTE_MATCHED, steps=budget.control_steps,
                                                 matches=HIP_MAE.label)
            for seed in seeds:
                done = plan.index((side, epochs)) + 1
                result = common.run_arm(ARMS["mae"], seed, point, **kwargs)
                add("mae", epochs, seed, result,
                    structure(ARMS["mae"], seed, point, 0, train_data, runs_dir=runs_dir, **data))
                line = f"    point {done}/{len(plan)}: {side} x {side}, {epochs} MAE epochs, seed {seed}: " \
                       f"MAE {result['test_accuracy']:.2f}%"
                if epochs in settings["controls"]:
                    result = common.run_arm(control, seed, point, matched_row=result, **kwargs)
                    add("control", epochs, seed, result)
                    line += f", FLOP-matched control {result['test_accuracy']:.2f}%"
                print(line, flush=True)
        if side == NATIVE_SIDE:                                     # the splits this side already loaded
            references = baseline_rows(settings, seeds, data_dir=data_dir, splits=(train_data, test_data))
    if NATIVE_SIDE not in settings["sides"]:
        references = baseline_rows(settings, seeds, data_dir=data_dir)
    return Grid(pd.DataFrame(rows), runs, references)


def baseline_rows(settings: Mapping[str, Any], seeds: tuple[int, ...], *, data_dir=None,
                  splits: tuple[Any, Any] | None = None) -> list[dict[str, Any]]:
    """The reference baselines (`regime.baseline_rows`) on the grid's training images at 28 x 28,
    the images every side is made from, per seed; `splits`: those (train, test) sets when loaded."""
    train_data, test_data = splits or load_splits("fashion_mnist", data_dir, {})
    return regime.baseline_rows(ARMS["classification"], seeds, settings, family="images", dataset="fashion_mnist",
                                data_dir=data_dir, data_options={}, train_data=train_data, test_data=test_data)


def read_regime(folder: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """regime.read of a results folder; ([], [], []) for one written before notebook 06 kept its
    runs (curve.csv only)."""
    if not (Path(folder) / common.RUNS).is_file():
        print(f"{Path(folder).name}: these results hold no runs.json (written before the regime was "
              f"recorded), so no baselines or learning curves; train = True makes them")
        return [], [], []
    return regime.read(folder)


def point_accuracies(curve: pd.DataFrame) -> dict[str, list[float]]:
    """{point name: test top-1 per seed}, classification first, then by side and MAE length."""
    order = {"classification": 0, "mae": 1, "control": 2}
    per_point = curve[curve["metric"] == "test_accuracy"].groupby(["side", "pretrain_epochs", "arm"])["value"]
    keys = sorted(per_point.groups, key=lambda k: (k[0], k[1], order[k[2]]))
    return {grid_point(arm, int(side), int(epochs)): per_point.get_group((side, epochs, arm)).astype(float).tolist()
            for side, epochs, arm in keys}


def _wide(curve: pd.DataFrame, metric: str) -> pd.DataFrame:
    return curve[curve["metric"] == metric].pivot_table(
        index=["side", "seed"], columns=["arm", "pretrain_epochs"], values="value")


def effects(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per (side, MAE epochs, comparison): seeds, mean effect in top-1 points, 95%
    interval, the directional verdict ('higher'), and the MAE arm's mean TFLOPs."""
    acc, flops = _wide(curve, "test_accuracy"), _wide(curve, "tflops")
    out = []
    for side in sorted(curve["side"].unique()):
        a, f = acc.loc[side], flops.loc[side]
        for epochs in sorted(e for arm, e in a.columns if arm == "mae"):
            for name, baseline in EFFECTS.items():
                base = a[("classification", 0)] if baseline == "classification" else a.get(("control", epochs))
                if base is None:
                    continue
                diffs = (a[("mae", epochs)] - base).dropna().tolist()
                ci = t_interval(diffs) if len(diffs) > 1 else None
                out.append({"side": int(side), "positions": int(side) ** 2, "pretrain_epochs": int(epochs),
                            "mae_tflops": float(f[("mae", epochs)].mean()), "comparison": name,
                            "seeds": len(diffs), "effect": sum(diffs) / len(diffs) if diffs else math.nan,
                            "low": ci.low if ci else math.nan, "high": ci.high if ci else math.nan,
                            "verdict": directional_verdict("higher", diffs)})
    return pd.DataFrame(out)


def first_reproduced(table: pd.DataFrame, comparison: str = next(iter(EFFECTS))) -> dict[int, int | None]:
    """{side: the shortest MAE length from which every longer one is 'reproduced', or None}."""
    out = {}
    for side, rows in table[table["comparison"] == comparison].groupby("side"):
        rows = rows.sort_values("pretrain_epochs")
        ok = (rows["verdict"] == "reproduced").tolist()
        out[int(side)] = next((int(e) for i, e in enumerate(rows["pretrain_epochs"]) if all(ok[i:])), None)
    return out


def structure_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Per side and table (classification-learned, MAE after E epochs): the seeds, the mean
    partial score, the mean best content-only control, and F7's decision over the seeds
    (`position_tables.decide`). A curve written before the partial score gives its raw score
    instead, under position_tables.SUPERSEDED (`superseded_table`)."""
    metrics = set(curve["metric"])
    if GEOMETRY not in metrics and RAW in metrics:
        return superseded_table(curve)
    columns = ["side", "arm", "pretrain_epochs", "seeds", "partial_score", "best_control", "holds_geometry"]
    scored = curve[curve["metric"].isin([GEOMETRY, CONTROL])]
    if scored.empty:
        return pd.DataFrame(columns=columns)
    wide = scored.pivot_table(index=["side", "arm", "pretrain_epochs", "seed"], columns="metric", values="value")
    wide = wide.reindex(columns=[GEOMETRY, CONTROL])
    lacking = wide[wide.isna().any(axis=1)]
    if len(lacking):
        side, arm, epochs, seed = lacking.index[0]
        raise ValueError(f"the curve's {arm} table at side {side}, {epochs} MAE epochs, seed {seed} lacks "
                         f"{' and '.join(m for m in (GEOMETRY, CONTROL) if pd.isna(lacking.iloc[0][m]))}: "
                         f"each scored table needs both {GEOMETRY} and {CONTROL}")
    rows = [{"side": int(side), "arm": arm, "pretrain_epochs": int(epochs), "seeds": len(seeds),
             "partial_score": seeds[GEOMETRY].mean(), "best_control": seeds[CONTROL].mean(),
             "holds_geometry": pt.decide(seeds[GEOMETRY].tolist(), {"best": seeds[CONTROL].tolist()})}
            for (side, arm, epochs), seeds in wide.groupby(level=["side", "arm", "pretrain_epochs"], sort=True)]
    return pd.DataFrame(rows, columns=columns)


def superseded_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Per side and table of a curve written before the partial score: the seeds and the mean raw
    structure score, under position_tables.SUPERSEDED."""
    raw = curve[curve["metric"] == RAW]
    return raw.groupby(["side", "arm", "pretrain_epochs"], sort=True).agg(
        seeds=("seed", "count"), **{pt.SUPERSEDED: ("value", "mean")}).reset_index()


def is_superseded(structures: pd.DataFrame) -> bool:
    """Whether a structure table is `superseded_table`'s (results to rerun)."""
    return pt.SUPERSEDED in structures.columns


def structure_markdown(structures: pd.DataFrame) -> str:
    """Markdown of a structure table: scores signed to three places (`position_tables.shown`),
    or a superseded table's raw score (`structure_sentences` says to rerun)."""
    if is_superseded(structures):
        return markdown(structures.round(4))
    return pt.shown(structures)


def structure_sentences(structures: pd.DataFrame) -> list[str]:
    """Per side, each table's partial score beside its best content-only control's and F7's
    decision (`position_tables.sentence`); for a superseded table, the line saying to rerun."""
    if is_superseded(structures):
        return [pt.RERUN]
    def name(row) -> str:
        epochs = f"{row.pretrain_epochs} MAE epoch{'s' if row.pretrain_epochs != 1 else ''}"
        return f"{row.side} x {row.side}, " + (f"MAE-learned after {epochs}" if row.arm == "mae"
                                               else "classification-learned")

    return [pt.sentence(name(row), row._asdict()) for row in structures.itertuples(index=False)]


def draw(table: pd.DataFrame, structures: pd.DataFrame) -> plt.Figure:
    """Effect against MAE epochs and against the MAE arm's TFLOPs (one line per side and
    comparison, 95% intervals), and F7's partial score against MAE epochs (`draw_structure`)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[2].set_xscale("log")
    styles = {name: style for name, style in zip(EFFECTS, ("-o", "--s"))}
    colours = dict(zip(sorted(table["side"].unique()), ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for (side, name), rows in table.groupby(["side", "comparison"], sort=False):
        rows = rows.sort_values("pretrain_epochs")
        for ax, x in ((axes[0], "pretrain_epochs"), (axes[1], "mae_tflops")):
            err = [rows["effect"] - rows["low"], rows["high"] - rows["effect"]]
            ax.errorbar(rows[x], rows["effect"], yerr=err, fmt=styles[name], color=colours[side], capsize=3,
                        label=f"{side}x{side}: {name}")
    grid = sorted(table["pretrain_epochs"].unique())
    for ax, label in ((axes[0], "MAE pretraining epochs"), (axes[1], "MAE arm training TFLOPs")):
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xscale="log", xlabel=label, ylabel="top-1 points (mean, 95% interval)")
    for ax in (axes[0], axes[2]):
        ax.set_xticks(grid, [str(e) for e in grid])
        ax.minorticks_off()
    axes[0].set_title("F1 effect against MAE length")
    axes[1].set_title("... against training compute")
    axes[0].legend(fontsize=8)
    draw_structure(axes[2], structures, colours)
    fig.tight_layout()
    return fig


def draw_structure(ax: plt.Axes, structures: pd.DataFrame, colours: Mapping[int, str]) -> None:
    """F7's panel: per side, the MAE-learned table's partial score against MAE epochs (solid),
    its best content-only control's (dashed), the classification-learned table's (dotted), 0
    marked; a superseded table (results to rerun) says so instead of drawing its raw score."""
    if is_superseded(structures):
        ax.text(0.5, 0.5, "these results predate the partial score:\nrerun the profile", ha="center",
                va="center", transform=ax.transAxes)
        ax.set(title="F7: partial score (not in these results)", yticks=[])
        return
    ax.axhline(0, color="grey", lw=0.8)
    for side, rows in structures[structures["arm"] == "mae"].groupby("side"):
        rows = rows.sort_values("pretrain_epochs")
        ax.plot(rows["pretrain_epochs"], rows["partial_score"], "-o", color=colours[side], label=f"{side}x{side} MAE")
        ax.plot(rows["pretrain_epochs"], rows["best_control"], "--", color=colours[side],
                label=f"{side}x{side} best content-only control")
        cls = structures[(structures["arm"] == "classification") & (structures["side"] == side)]
        if len(cls):
            ax.axhline(float(cls["partial_score"].iloc[0]), color=colours[side], ls=":",
                       label=f"{side}x{side} classification-learned")
    ax.set(xlabel="MAE pretraining epochs", ylabel="partial score (0: none beyond content)",
           title="F7: geometry beyond content (dashed: control)")
    ax.legend(fontsize=8)


def draw_longest(settings: Mapping[str, Any], *, seed: int = 0, runs_dir=None, data_dir=None) -> plt.Figure:
    """PCA and similarity maps of the MAE-learned (pretrained, fine-tuned) and the
    classification-learned tables of the longest MAE run at the largest side."""
    side, epochs = max(settings["sides"]), max(settings["pretrain_grid"])
    data = dict(dataset="fashion_mnist", data_dir=data_dir, data_options=data_options(side), runs_dir=runs_dir)
    arms = {"hip_mae": ARMS["mae"], "hip_classification": ARMS["classification"]}
    tables, spec = position_tables(arms, seed, point_settings(settings, epochs), **data)
    h, w = spec.grid
    fig = plots.draw_position_tables(tables, spec.order, h, w, chosen_pixels(h, w))
    fig.suptitle(f"{side} x {side}, {epochs} MAE epochs, seed {seed}")
    return fig


def merge(parts: list[pd.DataFrame], names: list[str] | None = None) -> pd.DataFrame:
    """One curve from parts run separately (sides or seeds apart); a row twice is an error, and
    so is a part that is not a curve (named by `names`, the files they came from)."""
    key = ["side", "pretrain_epochs", "arm", "seed", "metric"]
    for i, part in enumerate(parts):
        lacking = [k for k in [*key, "value"] if k not in part.columns]
        if lacking:
            what = names[i] if names else f"part {i + 1}"
            raise ValueError(f"{what} is not a curve.csv of notebook 06's grid (no column "
                             f"{', '.join(lacking)})")
    curve = pd.concat(parts, ignore_index=True)
    twice = curve[curve.duplicated(key, keep=False)]
    if len(twice):
        raise ValueError(f"{len(twice)} rows appear in more than one part, e.g. {twice.iloc[0][key].to_dict()}")
    return curve.sort_values(key, kind="stable", ignore_index=True)


def read_curve(path: str | Path) -> pd.DataFrame:
    """A curve.csv as `write_tables` wrote it (checked as `merge` checks a part)."""
    try:
        frame = pd.read_csv(check_digest(path))           # the file its folder's SHA256SUMS signs
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise ValueError(f"{path} is not a CSV file") from None
    return merge([frame], [str(path)])


class Written(NamedTuple):
    """What write_tables and write made: the tables they computed once, and the files."""
    effects: pd.DataFrame                 # effects(curve)
    structure: pd.DataFrame               # structure_table(curve)
    paths: list[Path]


def write_tables(out, curve: pd.DataFrame) -> Written:
    """curve.csv (tidy), effects.csv and structure.csv into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = Written(effects(curve), structure_table(curve), [out / "curve.csv", out / "effects.csv",
                                                               out / "structure.csv"])
    for frame, path in zip((curve, written.effects, written.structure), written.paths):
        frame.to_csv(path, index=False)
    return written


def write_figures(out, curve: pd.DataFrame, maps: plt.Figure | None = None) -> Written:
    """write_tables, then the figures scaling.png/.svg (and maps.png/.svg when given)."""
    written = write_tables(out, curve)
    fig = draw(written.effects, written.structure)
    written.paths.extend(plots.save_figure(fig, Path(out) / "scaling"))
    plt.close(fig)
    if maps is not None:
        written.paths.extend(plots.save_figure(maps, Path(out) / "maps"))
        plt.close(maps)
    return written


# ---- the notebook's two calls: its results (read or trained), and writing them ----

def results(S) -> regime.Outcome:
    """The grid's runs, baselines and curves, with extra curve, effects and structure (tables):
    read from the committed results (S.reading, a notebook.Setup), else trained here and written
    (curve.csv, effects.csv, structure.csv, runs.json, baselines.csv, curves.csv). Its figure of
    the longest MAE run's tables (maps) draws from the checkpoints when shown."""
    if S.reading:
        curve = read_curve(S.out / "curve.csv")
        return regime.Outcome(*read_regime(S.out), extra={"curve": curve, "effects": effects(curve),
                                                          "structure": structure_table(curve)})
    grid = run_grid(S.settings, S.seeds)
    written = write_tables(S.out, grid.curve)
    outcome = regime.write_outcome(S.out, grid.runs, grid.references, curve=grid.curve, effects=written.effects,
                                   structure=written.structure)
    outcome.figures["maps"] = lambda: draw_longest(S.settings, seed=S.seeds[0])
    return outcome


def write(S, outcome: regime.Outcome) -> None:
    """summary.json (the effects, structure and first MAE length that reproduces F1), provenance."""
    table = outcome.extra["effects"]
    regime.write_results(S, settings=dict(S.settings), seeds=S.seeds, effects=table.to_dict("records"),
                         structure=outcome.extra["structure"].to_dict("records"),
                         first_reproduced={str(k): v for k, v in first_reproduced(table).items()})


def caption(settings: Mapping[str, Any], runs: list[dict[str, Any]] = ()) -> str:
    """A bold first line for the curve's tables: from the runs' plateaus when they are known
    (`regime.caption`), else from the settings (a fixed number of epochs, unless the profile
    trains to the plateau)."""
    if runs:
        return regime.caption(runs)
    if settings.get("plateau"):
        return ""
    return (f"**Early training: each classification run trains {settings['epochs']} epochs, not to its "
            f"validation plateau.**\n\n")


def check_grid(sides: Any, pretrain_grid: Any) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """Notebook parameters: None (the profile's) or lists of sides >= 28 and MAE lengths >= 1."""
    from ..notebook import ParameterError

    out = []
    for name, values, low in (("sides", sides, NATIVE_SIDE), ("pretrain_grid", pretrain_grid, 1)):
        if values is None:
            out.append(None)
            continue
        if (not isinstance(values, (list, tuple)) or not values
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values)
                or len(set(values)) != len(values)):
            raise ParameterError(f"{name}={values!r} is not allowed; give a list of distinct ints >= {low}, "
                                 f"e.g. {[28, 56] if name == 'sides' else [1, 2, 4, 8, 16]}")
        out.append(tuple(sorted(values)))
    return out[0], out[1]


def scale_sentences(table: pd.DataFrame) -> list[str]:
    """What the grid says, computed: per side, from which MAE length F1 is reproduced (every
    longer length too), and how the MAE arm compares with its FLOP-matched control there."""
    lines = []
    first = first_reproduced(table)
    for side, rows in table.groupby("side"):
        grid = sorted(rows["pretrain_epochs"].unique())
        start = first.get(int(side))
        f1 = (f"F1 is reproduced from {start} MAE epochs on (of {', '.join(map(str, grid))})" if start
              else f"F1 is not reproduced at the longest MAE length run ({max(grid)} epochs)")
        ctl = rows[rows["comparison"] == "MAE minus FLOP-matched control"].sort_values("pretrain_epochs")
        if len(ctl):
            last = ctl.iloc[-1]
            f1 += (f"; against a classification-only control with the same FLOPs, the MAE arm at "
                   f"{int(last['pretrain_epochs'])} epochs is {last['effect']:+.2f} points "
                   f"[{last['low']:+.2f}, {last['high']:+.2f}] ({last['verdict']})")
        lines.append(f"{side} x {side} ({int(side) ** 2} positions): {f1}.")
    return lines


def merged_curve(paths: list[str]) -> pd.DataFrame:
    """`merge` of curve.csv parts run apart; ValueError naming a part that is missing or no CSV."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ValueError(f"--merge: no such curve file(s): {', '.join(missing)}")
    parts = []
    for path in paths:
        try:
            parts.append(pd.read_csv(path))
        except (pd.errors.ParserError, UnicodeDecodeError):
            raise ValueError(f"--merge: {path} is not a CSV file") from None
    return merge(parts, names=list(paths))


def cmd_scaling(args) -> int:
    """Trains the grid of notebook 06 (MAE epochs x image sides x seeds, with FLOP-matched
    controls) or merges curve.csv parts run apart (--merge), then writes curve.csv,
    effects.csv, structure.csv and the figures to results/06_scaling/<profile>/ (or --out)."""
    import time

    from .. import provenance
    from ..locations import results_dir

    settings = dict(TABLE[args.profile])
    if args.sides:
        settings["sides"] = tuple(args.sides)
    seeds = tuple(args.seeds) if args.seeds else tuple(settings["seeds"])
    out = Path(args.out) if args.out else results_dir() / "06_scaling" / args.profile
    start = time.perf_counter()
    grid = None if args.merge else run_grid(settings, seeds, runs_dir=args.runs_dir)
    curve = merged_curve(args.merge) if args.merge else grid.curve
    maps = draw_longest(settings, seed=seeds[0], runs_dir=args.runs_dir) if args.maps else None
    written = write_figures(out, curve, maps)
    if grid is not None:          # the regime beside the curve (parts run apart keep theirs in their folders)
        regime.write(out, grid.runs, grid.references, regime.curve_rows(grid.runs))
    merged = f"({len(args.merge)} parts)" if args.merge else None
    provenance.write(out, settings, wall_seconds=time.perf_counter() - start, command=provenance.command(
        "scaling", profile=args.profile, sides=args.sides, seeds=args.seeds, merge=merged, maps=args.maps))
    print(markdown(written.effects.round(2)))
    print("first MAE length from which F1 is reproduced, per side:", first_reproduced(written.effects))
    print("wrote " + ", ".join(provenance.relative(p) for p in written.paths))
    return 0


def add_commands(sub) -> None:
    """`scaling` on an argparse subparsers object."""
    from ..argtypes import non_negative_int, positive_int
    from ..notebook import PROFILES

    scaling = sub.add_parser("scaling", help="the F1 effect and position structure against MAE length and image side",
                             description=cmd_scaling.__doc__)
    scaling.add_argument("--profile", default="quick", choices=PROFILES, help="the grid and settings (default quick)")
    scaling.add_argument("--sides", nargs="+", type=positive_int, default=None,
                         help="image sides to run (default: the profile's; 28 is Fashion-MNIST's own)")
    scaling.add_argument("--seeds", nargs="+", type=non_negative_int, default=None, help="default: the profile's seeds")
    scaling.add_argument("--merge", nargs="+", default=None, metavar="CURVE_CSV",
                         help="merge these curve.csv files instead of training")
    scaling.add_argument("--maps", action="store_true",
                         help="also draw the position tables of the longest MAE run (needs its runs in the cache)")
    scaling.add_argument("--runs-dir", default=None,
                         help="the run cache (default: the checkout's runs/ or $HIPCORE_RUNS)")
    scaling.add_argument("--out", default=None, help="the folder to write (default results/06_scaling/<profile>)")
    scaling.set_defaults(func=cmd_scaling)
