"""03_mae_positional_embeddings: what MAE pretraining gives learned positions (F1-F3, F7).

Arms, all HiP in raster order:
- MAE-learned positions, classification-learned positions, Fourier features: imported from
  imagenet_comparison, so they are the same cached runs as notebook 01's;
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

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd
import torch

from ..model import HiP
from ..notebook import ParameterError
from ..results import fmt_mean_sd, markdown
from .. import report
from ..train import load_model
from ..train.engine import compute_loss, freeze_decoder, load_data, model_config
from . import common
from .common import Arm
from .imagenet_comparison import HIP_CLASSIFICATION, HIP_FOURIER, HIP_MAE

FOURIER_MAE = "HiP, Fourier features + MAE"
COMPUTE_MATCHED = "HiP, classification-learned, compute-matched"
POSITIONS_ONLY = "HiP, MAE positions only (trainable)"
# The position tables' names in the F7 figure and its structure scores.
MAE_PRETRAINED, MAE_FINE_TUNED = "MAE-learned (pretrained)", "MAE-learned (fine-tuned)"
CLASSIFICATION_LEARNED = "classification-learned"

ALL_ARMS = ("hip_mae", "hip_classification", "hip_fourier", "hip_fourier_mae", "compute_matched",
            "positions_only", "mask_ratio")
# Arms no verdict rests on get only the first settings['other_seeds'] seeds.
OTHER_ARMS = ("mask_ratio",)

# Per profile: common.IMAGE_TABLE's training settings (shared arms hit the cache), which arms
# run (smoke: the MAE arm and the two the F7 figure sets beside it; every other arm is the
# same code with other Arm fields), and how many seeds the arms in OTHER_ARMS get.
TABLE: dict[str, dict[str, Any]] = {
    "smoke": {**common.IMAGE_TABLE["smoke"], "arms": ("hip_mae", "hip_classification", "hip_fourier"),
              "other_seeds": 1},
    "binder": {**common.IMAGE_TABLE["binder"], "arms": ALL_ARMS, "other_seeds": 1},
    # quick: the second masking ratio (an MAE pretraining of its own) and the positions-only
    # transfer move to full: no verdict rests on them.
    "quick": {**common.IMAGE_TABLE["quick"], "arms": tuple(a for a in ALL_ARMS if a not in ("mask_ratio", "positions_only")),
              "other_seeds": 1},
    "full": {**common.IMAGE_TABLE["full"], "arms": ALL_ARMS, "other_seeds": 3},
    "paper": {**common.IMAGE_TABLE["paper"], "arms": ALL_ARMS, "other_seeds": 3},
}

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
        "compute_matched": HIP_CLASSIFICATION.replace(label=COMPUTE_MATCHED, steps=control_steps),
        "positions_only": mae.replace(label=POSITIONS_ONLY, transfer="positions"),
        "mask_ratio": mae.replace(label=mask_label(compare_mask_ratio), mask_ratio=compare_mask_ratio),
    }
    if control_steps is None:
        every.pop("compute_matched")
    return {key: every[key] for key in settings["arms"] if key in every}


# ---- the compute-matched control: FLOPs, not epochs ----

@dataclass(frozen=True)
class FlopBudget:
    """FLOPs of one training step (forward + backward, torch.utils.flop_counter) of MAE
    pretraining and of classification, the MAE arm's steps of each, and the control's steps."""

    pretrain_step_flops: int
    supervised_step_flops: int
    pretrain_steps: int
    supervised_steps: int

    @property
    def mae_arm_flops(self) -> int:
        return self.pretrain_steps * self.pretrain_step_flops + self.supervised_steps * self.supervised_step_flops

    @property
    def control_steps(self) -> int:
        """Supervised steps whose FLOPs come nearest the MAE arm's pretraining + fine-tuning."""
        return max(1, round(self.mae_arm_flops / self.supervised_step_flops))

    @property
    def control_flops(self) -> int:
        return self.control_steps * self.supervised_step_flops


def step_flops(cfg, train_set) -> int:
    """FLOPs of one training step of `cfg` (one batch, forward and backward) on `train_set`."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(cfg.seed)
    model = HiP(model_config(cfg, train_set.num_classes if cfg.task == "supervised" else 0),
                       train_set.modalities)
    if cfg.task == "supervised":
        freeze_decoder(model)
    inputs, labels = train_set.get_batch(torch.arange(min(cfg.batch_size, len(train_set))), train=True)
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _, _ = compute_loss(model, model, inputs, labels, cfg)
        loss.backward()
    return int(counter.get_total_flops())


def flop_budget(settings: Mapping[str, Any], *, train_data=None, **data: Any) -> FlopBudget:
    """The FLOP budget of the MAE arm (seed 0; every seed takes the same steps) and the
    control's matching number of supervised steps. data: dataset, data_dir, data_options."""
    pre, sup = common.train_configs(HIP_MAE, 0, settings, **data)
    train_set, _ = load_data(sup, train_data, train_data)          # the test split is not used here
    per_epoch = len(train_set) // sup.batch_size                   # the loader drops the last partial batch
    if per_epoch == 0:
        raise ValueError(f"batch {sup.batch_size} is larger than the {len(train_set)} training examples")
    return FlopBudget(pretrain_step_flops=step_flops(pre, train_set), supervised_step_flops=step_flops(sup, train_set),
                      pretrain_steps=pre.max_steps or pre.epochs * per_epoch,
                      supervised_steps=sup.max_steps or sup.epochs * per_epoch)


def budget_table(budget: FlopBudget, rows: list[dict[str, Any]]) -> str:
    """Markdown: FLOPs and measured wall time of the MAE arm and of its FLOP-matched control."""
    seconds = pd.DataFrame(rows, columns=["arm", "total_seconds"]).groupby("arm")["total_seconds"].mean()

    def wall(label: str) -> str:
        return f"{seconds[label]:.0f} s" if label in seconds else "not run"

    b = budget
    return markdown(pd.DataFrame({
        "arm": [HIP_MAE.label, COMPUTE_MATCHED],
        "MAE pretraining": [f"{b.pretrain_steps} steps x {b.pretrain_step_flops / 1e9:.1f} GFLOP", "-"],
        "classification": [f"{steps} steps x {b.supervised_step_flops / 1e9:.1f} GFLOP"
                           for steps in (b.supervised_steps, b.control_steps)],
        "total TFLOP": [f"{b.mae_arm_flops / 1e12:.2f}", f"{b.control_flops / 1e12:.2f}"],
        "wall time (mean over seeds)": [wall(HIP_MAE.label), wall(COMPUTE_MATCHED)]}))


def plan(arms_by_key: Mapping[str, Arm], seeds: tuple[int, ...], other_seeds: int) -> list[tuple[Arm, tuple[int, ...]]]:
    """(arm, seeds) to run: every seed, or the first `other_seeds` for arms no verdict rests on."""
    return [(arm, seeds[:other_seeds] if key in OTHER_ARMS else seeds) for key, arm in arms_by_key.items()]


def run_plan(runs: list[tuple[Arm, tuple[int, ...]]], settings: Mapping[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
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

def checkpoints(arm: Arm, seed: int, settings: Mapping[str, Any], **data: Any) -> tuple[Path | None, Path]:
    """(MAE pretraining checkpoint or None, classifier checkpoint) of one arm and seed.
    data: dataset, data_dir, data_options, as for common.train_configs."""
    pre, sup = common.train_configs(arm, seed, settings, **data)
    return (None if pre is None else Path(pre.run_dir) / "last.pt"), Path(sup.run_dir) / "last.pt"


def draw_reconstructions(arm: Arm, seed: int, settings: Mapping[str, Any], test_data, count: int = 4,
                         **data: Any) -> plt.Figure:
    """input | masked | reconstruction for the first `count` test images, from the arm's MAE
    checkpoint, masked as in its pretraining (the evaluation masks of that seed)."""
    pre, _ = checkpoints(arm, seed, settings, **data)
    if pre is None:
        raise ValueError(f"arm {arm.label!r} has no MAE pretraining")
    return common.reconstruction_figure(load_model(pre), test_data, mask_ratio=arm.mask_ratio, seed=seed, count=count)


def position_tables(arms_by_key: Mapping[str, Arm], seed: int, settings: Mapping[str, Any],
                    modality: str = "image", **data: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """({name: position embedding [M, E] in input order}, the modality's spec) for one seed.

    The embedding is model.positions(modality): a learned table itself when its width is E
    (projected otherwise), or the projected Fourier features. MAE-learned after pretraining
    and after fine-tuning, classification-learned, and Fourier (a reference with geometry
    built in), for those arms that ran."""
    wanted = [("hip_mae", 0, MAE_PRETRAINED), ("hip_mae", 1, MAE_FINE_TUNED),
              ("hip_classification", 1, CLASSIFICATION_LEARNED), ("hip_fourier", 1, "Fourier (trained projection)")]
    return model_tables({name: load_model(checkpoints(arms_by_key[key], seed, settings, **data)[which])
                         for key, which, name in wanted if key in arms_by_key}, modality)


def model_tables(models: Mapping[str, HiP], modality: str = "image") -> tuple[dict[str, torch.Tensor], Any]:
    """({name: model.positions(modality) [M, E]}, the modality's spec) of the models given."""
    tables, spec = {}, None
    for name, model in models.items():
        with torch.no_grad():
            tables[name] = model.positions(modality).float()
        spec = model.modalities[modality]
    return tables, spec


def shipped_tables(shipped, modality: str = "image") -> tuple[dict[str, torch.Tensor], Any]:
    """position_tables from the shipped weights (`hipcore.pretrained.Pair`): the MAE-learned
    table after pretraining and after fine-tuning."""
    mae, classifier = shipped.models()
    return model_tables({MAE_PRETRAINED: mae, MAE_FINE_TUNED: classifier}, modality)


def structure_sentence(structure: list[dict[str, Any]]) -> str:
    """How the MAE-learned table's pixel-grid structure compares with the classification-learned
    one's (or, from the shipped weights, with itself after fine-tuning)."""
    score = {r["table"]: r for r in structure}
    if CLASSIFICATION_LEARNED in score:
        names, other = ("The MAE-learned table", "the classification-learned one"), score[CLASSIFICATION_LEARNED]
    else:
        names, other = ("The MAE-learned table after pretraining", "after fine-tuning"), score[MAE_FINE_TUNED]
    mae = score[MAE_PRETRAINED]
    return report.compare_scores(names[0], mae["structure"], names[1], other["structure"],
                                 mae["chance_sd"], other["chance_sd"], what="pixel-grid structure")


def chosen_pixels(height: int, width: int) -> list[tuple[int, int]]:
    """Four (row, col) pixels for similarity maps: centre, two upper quarters, lower middle."""
    return [(height // 2, width // 2), (height // 4, width // 4), (height // 4, 3 * width // 4),
            (3 * height // 4, width // 2)]


def geometry_score(table: torch.Tensor, spec, *, draws: int = 10, max_positions: int = 1024,
                   seed: int = 0) -> tuple[float, float]:
    """(score, chance sd) of a position table (see geometry_null)."""
    score, _, chance_sd = geometry_null(table, spec, draws=draws, max_positions=max_positions, seed=seed)
    return score, chance_sd


def geometry_null(table: torch.Tensor, spec, *, draws: int = 10, max_positions: int = 1024,
                  seed: int = 0) -> tuple[float, float, float]:
    """(score, chance mean, chance sd) of a position table [M, E] in input order on its 2-D
    pixel grid.

    score: minus the correlation, over pairs of pixels, between the cosine similarity of their
    embeddings and their distance on the grid: 0 for no geometry, positive when near pixels
    have similar embeddings. chance mean and sd: the score's level and spread when the rows
    are randomly permuted (the same embeddings, no tie to pixels). Above max_positions, a fixed random
    subset of pixels is used."""
    gen = torch.Generator().manual_seed(seed)
    m = table.shape[0]
    keep = torch.randperm(m, generator=gen)[:max_positions] if m > max_positions else torch.arange(m)
    pixel = keep if spec.order is None else spec.order[keep]                 # raster index of each row
    rc = torch.stack([pixel // spec.grid[1], pixel % spec.grid[1]], -1).double()
    i, j = torch.triu_indices(len(keep), len(keep), offset=1)
    dist = torch.cdist(rc, rc)[i, j]
    dist = dist - dist.mean()
    dist = dist / dist.norm()
    x = torch.nn.functional.normalize(table[keep].detach().double(), dim=-1)

    def score(rows: torch.Tensor) -> float:
        sim = (rows @ rows.T)[i, j]
        sim = sim - sim.mean()
        return -(sim @ dist).item() / max(sim.norm().item(), 1e-12)

    chance = [score(x[torch.randperm(len(keep), generator=gen)]) for _ in range(draws)]
    return score(x), statistics.fmean(chance), statistics.stdev(chance)


F7 = ("F7 MAE-learned positions hold more grid geometry than classification-learned ones "
      "(partial score: the data's pixel correlation removed)", "effect.F7_mae_positions_structure")
F7_LEVEL = ("F7 MAE-learned positions hold grid geometry (partial score against the level "
            "content-only tables stay below)", "effect.F7_mae_positions_structure")
GEOMETRY_IMAGES = 2000        # training images the data's pixel correlation is measured on


def record_structure_finding(path: Path, arm: Arm, seeds: tuple[int, ...], settings: Mapping[str, Any],
                             modality: str = "image", control: Arm = HIP_CLASSIFICATION, **data: Any) -> int:
    """F7's paired rows in comparisons.csv, one per seed that both arms ran, scored by
    `geometry.partial_geometry` (row similarity against grid distance with the data's
    pixel correlation, from the seed's training images, removed):

    - F7: the arm's MAE-pretrained table (treatment) against the `control` arm's
      classification-learned table (baseline), paired by seed;
    - F7_LEVEL: the MAE-pretrained table's score (treatment) against `geometry.GEOMETRY_PASS`
      (baseline), the level that content-only control tables stay below; if the MAE tables
      fail it, F7 is not shown whatever the paired difference.

    Returns how many seeds were recorded."""
    from ..geometry import GEOMETRY_PASS, partial_geometry
    from ..report import append_comparison

    recorded = 0
    for seed in seeds:
        mae_checkpoint, control_checkpoint = checkpoints(arm, seed, settings, **data)[0], \
            checkpoints(control, seed, settings, **data)[1]
        if mae_checkpoint is None or not (mae_checkpoint.exists() and control_checkpoint.exists()):
            continue
        _, sup = common.train_configs(arm, seed, settings, **data)
        train_set, _ = load_data(sup)
        inputs, _ = train_set.get_batch(torch.arange(min(GEOMETRY_IMAGES, len(train_set))))
        images = inputs[modality]                                   # [N, M, C] in the table's input order
        scores = []
        for checkpoint in (control_checkpoint, mae_checkpoint):
            model = load_model(checkpoint)
            spec = model.modalities[modality]
            with torch.no_grad():
                table = model.positions(modality).float()            # [M, E]
            scores.append(partial_geometry(table, images, spec.grid, spec.order, seed=seed))
        for name, baseline in ((F7, scores[0]), (F7_LEVEL, GEOMETRY_PASS)):
            append_comparison(path, finding=name[0], claim="higher", paper_key=name[1], metric="geometry score",
                              seed=seed, baseline=baseline, treatment=scores[1])
        recorded += 1
    return recorded


def structure_rows(tables: Mapping[str, torch.Tensor], spec) -> list[dict[str, Any]]:
    """geometry_score of each table: {'table', 'structure', 'chance_sd'}."""
    return [dict(zip(("table", "structure", "chance_sd"), (name, *geometry_score(t, spec))))
            for name, t in tables.items()]
