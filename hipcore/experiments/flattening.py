"""02_flattening_ablation: does the order pixels are flattened in matter, with and without MAE?

HiP cuts the flattened input into contiguous groups, so the flattening order decides which
pixels a first-level group sees: rows in raster order, columns in column-major order, compact
blocks along a Hilbert curve, scattered pixels when shuffled. The paper (finding F4) shuffles
pixels with one fixed permutation and loses 4.7 top-1 points with MAE, 1.3 without.

Verdicts rest on raster vs shuffled, with and without MAE; column-major and Hilbert are shown
beside them at 'full' (fewer seeds). The raster arms are configured exactly as in notebooks
01 and 03 (common.IMAGE_TABLE, learned positions, mask ratio 0.85, transfer 'all'), so they
are the same cached runs.
"""

from __future__ import annotations

from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import plots
from ..config import variant as variant_config
from ..data import IMAGE_ORDERINGS, to_grid
from ..notebook import ParameterError, choose_list, read_summary
from . import common, orderings, regime
from .image_arms import record_findings

NOTEBOOK = "02_flattening_ablation"     # notebooks/<NOTEBOOK>.ipynb, its results in results/<NOTEBOOK>/<profile>/

VERDICT_ORDERINGS = ("raster", "shuffled")

# Per profile: IMAGE_TABLE's training settings, plus which orders run and how many of the
# seeds the orders no verdict rests on (column, Hilbert) get.
TABLE = common.profiles({
    "smoke": {**common.IMAGE_PROFILES["smoke"], "orderings": VERDICT_ORDERINGS, "other_seeds": 1},
    "binder": {**common.IMAGE_PROFILES["binder"], "orderings": VERDICT_ORDERINGS, "other_seeds": 1},
    # 'quick' keeps to the two orders the verdicts rest on, to fit the 90-minute budget;
    # column-major and Hilbert run at 'full', or at any profile with the notebook's `pixel_orderings`.
    "quick": {**common.IMAGE_PROFILES["quick"], "orderings": VERDICT_ORDERINGS, "other_seeds": 1},
    "full": {**common.IMAGE_PROFILES["full"], "orderings": IMAGE_ORDERINGS, "other_seeds": 3},
    "paper": {**common.IMAGE_PROFILES["paper"], "orderings": IMAGE_ORDERINGS, "other_seeds": 3},
    "converged": {**common.IMAGE_PROFILES["converged"], "orderings": VERDICT_ORDERINGS, "other_seeds": 3},
}, {"orderings": "pixel orders that run",
    "other_seeds": "seeds of the orders no verdict rests on"})

# The paper's ablation rows (results/paper_reference.csv) for the arms it ran.
PAPER_KEYS = {"raster + MAE": "ablation.learned_mae_raster", "raster, no MAE": "ablation.learned_raster",
              "shuffled + MAE": "ablation.learned_mae_shuffled", "shuffled, no MAE": "ablation.learned_shuffled"}


def check_orderings(value: Any) -> tuple[str, ...]:
    """The notebook's `pixel_orderings`: a list of pixel orders that holds the two verdicts rest on."""
    orders = choose_list("pixel_orderings", value, IMAGE_ORDERINGS)
    missing = [name for name in VERDICT_ORDERINGS if name not in orders]
    if missing:
        raise ParameterError(f"pixel_orderings must include {' and '.join(VERDICT_ORDERINGS)} (the verdicts "
                             f"compare them); {', '.join(missing)} missing from {list(orders)}")
    return orders


def label(ordering: str, mae: bool) -> str:
    return f"{ordering} + MAE" if mae else f"{ordering}, no MAE"


def arm(ordering: str, mae: bool) -> common.Arm:
    """HiP with learned positions in one pixel order; mask ratio and transfer as in IMAGE_TABLE's arms."""
    return common.Arm(label(ordering, mae), mae=mae, ordering=ordering)


def plan(order_names: tuple[str, ...], seeds: tuple[int, ...], other_seeds: int) -> list[tuple[common.Arm, int]]:
    """(arm, seed) runs: every seed for raster and shuffled, the first `other_seeds` for the rest."""
    runs = []
    for ordering in order_names:
        for seed in seeds if ordering in VERDICT_ORDERINGS else seeds[:other_seeds]:
            runs += [(arm(ordering, True), seed), (arm(ordering, False), seed)]
    return runs


def queue_arms(settings: Mapping[str, Any]) -> dict[str, tuple[common.Arm, None]]:
    """{key: (arm, None)} of the orders the verdicts rest on, with and without MAE, for the
    converged queue (hipcore.converge); none is FLOP-matched."""
    return {f"{o}{'_mae' if mae else ''}": (arm(o, mae), None)
            for o in settings["orderings"] if o in VERDICT_ORDERINGS for mae in (True, False)}


INTERACTION = "F4 shuffling costs more with MAE (cost with MAE minus cost without)"


def shuffle_cost(mae: bool) -> dict[str, float]:
    """Shuffled minus raster accuracy, as arm weights."""
    return {label("shuffled", mae): 1.0, label("raster", mae): -1.0}


# (finding, claim, paper key, baseline, treatment[, kind]) for image_arms.record_findings: F4
# with and without MAE (shuffled minus raster, paired by seed), and F4's point as the paper
# states it: shuffling costs more with MAE (the cost with MAE minus the cost without).
FINDINGS = (
    ("F4 shuffled minus raster pixels, with MAE", "lower", "effect.F4_shuffle_with_mae",
     label("raster", True), label("shuffled", True)),
    ("F4 shuffled minus raster pixels, without MAE", "lower", "effect.F4_shuffle_without_mae",
     label("raster", False), label("shuffled", False)),
    (INTERACTION, "lower", "effect.F4_interaction", shuffle_cost(False), shuffle_cost(True), "interaction"),
)


def contrasts(rows: list[dict[str, Any]]) -> dict[str, tuple[dict[str, float], dict[str, float] | None]]:
    """Comparisons shown without a verdict (orderings.contrast_table), for the arms that ran."""
    ran = {r["arm"] for r in rows}
    r, s = (label("raster", True), label("raster", False)), (label("shuffled", True), label("shuffled", False))
    out = {
        "MAE gain, raster": ({r[0]: 1, r[1]: -1}, {PAPER_KEYS[r[0]]: 1, PAPER_KEYS[r[1]]: -1}),
        "MAE gain, shuffled": ({s[0]: 1, s[1]: -1}, {PAPER_KEYS[s[0]]: 1, PAPER_KEYS[s[1]]: -1}),
    }
    for ordering in ("column", "hilbert"):
        for mae in (True, False):
            name = f"{ordering} minus raster, {'with' if mae else 'without'} MAE"
            out[name] = ({label(ordering, mae): 1, label("raster", mae): -1}, None)
    return {k: v for k, v in out.items() if set(v[0]) <= ran}


# ---- the notebook's two calls: its results (read or trained), and writing them ----

def results(S, data: Mapping[str, Any]) -> regime.Outcome:
    """Every order's runs, the baselines, curves and the position tables' structure: read from
    the committed results (S.reading, a notebook.Setup), else trained here, written, and the
    findings recorded. Its figure of the tables draws from the checkpoints when shown."""
    if S.reading:
        return regime.read_outcome(S.out, structure=read_summary(S.out)["structure"])
    rows = orderings.run_grid(plan(S["orderings"], S.seeds, S["other_seeds"]), S.settings, **data)
    # Logistic regression, an MLP and a small CNN on the raster arms' training images, per seed.
    references = regime.baseline_rows(arm("raster", True), S.seeds, S.settings, family="images", **data)
    outcome = regime.write_outcome(S.out, rows, references)
    record_findings(S.out / "comparisons.csv", rows, FINDINGS)
    tables, grid = position_tables(S.settings, S.seeds[0], **data)
    outcome.extra["structure"] = structure_rows(tables, grid)
    outcome.figures["position_tables"] = lambda: draw_tables(tables, grid)
    return outcome


def draw_tables(tables: Mapping[str, torch.Tensor], grid: tuple[int, int]) -> plt.Figure:
    """Each raster-ordered table's similarity maps at three pixels (plots.draw_position_tables)."""
    h, w = grid
    return plots.draw_position_tables(tables, None, h, w, pixels=[(h // 4, w // 4), (h // 2, w // 2),
                                                                  (3 * h // 4, 2 * w // 3)])


def write(S, outcome: regime.Outcome, dataset: str) -> None:
    """metrics.csv (test metrics, structure scores), arms.csv, summary.json, provenance."""
    structure = outcome.extra["structure"]
    metrics = common.metric_rows(outcome.rows) + [
        {"run_id": r["table"], "seed": S.seeds[0], "split": "positions", "metric": m, "value": r[m]}
        for r in structure for m in ("structure_pixels", "structure_pixels_chance_sd")]
    regime.write_results(S, metrics=metrics, rows=outcome.rows, settings=dict(S.settings), seeds=S.seeds,
                         dataset=dataset, findings=[f.__dict__ for f in regime.findings(S.out)], structure=structure,
                         regime=regime.label(outcome.rows), runs=regime.run_records(outcome.rows))


def first_level_groups(variant: str) -> int:
    return variant_config(variant).blocks[0].groups


def draw_orderings(image: np.ndarray, orders: Mapping[str, torch.Tensor | None], num_groups: int) -> plt.Figure:
    """The image under each order's first-level groups (colours: contiguous groups of the sequence)."""
    h, w = image.shape[:2]
    fig, axes = plt.subplots(1, len(orders), figsize=(2.4 * len(orders), 2.7), squeeze=False)
    for ax, (name, order) in zip(axes[0], orders.items()):
        ax.imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None)
        ax.imshow(plots.group_map(h * w, num_groups, order, h, w), cmap="tab20", alpha=0.55,
                  interpolation="nearest")
        ax.set_title(f"{name}: {num_groups} groups", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def raster_table(table: torch.Tensor, order: torch.Tensor | None, height: int, width: int) -> torch.Tensor:
    """A position table [M, E] in input order, rearranged to raster order on the pixel grid."""
    return to_grid(table, order, height, width).reshape(height * width, -1)


def position_tables(settings: Mapping[str, Any], seed: int,
                    **kwargs: Any) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
    """Position tables in raster order, for raster and shuffled pixels: MAE-learned and
    classification-learned (orderings.learned_tables), and a fresh one; and the grid (H, W)."""
    arms = [arm(o, mae) for o in VERDICT_ORDERINGS for mae in (True, False)]
    tables = orderings.learned_tables(arms, seed, settings, "image", **kwargs)
    grid = next(iter(tables.values()))[1].grid
    return {name: raster_table(t, spec.order, *grid) for name, (t, spec) in tables.items()}, tuple(grid)


def structure_rows(tables: Mapping[str, torch.Tensor], grid: tuple[int, int]) -> list[dict[str, Any]]:
    """Structure score (and its chance sd) of each raster-ordered table against pixel distance,
    on all pixels or a fixed subset of 2,048 (orderings.subset)."""
    keep = orderings.subset(grid[0] * grid[1])
    dist = orderings.grid_distances(keep, grid[1])
    rows = []
    for name, table in tables.items():
        score, chance = orderings.structure_score(table[keep], dist)
        rows.append({"table": name, "structure_pixels": score, "structure_pixels_chance_sd": chance})
    return rows
