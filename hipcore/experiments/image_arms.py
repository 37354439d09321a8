"""What the image notebooks share (01, 03, 06; 02's raster arms are the same runs): the HiP
arms, their data, per-arm summaries and the accuracy figure, the FLOP budget of a
compute-matched control, checkpoints and position tables (scored for F7 by
`position_tables`).

Notebook modules import these from here and never from each other.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
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
from ..train import load_model
from .common import Arm, record_pairs, step_flops, steps_per_epoch, train_configs, training_part

# The HiP arms of notebooks 01, 03 and 06 (the learned ones equal 02's raster arms): equal
# Arm fields give equal run ids, so each arm is trained once for every notebook.
HIP_MAE = Arm("HiP, MAE-learned positions", mae=True, ordering="raster")
HIP_CLASSIFICATION = Arm("HiP, classification-learned positions", ordering="raster")
HIP_FOURIER = Arm("HiP, Fourier features", position="fourier", ordering="raster")
PERCEIVER_FOURIER = "Perceiver IO, Fourier features"
PERCEIVER_LEARNED = "Perceiver IO, learned positions"


def perceiver_arms(flat_variant: str) -> tuple[Arm, Arm]:
    """The flat baseline (one block, one group) with Fourier features and with learned positions."""
    return (Arm(PERCEIVER_FOURIER, variant=flat_variant, position="fourier", ordering="raster"),
            Arm(PERCEIVER_LEARNED, variant=flat_variant, ordering="raster"))


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


def arm_summary(rows: list[dict[str, Any]], paper_keys: Mapping[str, str],
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


def record_findings(path: str | Path, rows: list[dict[str, Any]], findings, metric: str = "test_accuracy",
                    unit: str = "top-1 %") -> list[str]:
    """Record the per-seed pairs of every finding whose arms all ran; returns their names.
    findings: a notebook's FINDINGS, (name, claim, paper key, baseline, treatment[, kind]) tuples,
    a side being an arm or {arm: weight} (common.Side); kind 'effect' unless given. metric: the
    runs' score compared (a segmentation's 'test_miou', in unit 'mIoU %')."""
    ran = {row["arm"] for row in rows}
    recorded = []
    for name, claim, key, baseline, treatment, *kind in findings:
        arms = {arm for side in (baseline, treatment) for arm in ([side] if isinstance(side, str) else side)}
        if arms <= ran:
            record_pairs(Path(path), rows, finding=name, claim=claim, paper_key=key, baseline=baseline,
                         treatment=treatment, kind=kind[0] if kind else "effect", metric=metric, unit=unit)
            recorded.append(name)
    return recorded


def draw_accuracy(ax: plt.Axes, summary: list[dict[str, Any]], dataset: str,
                  references: Mapping[str, float] | None = None) -> None:
    """Bars: ours (mean ± sd, seeds as dots) beside the paper's ImageNet top-1 where it has one;
    references ({baseline: top-1}) as labelled horizontal lines across the arms."""
    for i, a in enumerate(summary):
        sd = None if math.isnan(a["accuracy_sd"]) else a["accuracy_sd"]
        ax.bar(i - 0.2, a["accuracy"], 0.38, yerr=sd, capsize=3, color="C0",
               label=f"ours ({readable(dataset)})" if i == 0 else None)
        ax.plot([i - 0.2] * len(a["accuracies"]), a["accuracies"], "k.", markersize=3)
        if a["paper"] is not None:
            ax.bar(i + 0.2, a["paper"], 0.38, color="C7", label="paper (ImageNet)" if i == 0 else None)
    for k, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, color="0.35", linestyle=("--", ":", "-.")[k % 3], linewidth=1,
                   label=f"{name} ({value:.1f})")
    ax.set_xticks(range(len(summary)), wrap_labels([a["arm"] for a in summary]), fontsize=7)
    ax.set_ylim(0, 118)
    ax.set_ylabel("test top-1 %")
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)


def draw_accuracy_figure(summary: list[dict[str, Any]], dataset: str, title: str = "",
                         references: Mapping[str, float] | None = None) -> plt.Figure:
    """draw_accuracy on a figure of its own."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(summary), 3.8))
    draw_accuracy(ax, summary, dataset, references)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# ---- the compute-matched control: FLOPs, not epochs; position tables ----

COMPUTE_MATCHED = "HiP, classification-learned, compute-matched"
# The position tables' names in the F7 figure and its structure table.
MAE_PRETRAINED, MAE_FINE_TUNED = "MAE-learned (pretrained)", "MAE-learned (fine-tuned)"
CLASSIFICATION_LEARNED = "classification-learned"


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

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "FlopBudget | None":
        """The budget a summary.json recorded (its four fields; the derived ones are recomputed)."""
        if record is None:
            return None
        return cls(**{f.name: int(record[f.name]) for f in dataclasses.fields(cls)})


def flop_budget(settings: Mapping[str, Any], *, train_data=None, arm: Arm = HIP_MAE, **data: Any) -> FlopBudget:
    """The FLOP budget of the MAE arm `arm` (seed 0; every seed takes the same steps) and the
    control's matching number of supervised steps. Each stage's steps per epoch are asked of
    the loader on the examples it trains on (its validation examples held out), as the training
    loop asks them. data: dataset, data_dir, data_options."""
    pre, sup = train_configs(arm, 0, settings, **data)
    pre_part, sup_part = (training_part(cfg, train_data) for cfg in (pre, sup))
    return FlopBudget(pretrain_step_flops=step_flops(pre, pre_part), supervised_step_flops=step_flops(sup, sup_part),
                      pretrain_steps=pre.max_steps or pre.epochs * steps_per_epoch(pre, pre_part),
                      supervised_steps=sup.max_steps or sup.epochs * steps_per_epoch(sup, sup_part))


def checkpoints(arm: Arm, seed: int, settings: Mapping[str, Any], **data: Any) -> tuple[Path | None, Path]:
    """(MAE pretraining checkpoint or None, classifier checkpoint) of one arm and seed.
    data: dataset, data_dir, data_options, as for common.train_configs."""
    pre, sup = train_configs(arm, seed, settings, **data)
    return (None if pre is None else Path(pre.run_dir) / "last.pt"), Path(sup.run_dir) / "last.pt"


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


def chosen_pixels(height: int, width: int) -> list[tuple[int, int]]:
    """Four (row, col) pixels for similarity maps: centre, two upper quarters, lower middle."""
    return [(height // 2, width // 2), (height // 4, width // 4), (height // 4, 3 * width // 4),
            (3 * height // 4, width // 2)]
