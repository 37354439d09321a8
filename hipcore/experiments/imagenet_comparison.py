"""01_imagenet_comparison: the paper's ImageNet table at small scale.

Arms (PAPER.md, "Results to set beside ours"): HiP with MAE-learned positions; a flat
Perceiver IO (the same code with one block and one group) with Fourier features and with
learned positions; HiP with Fourier features; HiP with positions learned by classification
alone. Per arm: test top-1, parameters, training throughput (examples/s).

The three HiP arms, per-arm summaries, the accuracy figure and recording findings are shared
with 03 and 06 (`image_arms`); equal Arm fields under common.IMAGE_TABLE's settings give
equal run ids, so each arm is trained once for all notebooks.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import matplotlib.pyplot as plt
import torch

from ..model import HiP
from ..train import model_config
from . import common, image_arms, regime
from .common import Arm
from .image_arms import (
    HIP_CLASSIFICATION,
    HIP_FOURIER,
    HIP_MAE,
    PERCEIVER_FOURIER,
    PERCEIVER_LEARNED,
    draw_accuracy,
    flop_budget,
    perceiver_arms,
    step_flops,
)

PERCEIVER_MATCHED = "Perceiver IO, Fourier features, FLOP-matched"

ALL_ARMS = ("hip_mae", "perceiver_fourier", "perceiver_learned", "hip_fourier", "hip_classification",
            "perceiver_matched")

NOTEBOOK = "01_imagenet_comparison"     # notebooks/<NOTEBOOK>.ipynb, its results in results/<NOTEBOOK>/<profile>/

# Per profile: common.IMAGE_TABLE's training settings (so shared arms hit the cache), the flat
# baseline's variant, and which arms run (smoke keeps one MAE and one Fourier arm).
TABLE = common.profiles({
    "smoke": {**common.IMAGE_PROFILES["smoke"], "flat_variant": "perceiver_small",
              "arms": ("hip_mae", "perceiver_fourier", "perceiver_matched")},
    "binder": {**common.IMAGE_PROFILES["binder"], "flat_variant": "perceiver_small", "arms": ALL_ARMS},
    "quick": {**common.IMAGE_PROFILES["quick"], "flat_variant": "perceiver_small", "arms": ALL_ARMS},
    "full": {**common.IMAGE_PROFILES["full"], "flat_variant": "perceiver_small", "arms": ALL_ARMS},
    "paper": {**common.IMAGE_PROFILES["paper"], "flat_variant": "perceiver_io_imagenet", "arms": ALL_ARMS},
    "converged": {**common.IMAGE_PROFILES["converged"], "flat_variant": "perceiver_small", "arms": ALL_ARMS,
                  "other_seeds": 3},
}, {"flat_variant": "the flat Perceiver IO variant", "arms": "which arms run",
    "other_seeds": "seeds of the controls no paper row rests on (the converged queue)"})
# A FLOP-matched control: the arm whose recorded FLOPs it trains for (the converged queue).
MATCHES = {"perceiver_matched": "hip_mae"}

# The paper's top-1 for each arm (results/paper_reference.csv): the ImageNet table, and the
# ablation table for the two HiP-16 arms the main table lacks.
PAPER_KEYS = {HIP_MAE.label: "imagenet.hip16", PERCEIVER_FOURIER: "imagenet.perceiver_io_fourier",
              PERCEIVER_LEARNED: "imagenet.perceiver_io_learned", HIP_FOURIER.label: "ablation.fourier_raster",
              HIP_CLASSIFICATION.label: "ablation.learned_raster"}

# (finding, claim, paper key, baseline arm, treatment arm): the effect is treatment - baseline.
FINDINGS = (
    ("HiP (MAE-learned) vs Perceiver IO (Fourier)", "higher", "effect.hip16_vs_perceiver_io_fourier",
     PERCEIVER_FOURIER, HIP_MAE.label),
    ("Perceiver IO: Fourier vs learned positions", "higher", "effect.perceiver_io_fourier_vs_learned",
     PERCEIVER_LEARNED, PERCEIVER_FOURIER),
    ("F1 MAE-learned vs classification-learned positions", "higher",
     "effect.F1_mae_vs_classification_positions", HIP_CLASSIFICATION.label, HIP_MAE.label),
    ("HiP (MAE-learned) vs Perceiver IO (Fourier) at matched training FLOPs (not in the paper)", "higher", "",
     PERCEIVER_MATCHED, HIP_MAE.label),
)


def arms(settings: Mapping[str, Any], matched_steps: int | None = None) -> list[Arm]:
    """The arms settings['arms'] names, in that order. The FLOP-matched Perceiver IO trains
    `matched_steps` steps (`matched_steps` below); it is left out when they are not given."""
    return list(arms_by_key(settings, matched_steps).values())


def arms_by_key(settings: Mapping[str, Any], matched_steps: int | None = None) -> dict[str, Arm]:
    """{key: arm} of `arms`."""
    fourier, learned = perceiver_arms(settings["flat_variant"])
    every = {"hip_mae": HIP_MAE, "perceiver_fourier": fourier, "perceiver_learned": learned,
             "hip_fourier": HIP_FOURIER, "hip_classification": HIP_CLASSIFICATION,
             "perceiver_matched": fourier.replace(label=PERCEIVER_MATCHED, steps=matched_steps,
                                                  matches=HIP_MAE.label)}
    return {key: every[key] for key in settings["arms"] if key != "perceiver_matched" or matched_steps is not None}


def queue_arms(settings: Mapping[str, Any]) -> dict[str, tuple[Arm, str | None]]:
    """{key: (arm, the key it FLOP-matches or None)} for the converged queue (hipcore.converge),
    which sets a matched control's steps from its match's recorded FLOPs."""
    return {key: (arm, MATCHES.get(key)) for key, arm in arms_by_key(settings, matched_steps=1).items()}


def matched_steps(settings: Mapping[str, Any], train_data, **data: Any) -> int:
    """Steps of the flat Perceiver IO (Fourier) whose training FLOPs come nearest those of
    HIP_MAE (MAE pretraining plus fine-tuning), both counted by torch's flop counter on the
    examples each trains on."""
    budget = flop_budget(settings, train_data=train_data, **data)
    fourier, _ = perceiver_arms(settings["flat_variant"])
    _, sup = common.train_configs(fourier, 0, settings, **data)
    return max(1, round(budget.mae_arm_flops / step_flops(sup, common.training_part(sup, train_data))))


# ---- the notebook's two calls: its results (read or trained), and writing them ----

def results(S, data: Mapping[str, Any]) -> regime.Outcome:
    """The arms' runs, reference baselines and learning curves: read from the committed results
    (S.reading, a notebook.Setup), else trained here, written, and the findings recorded in
    comparisons.csv. data: dataset, data_dir, data_options."""
    if S.reading:
        return regime.read_outcome(S.out)
    train_data, test_data = image_arms.load_splits(data["dataset"], data["data_dir"], data["data_options"])
    # The FLOP-matched Perceiver IO trains as many steps as match HiP + MAE's training FLOPs.
    steps = matched_steps(S.settings, train_data, **data) if "perceiver_matched" in S["arms"] else None
    chosen = arms(S.settings, matched_steps=steps)
    print("arms:", "; ".join(a.label for a in chosen))
    rows = common.run_arms(chosen, S.seeds, S.settings, train_data=train_data, test_data=test_data, **data)
    for row in rows:    # parameters: those a classification pass uses / all the model holds
        row.update(parameter_counts(next(a for a in chosen if a.label == row["arm"]), S.settings,
                                    train_data.modalities, train_data.num_classes, **data))
    # Logistic regression, an MLP and a small CNN on the same training images, per seed.
    references = regime.baseline_rows(chosen[0], S.seeds, S.settings, family="images", train_data=train_data,
                                      test_data=test_data, **data)
    outcome = regime.write_outcome(S.out, rows, references)
    image_arms.record_findings(S.out / "comparisons.csv", rows, FINDINGS)
    return outcome


def summary(outcome: regime.Outcome) -> list[dict[str, Any]]:
    """Per arm: mean and sd of top-1 over seeds, the paper's number, the parameters."""
    return image_arms.arm_summary(outcome.rows, PAPER_KEYS, common.arm_parameters(outcome.rows))


def write(S, outcome: regime.Outcome, dataset: str) -> None:
    """metrics.csv (test metrics and parameters per arm), arms.csv, summary.json, provenance."""
    arms_summary, found = summary(outcome), regime.findings(S.out)
    metrics = common.metric_rows(outcome.rows) + [
        {"run_id": a["arm"], "split": "model", "metric": m, "value": a[m]}
        for a in arms_summary for m in ("parameters", "classifier_parameters")]
    regime.write_results(S, metrics=metrics, rows=outcome.rows, dataset=dataset, seeds=S.seeds,
                         settings=dict(S.settings), arms=arms_summary, findings=[f.__dict__ for f in found],
                         regime=regime.label(outcome.rows))


# ---- per-arm numbers ----

def parameter_counts(arm: Arm, settings: Mapping[str, Any], modalities, num_classes: int,
                     **data: Any) -> dict[str, int]:
    """{'parameters': the whole model's, 'classifier_parameters': those a classification pass
    uses (no decoder blocks, reconstruction head or un-embedding)}; built on the meta device,
    so no memory is spent even at the paper's sizes. data: dataset=..., as for train_configs."""
    _, sup = common.train_configs(arm, 0, settings, **data)
    with torch.device("meta"):
        model = HiP(model_config(sup, num_classes), modalities)
    decoder = [*model.blocks[model.config.processor_index + 1:], model.reconstruction_head,
               model.embedder.unembed]
    total = sum(p.numel() for p in model.parameters())
    unused = sum(p.numel() for m in decoder for p in m.parameters())
    return {"parameters": total, "classifier_parameters": total - unused}


# ---- figures ----


def draw_comparison(summary: list[dict[str, Any]], dataset: str, title: str = "",
                    references: Mapping[str, float] | None = None) -> plt.Figure:
    """Accuracy per arm beside the paper's, and accuracy against parameters. (No per-arm
    throughput: arms trained at different times measure the machine's load, not the model;
    notebook 05 times models side by side.)"""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.0), gridspec_kw={"width_ratios": [2, 1]})
    draw_accuracy(axes[0], summary, dataset, references)
    for i, a in enumerate(summary):
        if "classifier_parameters" in a:
            sd = None if math.isnan(a["accuracy_sd"]) else a["accuracy_sd"]
            axes[1].errorbar(a["classifier_parameters"], a["accuracy"], yerr=sd, fmt="o", color=f"C{i}",
                             capsize=3, label=a["arm"])
    axes[1].set_xlabel("parameters (classifier)")
    axes[1].set_ylabel("test top-1 %")
    axes[1].set_xscale("log")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
