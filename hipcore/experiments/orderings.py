"""What the input-order notebooks (02 images, 04 point clouds) share.

Both train the same arms in several flattening orders, with and without MAE, and ask two
questions of the results: how accuracy changes with the order, and how much of the input's
geometry the learned position table holds. Datasets are loaded once per (order, seed), since
a 'shuffled' order is a permutation fixed by the seed.

Structure score of a position table [M, E]: minus the Pearson correlation, over all pairs of
positions, between the cosine similarity of their embeddings and the distance between them
(on the pixel grid, in 3-D, or along the sequence). About 0 for a table with no geometry (a
random one, or the same table with its rows permuted: the chance level), positive when nearby
positions have similar embeddings.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Callable, Mapping

import matplotlib.pyplot as plt
import pandas as pd
import torch

from ..data import load_dataset
from ..model import HiP
from ..report import paper_reference
from ..results import fmt_mean_sd, markdown, mean_sd
from ..train import load_model
from . import common

_SPLITS: dict[tuple, tuple] = {}


def load_splits(dataset: str, ordering: str, seed: int, *, data_dir: str | None = None,
                data_options: Mapping[str, Any] | None = None):
    """(train, test) exactly as a run with this config loads them, kept for the next arm."""
    key = (dataset, ordering, seed, None if data_dir is None else str(data_dir),
           tuple(sorted((data_options or {}).items())))
    if key not in _SPLITS:
        _SPLITS.clear()                                  # one (order, seed) in memory at a time
        _SPLITS[key] = tuple(load_dataset(dataset, split, ordering=ordering, data_dir=data_dir,
                                          seed=seed, **dict(data_options or {}))
                             for split in ("train", "test"))
    return _SPLITS[key]


def run_grid(plan: list[tuple[common.Arm, int]], settings: Mapping[str, Any], *, dataset: str,
             data_dir: str | None = None, data_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train every (arm, seed) of the plan in its order; plans list runs of one (order, seed)
    together, so each dataset is loaded once. Prints one line per run; returns the rows."""
    def splits(arm: common.Arm, seed: int):
        return load_splits(dataset, arm.ordering, seed, data_dir=data_dir, data_options=data_options)

    return common.run_plan(plan, settings, splits=splits, dataset=dataset, data_dir=data_dir,
                           data_options=data_options)


# ---- accuracies and paired differences ----

def by_arm(rows: list[dict[str, Any]], metric: str = "test_accuracy") -> dict[str, dict[int, float]]:
    """{arm label: {seed: metric}}."""
    out: dict[str, dict[int, float]] = {}
    for row in rows:
        out.setdefault(row["arm"], {})[row["seed"]] = row[metric]
    return out


def contrast(rows: list[dict[str, Any]], weights: Mapping[str, float]) -> list[float]:
    """Per-seed sum of weight x accuracy over arms, for the seeds every arm ran.

    {'b': 1, 'a': -1} is b - a; four arms with +-1 give an interaction.
    """
    acc = by_arm(rows)
    missing = [a for a in weights if a not in acc]
    if missing:
        raise KeyError(f"no results for arms {missing}; arms run: {sorted(acc)}")
    seeds = sorted(set.intersection(*(set(acc[a]) for a in weights)))
    return [sum(w * acc[a][s] for a, w in weights.items()) for s in seeds]


def accuracy_table(rows: list[dict[str, Any]], paper_keys: Mapping[str, str]) -> str:
    """Markdown: one line per arm, the paper's top-1 (where it has one) beside our mean ± sd."""
    ref = paper_reference()
    acc = mean_sd(pd.DataFrame(rows), "arm", "test_accuracy")
    return markdown(pd.DataFrame({
        "arm": acc["arm"],
        "paper top-1 %": [f"{ref[k].value:.1f}" if (k := paper_keys.get(arm)) in ref else "n/a" for arm in acc["arm"]],
        "ours top-1 % (mean ± sd)": [fmt_mean_sd(m, sd) for m, sd in zip(acc["mean"], acc["sd"])],
        "seeds": acc["n"]}))


Contrasts = Mapping[str, tuple[Mapping[str, float], Mapping[str, float] | None]]


def contrast_table(rows: list[dict[str, Any]], contrasts: Contrasts) -> str:
    """Markdown: comparisons shown without a verdict, {name: (arm weights, paper weights)}.

    The paper's value is the same weighted sum over `paper_reference` keys, e.g.
    {'ablation.learned_mae_raster': 1, 'ablation.learned_raster': -1}, or None.
    """
    ref = paper_reference()
    table = []
    for name, (weights, paper_weights) in contrasts.items():
        diffs = pd.Series(contrast(rows, weights), dtype=float)
        table.append({"comparison": name,
                      "paper": "n/a" if not paper_weights else
                      f"{sum(w * ref[k].value for k, w in paper_weights.items()):+.1f}",
                      "ours (mean ± sd over seeds)": fmt_mean_sd(diffs.mean(), diffs.std(), signed=True)
                      if len(diffs) else "n/a",
                      "seeds": len(diffs)})
    return markdown(pd.DataFrame(table, columns=["comparison", "paper", "ours (mean ± sd over seeds)", "seeds"]))




def draw_accuracy_bars(rows: list[dict[str, Any]], categories: list[str], series: list[str],
                       label: Callable[[str, str], str], *, xlabel: str = "", title: str = "",
                       references: Mapping[str, float] | None = None) -> plt.Figure:
    """Grouped bars, mean ± sd over seeds (seeds as dots): one group per category, one bar per series.

    label(category, series) is the arm label of that bar; a missing arm leaves a gap.
    references: {name: accuracy} drawn as labelled horizontal lines (baselines, chance).
    """
    acc = by_arm(rows)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(categories), 3.2))
    width = 0.8 / len(series)
    for j, name in enumerate(series):
        labelled = False
        for i, cat in enumerate(categories):
            values = list(acc.get(label(cat, name), {}).values())
            if not values:
                continue
            mean, sd = pd.Series(values).mean(), pd.Series(values).std()
            x = i + (j - (len(series) - 1) / 2) * width
            ax.bar(x, mean, width * 0.9, yerr=None if math.isnan(sd) else sd, capsize=3,
                   color=f"C{j}", label=None if labelled else name)
            ax.plot([x] * len(values), values, "k.", markersize=3)
            labelled = True
    for k, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, color="0.4", linestyle=("--", ":", "-.")[k % 3], linewidth=1, label=name)
    ax.legend(fontsize=8)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 %")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# ---- learned position tables and how much geometry they hold ----

def learned_tables(arms: list[common.Arm], seed: int, settings: Mapping[str, Any], modality: str,
                   **kwargs: Any) -> dict[str, tuple[torch.Tensor, Any]]:
    """{arm label: (position table [M, E] in input order, its ModalitySpec)} for one seed.

    An MAE arm gives the table its pretraining learned (the checkpoint its classifier started
    from), an arm without MAE its classifier's. 'untrained (at initialisation)' adds a fresh
    model's table: what a table with no geometry scores. kwargs: dataset, data_dir, data_options, as for
    common.train_configs (so the runs must have been trained with the same ones).
    """
    out = {}
    for arm in arms:
        pre, sup = common.train_configs(arm, seed, settings, **kwargs)
        model = load_model(Path((pre or sup).run_dir) / "last.pt")
        with torch.no_grad():
            out[arm.label] = (model.positions(modality).float(), model.modalities[modality])
    torch.manual_seed(seed)
    fresh = HiP(model.config, model.modalities)
    with torch.no_grad():
        out["untrained (at initialisation)"] = (fresh.positions(modality).float(), model.modalities[modality])
    return out


def subset(m: int, max_positions: int = 2048, seed: int = 0) -> torch.Tensor:
    """Positions to score: all M, or a fixed random subset (sorted) when there are more."""
    if m <= max_positions:
        return torch.arange(m)
    return torch.randperm(m, generator=torch.Generator().manual_seed(seed))[:max_positions].sort().values


def structure_score(table: torch.Tensor, distances: torch.Tensor, *, chance_draws: int = 20,
                    seed: int = 0) -> tuple[float, float]:
    """(score, chance sd): -corr(cosine similarity, distance) over pairs of positions.

    table: [M, E]; distances: [M, M] between the same positions. The chance sd is the
    standard deviation of the score when the table's rows are randomly permuted (which keeps
    the embeddings but breaks their tie to positions), over `chance_draws` permutations: a
    score several times above it is structure, not noise.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(table.double(), dim=-1)
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    dist = distances.double()[i, j]
    dist = dist - dist.mean()
    dist = dist / dist.norm().clamp_min(1e-12)                          # unit vector over pairs

    def score(rows: torch.Tensor) -> float:
        sim = (rows @ rows.T)[i, j]
        sim = sim - sim.mean()
        norm = sim.norm().item()
        return float("nan") if norm == 0 else -(sim @ dist).item() / norm

    chance = [score(x[torch.randperm(len(x), generator=gen)]) for _ in range(chance_draws)]
    return score(x), statistics.stdev(chance) if len(chance) > 1 else float("nan")


def grid_distances(pixels: torch.Tensor, width: int) -> torch.Tensor:
    """[K, K] Euclidean distances between raster pixel indices `pixels` [K] on a grid `width` wide."""
    rc = torch.stack([pixels // width, pixels % width], -1).float()
    return torch.cdist(rc, rc)


def index_distances(index: torch.Tensor) -> torch.Tensor:
    """[K, K] |i - j| between sequence positions `index` [K]."""
    idx = index.float()
    return (idx[:, None] - idx[None, :]).abs()


def mean_cloud_distances(points: torch.Tensor) -> torch.Tensor:
    """[P, P] 3-D distance between the points in slots i and j, averaged over clouds [N, P, 3]."""
    total = torch.zeros(points.shape[1], points.shape[1])
    for chunk in points.float().split(8):
        total += torch.cdist(chunk, chunk).sum(0)
    return total / len(points)
