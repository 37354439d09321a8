"""01_imagenet_comparison: the paper's ImageNet table at small scale.

Arms (PAPER.md, "Results to set beside ours"): HiP with MAE-learned positions; a flat
Perceiver IO (the same code with one block and one group) with Fourier features and with
learned positions; HiP with Fourier features; HiP with positions learned by classification
alone. Per arm: test top-1, parameters, training throughput (examples/s).

The three HiP arms are defined here once and imported by 03_mae_positional_embeddings; the
learned ones also equal 02_flattening_ablation's raster arms. Equal Arm fields under
common.IMAGE_TABLE's settings give equal run ids, so each is trained once for all notebooks.
The helpers below (per-arm summaries, the accuracy figure, recording findings) serve 03 too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd
import torch

from ..data import load_dataset
from ..model import HiP
from ..notebook import ParameterError
from ..plots import readable, wrap_labels
from ..report import paper_reference
from ..results import fmt_mean_sd, markdown
from ..train import model_config
from . import common
from .common import Arm

DATASETS = ("fashion_mnist", "imagefolder")

# HiP arms shared with 03 (and, the learned ones, with 02's raster arms): never change one
# field here without changing it there too, or the runs stop being shared.
HIP_MAE = Arm("HiP, MAE-learned positions", mae=True, ordering="raster")
HIP_CLASSIFICATION = Arm("HiP, classification-learned positions", ordering="raster")
HIP_FOURIER = Arm("HiP, Fourier features", position="fourier", ordering="raster")
PERCEIVER_FOURIER = "Perceiver IO, Fourier features"
PERCEIVER_LEARNED = "Perceiver IO, learned positions"
PERCEIVER_MATCHED = "Perceiver IO, Fourier features, FLOP-matched"

ALL_ARMS = ("hip_mae", "perceiver_fourier", "perceiver_learned", "hip_fourier", "hip_classification",
            "perceiver_matched")

# Per profile: common.IMAGE_TABLE's training settings (so shared arms hit the cache), the flat
# baseline's variant, and which arms run (smoke keeps one MAE and one Fourier arm).
TABLE: dict[str, dict[str, Any]] = {
    "smoke": {**common.IMAGE_TABLE["smoke"], "flat_variant": "perceiver_small",
              "arms": ("hip_mae", "perceiver_fourier", "perceiver_matched")},
    "binder": {**common.IMAGE_TABLE["binder"], "flat_variant": "perceiver_small", "arms": ALL_ARMS},
    "quick": {**common.IMAGE_TABLE["quick"], "flat_variant": "perceiver_small", "arms": ALL_ARMS},
    "full": {**common.IMAGE_TABLE["full"], "flat_variant": "perceiver_small", "arms": ALL_ARMS},
    "paper": {**common.IMAGE_TABLE["paper"], "flat_variant": "perceiver_io_imagenet", "arms": ALL_ARMS},
}

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


def perceiver_arms(flat_variant: str) -> tuple[Arm, Arm]:
    """The flat baseline (one block, one group) with Fourier features and with learned positions."""
    return (Arm(PERCEIVER_FOURIER, variant=flat_variant, position="fourier", ordering="raster"),
            Arm(PERCEIVER_LEARNED, variant=flat_variant, ordering="raster"))


def arms(settings: Mapping[str, Any], matched_steps: int | None = None) -> list[Arm]:
    """The arms settings['arms'] names, in that order. The FLOP-matched Perceiver IO trains
    `matched_steps` steps (`matched_steps` below); it is left out when they are not given."""
    fourier, learned = perceiver_arms(settings["flat_variant"])
    every = {"hip_mae": HIP_MAE, "perceiver_fourier": fourier, "perceiver_learned": learned,
             "hip_fourier": HIP_FOURIER, "hip_classification": HIP_CLASSIFICATION,
             "perceiver_matched": fourier.replace(label=PERCEIVER_MATCHED, steps=matched_steps)}
    return [every[key] for key in settings["arms"] if key != "perceiver_matched" or matched_steps is not None]


def matched_steps(settings: Mapping[str, Any], train_data, **data: Any) -> int:
    """Steps of the flat Perceiver IO (Fourier) whose training FLOPs come nearest those of
    HIP_MAE (MAE pretraining plus fine-tuning), both counted by torch's flop counter."""
    from ..train.engine import load_data
    from .mae_positions import flop_budget, step_flops         # mae_positions imports this module

    budget = flop_budget(settings, train_data=train_data, **data)
    fourier, _ = perceiver_arms(settings["flat_variant"])
    _, sup = common.train_configs(fourier, 0, settings, **data)
    train_set, _ = load_data(sup, train_data, train_data)
    return max(1, round(budget.mae_arm_flops / step_flops(sup, train_set)))


# ---- data ----

def data_options(dataset: str, resolution: Any) -> dict[str, Any]:
    """load_dataset options beyond the name: an image folder's side in pixels."""
    if dataset != "imagefolder":
        return {}
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 8:
        raise ParameterError(f"resolution={resolution!r} is not allowed; give the image side in "
                             "pixels as an int >= 8 (224 for ImageNet; 32 or 64 keep a CPU run short)")
    return {"resolution": resolution}


def load_splits(dataset: str, data_dir: str | Path | None, options: Mapping[str, Any]):
    """(train, test) in raster order, loaded once for every arm (raster order needs no seed)."""
    return tuple(load_dataset(dataset, split, ordering="raster", data_dir=data_dir, **options)
                 for split in ("train", "test"))


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


def arm_summary(rows: list[dict[str, Any]], paper_keys: Mapping[str, str] = PAPER_KEYS,
                params: Mapping[str, Mapping[str, int]] | None = None) -> list[dict[str, Any]]:
    """One dict per arm (in the order they ran): accuracies per seed, mean and sd, the paper's
    top-1 where it has one, mean throughput and seconds, and parameter counts when given."""
    ref = paper_reference()
    per_arm = pd.DataFrame(rows).groupby("arm", sort=False).agg(
        accuracies=("test_accuracy", list), accuracy=("test_accuracy", "mean"), accuracy_sd=("test_accuracy", "std"),
        seeds=("test_accuracy", "count"), examples_per_s=("train_examples_per_s", "mean"),
        seconds=("total_seconds", "mean"))
    out = []
    for arm, a in per_arm.iterrows():
        key = paper_keys.get(arm)
        out.append({"arm": arm, "accuracies": list(a["accuracies"]), "paper_key": key,
                    "paper": ref[key].value if key in ref else None, "accuracy": float(a["accuracy"]),
                    "accuracy_sd": float(a["accuracy_sd"]), "seeds": int(a["seeds"]),
                    "examples_per_s": float(a["examples_per_s"]), "seconds": float(a["seconds"]),
                    **(params or {}).get(arm, {})})
    return out


def markdown_arms(summary: list[dict[str, Any]], dataset: str) -> str:
    """The per-arm table: paper (ImageNet) beside ours, parameters, throughput, time."""
    return markdown(pd.DataFrame([{
        "arm": a["arm"],
        "paper top-1 % (ImageNet)": "n/a" if a["paper"] is None else f"{a['paper']:.1f}",
        f"ours top-1 % ({dataset}, mean ± sd)": fmt_mean_sd(a["accuracy"], a["accuracy_sd"]),
        "seeds": a["seeds"],
        "parameters (classifier / all)": f"{a['classifier_parameters']:,} / {a['parameters']:,}"
        if "parameters" in a else "n/a",
        "train examples/s": f"{a['examples_per_s']:.0f}",
        "seconds per run": f"{a['seconds']:.0f}"} for a in summary]))


# ---- findings ----

def record_findings(path: str | Path, rows: list[dict[str, Any]], findings=FINDINGS) -> list[str]:
    """Record the per-seed pairs of every finding whose two arms ran; returns their names."""
    ran = {row["arm"] for row in rows}
    recorded = []
    for name, claim, key, baseline, treatment in findings:
        if {baseline, treatment} <= ran:
            common.record_pairs(Path(path), rows, finding=name, claim=claim, paper_key=key,
                                baseline=baseline, treatment=treatment)
            recorded.append(name)
    return recorded




# ---- figures ----

def draw_accuracy(ax: plt.Axes, summary: list[dict[str, Any]], dataset: str) -> None:
    """Bars: ours (mean ± sd, seeds as dots) beside the paper's ImageNet top-1 where it has one."""
    for i, a in enumerate(summary):
        sd = None if math.isnan(a["accuracy_sd"]) else a["accuracy_sd"]
        ax.bar(i - 0.2, a["accuracy"], 0.38, yerr=sd, capsize=3, color="C0",
               label=f"ours ({readable(dataset)})" if i == 0 else None)
        ax.plot([i - 0.2] * len(a["accuracies"]), a["accuracies"], "k.", markersize=3)
        if a["paper"] is not None:
            ax.bar(i + 0.2, a["paper"], 0.38, color="C7", label="paper (ImageNet)" if i == 0 else None)
    ax.set_xticks(range(len(summary)), wrap_labels([a["arm"] for a in summary]), fontsize=7)
    ax.set_ylim(0, 108)
    ax.set_ylabel("test top-1 %")
    ax.legend(fontsize=7, loc="upper center", ncol=2, frameon=False)


def draw_accuracy_figure(summary: list[dict[str, Any]], dataset: str, title: str = "") -> plt.Figure:
    """draw_accuracy on a figure of its own."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(summary), 3.8))
    draw_accuracy(ax, summary, dataset)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def draw_comparison(summary: list[dict[str, Any]], dataset: str, title: str = "") -> plt.Figure:
    """Accuracy per arm beside the paper's, and accuracy against parameters. (No per-arm
    throughput: arms trained at different times measure the machine's load, not the model;
    notebook 05 times models side by side.)"""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.0), gridspec_kw={"width_ratios": [2, 1]})
    draw_accuracy(axes[0], summary, dataset)
    for i, a in enumerate(summary):
        if "classifier_parameters" in a:
            sd = None if math.isnan(a["accuracy_sd"]) else a["accuracy_sd"]
            axes[1].errorbar(a["classifier_parameters"], a["accuracy"], yerr=sd, fmt="o", color=f"C{i}",
                             capsize=3, label=a["arm"])
    axes[1].set_xlabel("parameters (classifier)")
    axes[1].set_ylabel("test top-1 %")
    axes[1].set_xscale("log")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
