"""03_mae_positional_embeddings: what MAE pretraining gives learned positions (F1-F3, F7).

Arms, all HiP in raster order:
- MAE-learned positions, classification-learned positions, Fourier features: imported from
  image_arms, so they are the same cached runs as notebook 01's;
- Fourier features + MAE (F3);
- compute-matched control: classification only, for as many steps as match the FLOPs of MAE
  pretraining plus fine-tuning (`flop_budget`, counted by torch's flop counter), so that
  MAE's gain is not just more compute; the paper has no such control;
- positions only: fine-tuning starts from only the MAE-learned positions (trainable), every
  other weight fresh: is the value of MAE in the positions?
- another masking ratio (0.75 beside the default 0.85).
Then reconstructions of masked test images, and the learned tables drawn on the pixel grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd
import torch

from .. import plots
from ..notebook import ParameterError, read_summary
from ..results import fmt_mean_sd, markdown
from ..train import load_model
from . import common, image_arms, regime
from . import position_tables as pt
from .common import Arm
from .image_arms import (
    CLASSIFICATION_LEARNED,
    COMPUTE_MATCHED,
    HIP_CLASSIFICATION,
    HIP_FOURIER,
    HIP_MAE,
    MAE_FINE_TUNED,
    MAE_PRETRAINED,
    FlopBudget,
    checkpoints,
    model_tables,
)

NOTEBOOK = "03_mae_positional_embeddings"     # notebooks/<NOTEBOOK>.ipynb, its results in results/<NOTEBOOK>/<profile>/

FOURIER_MAE = "HiP, Fourier features + MAE"
POSITIONS_ONLY = "HiP, MAE positions only (trainable)"

ALL_ARMS = ("hip_mae", "hip_classification", "hip_fourier", "hip_fourier_mae", "compute_matched",
            "positions_only", "mask_ratio")
# Arms no verdict rests on get only the first settings['other_seeds'] seeds.
OTHER_ARMS = ("mask_ratio",)

# Per profile: common.IMAGE_TABLE's training settings (shared arms hit the cache), which arms
# run (smoke: the MAE arm and the two the F7 figure sets beside it; every other arm is the
# same code with other Arm fields), and how many seeds the arms in OTHER_ARMS get.
TABLE = common.profiles({
    "smoke": {**common.IMAGE_PROFILES["smoke"], "arms": ("hip_mae", "hip_classification", "hip_fourier"),
              "other_seeds": 1},
    "binder": {**common.IMAGE_PROFILES["binder"], "arms": ALL_ARMS, "other_seeds": 1},
    # quick: the second masking ratio (an MAE pretraining of its own) and the positions-only
    # transfer move to full: no verdict rests on them.
    "quick": {**common.IMAGE_PROFILES["quick"],
              "arms": tuple(a for a in ALL_ARMS if a not in ("mask_ratio", "positions_only")),
              "other_seeds": 1},
    "full": {**common.IMAGE_PROFILES["full"], "arms": ALL_ARMS, "other_seeds": 3},
    "paper": {**common.IMAGE_PROFILES["paper"], "arms": ALL_ARMS, "other_seeds": 3},
    "converged": {**common.IMAGE_PROFILES["converged"],
                  "arms": tuple(a for a in ALL_ARMS if a not in ("mask_ratio", "positions_only")),
                  "other_seeds": 3},
}, {"arms": "which arms run", "other_seeds": "seeds of the arms no verdict rests on"})

# The paper's ablation rows (results/paper_reference.csv) for the arms it ran.
PAPER_KEYS = {HIP_MAE.label: "ablation.learned_mae_raster", HIP_CLASSIFICATION.label: "ablation.learned_raster",
              HIP_FOURIER.label: "ablation.fourier_raster", FOURIER_MAE: "ablation.fourier_mae_raster"}

# (finding, claim, paper key, baseline arm, treatment arm): the effect is treatment - baseline.
FINDINGS = (
    ("F1 MAE-learned vs classification-learned positions", "higher",
     "effect.F1_mae_vs_classification_positions", HIP_CLASSIFICATION.label, HIP_MAE.label),
    ("F2 MAE-learned positions vs Fourier features", "higher", "effect.F2_mae_vs_fourier",
     HIP_FOURIER.label, HIP_MAE.label),
    ("F3 MAE on top of Fourier features", "same", "effect.F3_mae_on_fourier", HIP_FOURIER.label, FOURIER_MAE),
    ("F1 against a FLOP-matched classification control (not in the paper)", "higher", "",
     COMPUTE_MATCHED, HIP_MAE.label),
)


def mask_label(ratio: float) -> str:
    return f"HiP, MAE-learned positions, mask {ratio:g}"


def check_mask_ratios(mask_ratio: Any, compare_mask_ratio: Any, shipped=None) -> tuple[float, float]:
    """Both ratios as floats; with the shipped weights (`shipped`), mask_ratio must be the one
    their MAE was trained with (the reconstructions mask that much)."""
    for name, value in (("mask_ratio", mask_ratio), ("compare_mask_ratio", compare_mask_ratio)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            raise ParameterError(f"{name}={value!r} is not allowed; give a fraction in (0, 1), e.g. 0.85 or 0.75")
    if mask_ratio == compare_mask_ratio:
        raise ParameterError(f"compare_mask_ratio must differ from mask_ratio ({mask_ratio})")
    if shipped is not None and mask_ratio != shipped.mask_ratio:
        raise ParameterError(f"mask_ratio={mask_ratio!r}, but the shipped MAE was trained at {shipped.mask_ratio:g}: "
                             f"with pretrained=True leave mask_ratio at {shipped.mask_ratio:g}")
    return float(mask_ratio), float(compare_mask_ratio)


def arms(settings: Mapping[str, Any], mask_ratio: float = 0.85, compare_mask_ratio: float = 0.75,
         control_steps: int | None = None) -> dict[str, Arm]:
    """{key: arm} for settings['arms']. Every MAE arm masks `mask_ratio` of each group except
    the 'mask_ratio' arm, which masks `compare_mask_ratio`; at 0.85 the MAE arm is 01's. The
    compute-matched control trains `control_steps` supervised steps (`flop_budget`); it is
    left out when they are not given."""
    mae = HIP_MAE.replace(mask_ratio=mask_ratio)
    every = {
        "hip_mae": mae,
        "hip_classification": HIP_CLASSIFICATION,
        "hip_fourier": HIP_FOURIER,
        "hip_fourier_mae": HIP_FOURIER.replace(label=FOURIER_MAE, mae=True, mask_ratio=mask_ratio),
        "compute_matched": HIP_CLASSIFICATION.replace(label=COMPUTE_MATCHED, steps=control_steps, matches=mae.label),
        "positions_only": mae.replace(label=POSITIONS_ONLY, transfer="positions"),
        "mask_ratio": mae.replace(label=mask_label(compare_mask_ratio), mask_ratio=compare_mask_ratio),
    }
    if control_steps is None:
        every.pop("compute_matched")
    return {key: every[key] for key in settings["arms"] if key in every}


# ---- the notebook's two calls: its results (read, trained or from the shipped weights), and writing them ----

def results(S, data: Mapping[str, Any], shipped=None, mask_ratio: float = 0.85,
            compare_mask_ratio: float = 0.75) -> regime.Outcome:
    """The arms' runs, baselines, curves, FLOP budget and position-table structure: read from
    the committed results (S.reading, a notebook.Setup), drawn from the shipped weights
    (`shipped`: no arm), or trained here, written, and the findings recorded. Its figures
    (reconstructions, position tables) draw from the checkpoints when shown."""
    if S.reading:
        record = read_summary(S.out)
        budget = FlopBudget.from_record(record.get("flop_budget"))
        chosen = arms(S.settings, mask_ratio, compare_mask_ratio, control_steps=budget and budget.control_steps)
        return regime.read_outcome(S.out, budget=budget, arms=chosen, structure=record["structure"],
                                   geometry=record.get("geometry"))      # None: written before the controls
    train_data, test_data = image_arms.load_splits(data["dataset"], data["data_dir"], data["data_options"])
    if shipped is not None:
        tables, spec = shipped_tables(shipped)
        per_seed = {S.seeds[0]: seed_geometry(tables, spec, S.seeds[0], S.settings, train_data=train_data,
                                              **data)}                             # one seed: undecided
        outcome = regime.Outcome([], [], [], extra=structure_extra(per_seed))
        outcome.figures = {"reconstructions": lambda: common.shipped_reconstructions(shipped, test_data, count=4),
                           "position_tables": lambda: draw_tables(tables, spec)}
        return outcome
    return trained(S, data, train_data, test_data, mask_ratio, compare_mask_ratio)


def trained(S, data: Mapping[str, Any], train_data, test_data, mask_ratio: float,
            compare_mask_ratio: float) -> regime.Outcome:
    """`results` trained here: every arm of the plan, the baselines, both sets of findings."""
    # The compute-matched control gets as many classification steps as match the MAE arm's FLOPs.
    budget = (image_arms.flop_budget(S.settings, train_data=train_data, **data)
              if "compute_matched" in S["arms"] else None)
    chosen = arms(S.settings, mask_ratio, compare_mask_ratio, control_steps=budget and budget.control_steps)
    runs = plan(chosen, S.seeds, S["other_seeds"])
    print(f"profile {S.profile}: {S['variant']} on {data['dataset']}, mask ratio {mask_ratio:g}")
    for arm, arm_seeds in runs:
        print(f"  {arm.label}: seeds {list(arm_seeds)}")
    rows = run_plan(runs, S.settings, train_data=train_data, test_data=test_data, **data)
    # Logistic regression, an MLP and a small CNN on the same training images, per seed.
    references = regime.baseline_rows(chosen["hip_mae"], S.seeds, S.settings, family="images",
                                      train_data=train_data, test_data=test_data, **data)
    outcome = regime.write_outcome(S.out, rows, references, budget=budget, arms=chosen)
    image_arms.record_findings(S.out / "comparisons.csv", rows, FINDINGS)
    record_structure_finding(S.out / "comparisons.csv", chosen["hip_mae"], S.seeds, S.settings, rows, **data)
    outcome.extra.update(structure_extra(seed_tables(chosen, S.seeds, S.settings, train_data, **data)))
    tables, spec = image_arms.position_tables(chosen, S.seeds[0], S.settings, **data)
    outcome.figures = {"reconstructions": lambda: draw_reconstructions(chosen["hip_mae"], S.seeds[0], S.settings,
                                                                       test_data, count=4, **data),
                       "position_tables": lambda: draw_tables(tables, spec)}
    return outcome


def draw_tables(tables: Mapping[str, torch.Tensor], spec) -> plt.Figure:
    """Each table's similarity maps at four chosen pixels (plots.draw_position_tables)."""
    h, w = spec.grid
    return plots.draw_position_tables(tables, spec.order, h, w, image_arms.chosen_pixels(h, w))


def superseded(structure: list[dict[str, Any]]) -> bool:
    """Whether summary.json's structure rows hold the raw structure score (written before the
    partial score: they carry 'structure' and 'chance_sd', not 'partial_score')."""
    return bool(structure) and "partial_score" not in structure[0]


def structure_table(structure: list[dict[str, Any]]) -> str:
    """Markdown: each table's partial score (mean over seeds) beside its best content-only
    control's and F7's decision (`position_tables.structure_rows`); rows written before the
    partial score show their raw score, marked superseded (`structure_sentences` says to rerun)."""
    if superseded(structure):
        return "\n".join([f"| table | {pt.SUPERSEDED} | chance sd |", "|---|---|---|"]
                         + [f"| {r['table']} | {r['structure']:+.3f} | {r['chance_sd']:.3f} |" for r in structure])
    return pt.shown(structure)


def seed_tables(arms_by_key: Mapping[str, Arm], seeds: tuple[int, ...], settings: Mapping[str, Any], train_data,
                **data: Any) -> dict[int, list[dict[str, Any]]]:
    """{seed: seed_geometry of the position tables of the arms that ran (image_arms.position_tables)},
    every table beside the controls; train_data: the loaded training set."""
    return {seed: seed_geometry(*image_arms.position_tables(arms_by_key, seed, settings, **data), seed, settings,
                                train_data=train_data, **data) for seed in seeds}


def structure_extra(per_seed: Mapping[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Outcome extras from {seed: geometry_scores rows}: the structure rows over seeds
    (`position_tables.structure_rows`), the first seed's rows (the geometry table), and the
    rows per seed (metrics.csv)."""
    return {"structure": pt.structure_rows(per_seed), "geometry": per_seed[min(per_seed)], "per_seed": per_seed}


def write(S, outcome: regime.Outcome, dataset: str, mask_ratio: float, compare_mask_ratio: float,
          shipped=None) -> None:
    """metrics.csv (test metrics, each seed's partial scores), arms.csv, summary.json (the
    structure rows over seeds, the first seed's geometry rows), provenance; from the shipped
    weights, their names and the scores only."""
    structure = outcome.extra["structure"]
    positions = position_metrics(outcome.extra.get("per_seed", {}))         # none when reading
    if shipped is not None:
        return regime.write_results(S, metrics=positions, weights=[shipped.mae, shipped.classifier],
                                    structure=structure, geometry=outcome.extra["geometry"])
    budget = outcome.extra["budget"]
    regime.write_results(
        S, metrics=common.metric_rows(outcome.rows) + positions, rows=outcome.rows, dataset=dataset, seeds=S.seeds,
        mask_ratio=mask_ratio, compare_mask_ratio=compare_mask_ratio, settings=dict(S.settings),
        arms=image_arms.arm_summary(outcome.rows, PAPER_KEYS), findings=[f.__dict__ for f in regime.findings(S.out)],
        structure=structure, geometry=outcome.extra["geometry"], regime=regime.label(outcome.rows),
        flop_budget=None if budget is None else {**budget.__dict__, "control_steps": budget.control_steps,
                                                 "mae_arm_flops": budget.mae_arm_flops,
                                                 "control_flops": budget.control_flops})


# A FLOP-matched control: the arm whose recorded FLOPs it trains for (the converged queue).
MATCHES = {"compute_matched": "hip_mae"}


def queue_arms(settings: Mapping[str, Any]) -> dict[str, tuple[Arm, str | None]]:
    """{key: (arm, the key it FLOP-matches or None)} for the converged queue (hipcore.converge),
    which sets a matched control's steps from its match's recorded FLOPs."""
    return {key: (arm, MATCHES.get(key)) for key, arm in arms(settings, control_steps=1).items()}


def position_metrics(per_seed: Mapping[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """metrics.csv rows: per seed and table scored (not the controls), its partial score
    ('geometry') and its best content-only control's ('geometry_control')."""
    return [{"run_id": r["table"], "seed": seed, "split": "positions", "metric": metric, "value": value}
            for seed, scores in per_seed.items() for r in scores if r["kind"] != pt.CONTENT
            for metric, value in (("geometry", r["score"]), ("geometry_control", pt.best_control(scores, r["table"])))]


# ---- the compute-matched control: FLOPs, not epochs ----


def budget_table(budget: FlopBudget, rows: list[dict[str, Any]]) -> str:
    """Markdown: the planned FLOPs, the FLOPs the runs recorded (mean over seeds) and the
    measured wall time of the MAE arm and of its FLOP-matched control."""
    per_arm = pd.DataFrame(rows, columns=["arm", "total_seconds", "flops"]).groupby("arm")
    seconds, flops = per_arm["total_seconds"].mean(), per_arm["flops"].mean()

    def wall(label: str) -> str:
        return f"{seconds[label]:.0f} s" if label in seconds else "not run"

    def used(label: str) -> str:          # runs written before FLOPs were recorded have none
        return f"{flops[label] / 1e12:.2f}" if label in flops and pd.notna(flops[label]) else "not recorded"

    b = budget
    return markdown(pd.DataFrame({
        "arm": [HIP_MAE.label, COMPUTE_MATCHED],
        "MAE pretraining": [f"{b.pretrain_steps} steps x {b.pretrain_step_flops / 1e9:.1f} GFLOP", "-"],
        "classification": [f"{steps} steps x {b.supervised_step_flops / 1e9:.1f} GFLOP"
                           for steps in (b.supervised_steps, b.control_steps)],
        "total TFLOP": [f"{b.mae_arm_flops / 1e12:.2f}", f"{b.control_flops / 1e12:.2f}"],
        "recorded TFLOP (mean over seeds)": [used(HIP_MAE.label), used(COMPUTE_MATCHED)],
        "wall time (mean over seeds)": [wall(HIP_MAE.label), wall(COMPUTE_MATCHED)]}))


def plan(arms_by_key: Mapping[str, Arm], seeds: tuple[int, ...], other_seeds: int) -> list[tuple[Arm, tuple[int, ...]]]:
    """(arm, seeds) to run: every seed, or the first `other_seeds` for arms no verdict rests on."""
    return [(arm, seeds[:other_seeds] if key in OTHER_ARMS else seeds) for key, arm in arms_by_key.items()]


def run_plan(runs: list[tuple[Arm, tuple[int, ...]]], settings: Mapping[str, Any],
             **kwargs: Any) -> list[dict[str, Any]]:
    """common.run_arm for each (arm, seeds), in one numbered plan; kwargs as for common.run_arm."""
    return common.run_plan([(arm, seed) for arm, seeds in runs for seed in seeds], settings, **kwargs)


def contrasts(rows: list[dict[str, Any]], arms_by_key: Mapping[str, Arm]) -> dict[str, tuple[str, str]]:
    """Comparisons shown without a verdict (the paper has no numbers for them), for the arms
    that ran: {name: (baseline arm, treatment arm)}."""
    ran = {row["arm"] for row in rows}
    label = {key: arm.label for key, arm in arms_by_key.items()}
    out = {}
    if "positions_only" in label:
        out["positions only minus classification-learned (what the MAE positions alone give)"] = (
            HIP_CLASSIFICATION.label, POSITIONS_ONLY)
        out["all weights minus positions only (what the rest of the MAE network adds)"] = (
            POSITIONS_ONLY, label.get("hip_mae"))
    if "mask_ratio" in label and "hip_mae" in label:
        mae, other = arms_by_key["hip_mae"], arms_by_key["mask_ratio"]
        out[f"mask {other.mask_ratio:g} minus mask {mae.mask_ratio:g}"] = (mae.label, other.label)
    return {name: pair for name, pair in out.items() if set(pair) <= ran}


def paired_differences(rows: list[dict[str, Any]], baseline: str, treatment: str) -> list[float]:
    """Per-seed treatment - baseline test accuracy, for the seeds both arms ran."""
    acc: dict[str, dict[int, float]] = {}
    for row in rows:
        acc.setdefault(row["arm"], {})[row["seed"]] = row["test_accuracy"]
    seeds = sorted(set(acc.get(baseline, {})) & set(acc.get(treatment, {})))
    return [acc[treatment][s] - acc[baseline][s] for s in seeds]


def contrast_table(rows: list[dict[str, Any]], pairs: Mapping[str, tuple[str, str]]) -> str:
    """Markdown: per-seed differences treatment - baseline, mean ± sd, for the seeds both ran."""
    if not pairs:
        return "None of these arms ran at this profile."
    table = []
    for name, (baseline, treatment) in pairs.items():
        diffs = pd.Series(paired_differences(rows, baseline, treatment), dtype=float)
        table.append({"comparison": name,
                      "ours, top-1 points (mean ± sd over seeds)":
                      fmt_mean_sd(diffs.mean(), diffs.std(), signed=True) if len(diffs) else "n/a",
                      "seeds": len(diffs)})
    return markdown(pd.DataFrame(table))


# ---- checkpoints, reconstructions, position tables ----


def draw_reconstructions(arm: Arm, seed: int, settings: Mapping[str, Any], test_data, count: int = 4,
                         **data: Any) -> plt.Figure:
    """input | masked | reconstruction for the first `count` test images, from the arm's MAE
    checkpoint, masked as in its pretraining (the evaluation masks of that seed)."""
    pre, _ = checkpoints(arm, seed, settings, **data)
    if pre is None:
        raise ValueError(f"arm {arm.label!r} has no MAE pretraining")
    return common.reconstruction_figure(load_model(pre), test_data, mask_ratio=arm.mask_ratio, seed=seed, count=count)


def shipped_tables(shipped, modality: str = "image") -> tuple[dict[str, torch.Tensor], Any]:
    """position_tables from the shipped weights (`hipcore.pretrained.Pair`): the MAE-learned
    table after pretraining and after fine-tuning."""
    mae, classifier = shipped.models()
    return model_tables({MAE_PRETRAINED: mae, MAE_FINE_TUNED: classifier}, modality)


def structure_sentences(structure: list[dict[str, Any]]) -> list[str]:
    """One line per table (`position_tables.sentence`), or the line saying rows written before
    the partial score are superseded."""
    if superseded(structure):
        return [pt.RERUN]
    return [pt.sentence(f"{r['table']} table", r) for r in structure]


F7 = ("F7 MAE-learned positions hold more grid geometry than classification-learned ones "
      "(partial score: the data's pixel correlation removed)", "effect.F7_mae_positions_structure")
F7_LEVEL = ("F7 MAE-learned positions hold grid geometry (partial score against the best content-only "
            "control table of the same seed)", "effect.F7_mae_positions_structure")


def record_structure_finding(path: Path, arm: Arm, seeds: tuple[int, ...], settings: Mapping[str, Any],
                             rows: list[dict[str, Any]], modality: str = "image", control: Arm = HIP_CLASSIFICATION,
                             **data: Any) -> int:
    """F7's paired rows in comparisons.csv, one per seed that both arms ran, every table scored
    by `position_tables.geometry_scores` on the seed's training images:

    - F7: the arm's MAE-pretrained table (treatment) against the `control` arm's
      classification-learned table (baseline), paired by seed;
    - F7_LEVEL: the MAE-pretrained table (treatment) against the best content-only control of
      the same seed (baseline): per-pixel statistics, class-mean images, PCA loadings and the
      MAE table's own rows permuted. The verdict's interval over seeds is the margin
      (`geometry.holds_geometry`): the table holds geometry only when it lies above 0.

    Each row carries whether the runs its tables come from reached their plateau, read from
    `rows` (as `common.run_arm` returns them): both arms' for F7, the MAE arm's for F7_LEVEL.
    Returns how many seeds were recorded."""
    from ..report import append_comparison

    recorded = 0
    for seed in seeds:
        mae_checkpoint, control_checkpoint = checkpoints(arm, seed, settings, **data)[0], \
            checkpoints(control, seed, settings, **data)[1]
        if mae_checkpoint is None or not (mae_checkpoint.exists() and control_checkpoint.exists()):
            continue
        tables, spec = model_tables({CLASSIFICATION_LEARNED: load_model(control_checkpoint),
                                     MAE_PRETRAINED: load_model(mae_checkpoint)}, modality)
        scores = pt.geometry_scores(tables, spec, *pt.training_images(arm, seed, settings, modality, **data), seed,
                                    fourier=False)
        score = {r["table"]: r["score"] for r in scores}
        best_content = pt.best_control(scores, MAE_PRETRAINED)
        for name, baseline, sources in ((F7, score[CLASSIFICATION_LEARNED], {arm.label, control.label}),
                                        (F7_LEVEL, best_content, {arm.label})):
            converged, epochs = common.convergence([r for r in rows if r["arm"] in sources and r["seed"] == seed])
            append_comparison(path, finding=name[0], claim="higher", paper_key=name[1], metric="geometry score",
                              seed=seed, baseline=baseline, treatment=score[MAE_PRETRAINED], converged=converged,
                              epochs=epochs)
        recorded += 1
    return recorded


def geometry_table(scores: list[dict[str, Any]] | None) -> str:
    """Markdown: each table's partial geometry score, learned tables beside the controls (None:
    results written before the controls existed say so)."""
    if not scores:
        return "These results predate F7's content-only controls: `train = True` scores them beside the tables."
    return markdown(pd.DataFrame([{"table": r["table"], "kind": r["kind"],
                                   "partial geometry score": f"{r['score']:+.3f}"} for r in scores]))


def seed_geometry(tables: Mapping[str, torch.Tensor], spec, seed: int, settings: Mapping[str, Any],
                  arm: Arm = HIP_MAE, **data: Any) -> list[dict[str, Any]]:
    """position_tables.geometry_scores of one seed's tables (the 2-D Fourier table beside them) on
    the training images of that seed's run of `arm` (data: as for position_tables.training_images)."""
    return pt.geometry_scores(tables, spec, *pt.training_images(arm, seed, settings, **data), seed)
