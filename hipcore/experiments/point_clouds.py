"""04_point_clouds: does MAE help a HiP classify point clouds, and what do its positions learn?

A cloud is flattened to [P, 3] in its stored order and cut into contiguous groups, like an
image. The paper (finding F6) reports +4.7 top-1 on ModelNet40 from MAE pretraining (80.6 vs
75.9, 2,048 points, stored order), and that the learned point embeddings showed "no visible
structure". Here: MAE vs no MAE on the built-in part assemblies (parts3d, whose classes differ
only in where the same parts stand; or the built-in shapes3d, or ModelNet40 from a folder), in
the sampler's stored order and in one fixed shuffled order, and a number for how much of the
clouds' geometry each learned position table holds (orderings.structure_score).

Beside HiP's arms, the shortcut baselines (hipcore.experiments.shortcuts: 1-NN on a radius
histogram, and on a distance histogram plus PCA eigenvalues) say what a classifier gets right
without seeing arrangement; HiP's margin over them is what it learned beyond that. Recorded
comparisons: F6 (MAE minus no MAE, stored order), and our own row, not in the paper, for
shuffled minus stored order without MAE.

A position table row belongs to a slot of the sequence, not to a point: slot m holds a
different point in every cloud. What a table can learn is what slot m has in common across
clouds: in stored order, where on its shape's surface the sampler put it (patch by patch,
each patch swept in bands, so neighbouring slots are mostly neighbouring points).
"""

from __future__ import annotations

from typing import Any, Mapping

import matplotlib.pyplot as plt
import torch

from .. import plots
from ..data import POINT_ORDERINGS, load_dataset
from ..data.registry import entry
from ..notebook import read_summary
from ..stats import t_interval
from . import common, orderings, regime, shortcuts
from .image_arms import flop_budget, record_findings

NOTEBOOK = "04_point_clouds"     # notebooks/<NOTEBOOK>.ipynb, its results in results/<NOTEBOOK>/<profile>/

ORDERINGS = ("stored", "shuffled")
VERDICT_ORDERINGS = ("stored",)               # F6 rests on stored order; shuffled is our own extra row

# Per profile. parts3d and shapes3d: 10 classes x train_per_class clouds to train on; modelnet40 ignores
# the per-class sizes (it has 9,843 / 2,468 clouds) and keeps the first num_points points.
TABLE = common.profiles({
    # CI: tiny clouds, one seed, one epoch each; checks the plumbing, not the finding. Batches
    # of 10 (18 steps an epoch) bring the FLOP-matched arm's whole steps within 1% of the MAE arm's.
    "smoke": dict(num_points=256, train_per_class=20, test_per_class=10, epochs=1, pretrain_epochs=1,
                  batch_size=10, warmup_epochs=0.5, perceiver=False, orderings=ORDERINGS, val_fraction=0.1,
                  matched=True),
    # Binder (2 GB): 400 clouds of 512 points, 1 + 1 epochs, one seed; batches of 20 (18 steps
    # an epoch, not 7) bring the FLOP-matched arm's whole steps within 1% of the MAE arm's.
    "binder": dict(num_points=512, train_per_class=40, test_per_class=20, epochs=1, pretrain_epochs=1,
                   batch_size=20, warmup_epochs=0.5, perceiver=False, orderings=VERDICT_ORDERINGS,
                   val_fraction=0.1, matched=True),
    # 2 CPU cores, about 18 minutes: 2,000 clouds of 1,024 points (16 groups of 64), 3 seeds,
    # stored order only. 20 + 20 epochs: on parts3d (seed 0, bf16) HiP without MAE reached 24%
    # after 20 epochs and 37% after 40, with MAE 55% after 20 + 20 but 20% after 10 + 10; at
    # 3 + 3 every arm stayed at chance (10%), where MAE could show nothing.
    "quick": dict(num_points=1024, train_per_class=200, test_per_class=50, epochs=20, pretrain_epochs=20,
                  batch_size=64, warmup_epochs=0.5, perceiver=False, seeds=(0, 1, 2),
                  orderings=VERDICT_ORDERINGS, val_fraction=0.1, matched=True),
    # Long enough for MAE to matter, plus a flat Perceiver (one group) without MAE.
    "full": dict(variant="small5", num_points=1024, train_per_class=200, test_per_class=50, epochs=60,
                 pretrain_epochs=120, batch_size=64, pretrain_lr=1.5e-3, warmup_epochs=2, perceiver=True,
                 seeds=(0, 1, 2, 3, 4), orderings=ORDERINGS, val_fraction=0.1, plateau=True,
                 matched=True),
    # The paper's setting: HiP-16 on ModelNet40 (dataset='modelnet40'), 2,048 points in stored
    # order. Its schedule is not in the paper's available text: ours, for a GPU.
    "paper": dict(variant="hip16", num_points=2048, train_per_class=200, test_per_class=50, epochs=200,
                  pretrain_epochs=400, batch_size=64, pretrain_lr=1.5e-3, warmup_epochs=10, perceiver=True,
                  seeds=(0, 1, 2), orderings=ORDERINGS, val_fraction=0.1, matched=True),
    # quick's clouds, each stage until the plateau rule stops it (epochs: the caps); five seeds
    # for F6's arms, `other_seeds` for its FLOP-matched control. The converged queue trains it.
    # 8,000 training clouds are drawn; each seed trains on 2,000 of them (quick's number, classes
    # balanced on average rather than exactly) and validates on 6,000 of the others, drawn from
    # outside the training subset as for the images (TrainConfig.val_size). The plateau rule needs
    # as many: its 12-epoch trend of top-1 near 50% has a standard error of
    # 100 sqrt(p (1 - p) / n) / 12 points per epoch, under its 0.2-point threshold at 99.95%
    # one-sided only from n ~ 4,700 (on a 200-cloud carve-out, or 1,000 clouds, a flat curve is
    # never stopped: the cap binds; tests/test_converge.py checks every queued stage). A constant
    # learning rate after warm-up, as the images' converged row: the rule, not the cap, ends a stage.
    "converged": dict(num_points=1024, train_per_class=800, limit_train=2000, test_per_class=50,
                      epochs=60, pretrain_epochs=60, schedule="constant",
                      batch_size=64, warmup_epochs=0.5, perceiver=False, seeds=(0, 1, 2, 3, 4),
                      orderings=VERDICT_ORDERINGS, val_fraction=0.1, matched=True, plateau=True,
                      other_seeds=3),
}, {"other_seeds": "seeds of the controls no paper row rests on (the converged queue)",
    "num_points": "points per cloud",
    "train_per_class": "generated training clouds per class",
    "test_per_class": "generated test clouds per class",
    "perceiver": "whether the flat Perceiver IO arm runs",
    "orderings": "point orders that run",
    "matched": "whether the FLOP-matched no-MAE arm (F6's compute control) runs"})

PERCEIVER = "Perceiver (1 group), no MAE"
PAPER_KEYS = {"stored + MAE": "modelnet40.hip16_mae", "stored, no MAE": "modelnet40.hip16",
              PERCEIVER: "modelnet40.perceiver_io"}


def data_options(dataset: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """load_dataset options of a profile: clouds' size, and for a built-in set how many per class."""
    if entry(dataset).generated:          # built in: sized per class, training clouds drawn from the seed
        return {k: settings[k] for k in ("num_points", "train_per_class", "test_per_class")}
    return {"num_points": settings["num_points"]}


def label(ordering: str, mae: bool) -> str:
    return f"{ordering} + MAE" if mae else f"{ordering}, no MAE"


def arm(ordering: str, mae: bool) -> common.Arm:
    return common.Arm(label(ordering, mae), mae=mae, ordering=ordering)


def perceiver_arm() -> common.Arm:
    """A flat Perceiver from the same code (one group, learned positions), stored order."""
    return common.Arm(PERCEIVER, variant="perceiver_small", ordering="stored")


MATCHED = "stored, no MAE, FLOP-matched"


def matched_arm(steps: int) -> common.Arm:
    """HiP without MAE in stored order, trained for as many FLOPs as the MAE arm's pretraining
    and fine-tuning together (`steps` supervised steps): F6's control for training length."""
    return common.Arm(MATCHED, ordering="stored", steps=steps, matches=label("stored", True))


def plan(seeds: tuple[int, ...], perceiver: bool = False, order_names: tuple[str, ...] = ORDERINGS,
         matched_steps: int | None = None) -> list[tuple[common.Arm, int]]:
    """HiP with and without MAE in each order and seed (and the FLOP-matched no-MAE arm, when
    `matched_steps` is given, in stored order), then the flat Perceiver's runs."""
    runs = []
    for o in order_names:
        for seed in seeds:
            runs += [(arm(o, True), seed), (arm(o, False), seed)]
            if o == "stored" and matched_steps:
                runs.append((matched_arm(matched_steps), seed))
    return runs + [(perceiver_arm(), seed) for seed in seeds] if perceiver else runs


# F6's compute control: the arm whose recorded FLOPs it trains for (the converged queue).
MATCHES = {"matched": "stored_mae"}


def queue_arms(settings: Mapping[str, Any]) -> dict[str, tuple[common.Arm, str | None]]:
    """{key: (arm, the key it FLOP-matches or None)} of F6 for the converged queue
    (hipcore.converge), which sets the matched control's steps from its match's recorded FLOPs."""
    arms = {"stored_mae": arm("stored", True), "stored": arm("stored", False)}
    if settings["matched"]:
        arms["matched"] = matched_arm(1)
    return {key: (a, MATCHES.get(key)) for key, a in arms.items()}


def matched_steps(settings: Mapping[str, Any], **data: Any) -> int:
    """Supervised steps whose FLOPs match the stored-order MAE arm's (seed 0's data)."""
    train_set, _ = orderings.load_splits(data["dataset"], "stored", 0, data_dir=data.get("data_dir"),
                                         data_options=data.get("data_options"))
    return flop_budget(settings, train_data=train_set, arm=arm("stored", True), **data).control_steps


F6 = "F6 MAE minus no MAE, point clouds (stored order)"
F6_MATCHED = "F6 MAE minus no MAE trained for the same FLOPs, point clouds (ours)"
ORDER = "Shuffled minus stored point order, HiP without MAE (ours)"
# (finding, claim, paper key, baseline, treatment) for image_arms.record_findings, each recorded
# where its arms ran. F6: MAE minus no MAE in stored order (the paper's setting), paired by
# seed; the same at equal compute (the MAE arm trains longer); and our own row (an empty paper
# key: not in the paper): shuffled minus stored order without MAE, which should be lower where
# the stored order's locality is what HiP's groups use (where the profile runs shuffled arms).
FINDINGS = (
    (F6, "higher", "effect.F6_mae_point_clouds", label("stored", False), label("stored", True)),
    (F6_MATCHED, "higher", "", MATCHED, label("stored", True)),
    (ORDER, "lower", "", label("stored", False), label("shuffled", False)),
)


# ---- the notebook's two calls: its results (read or trained), and writing them ----

def results(S, data: Mapping[str, Any]) -> regime.Outcome:
    """Every order's runs, the shortcut and reference baselines, curves and the position
    tables' structure: read from the committed results (S.reading, a notebook.Setup), else
    trained here, written, and the findings recorded. Its figure of the tables draws from the
    checkpoints when shown. data: dataset, data_dir, data_options."""
    if S.reading:
        record = read_summary(S.out)
        return regime.read_outcome(S.out, shortcuts=record["shortcuts"], structure=record["structure"])
    # F6's compute control: HiP without MAE trained for as many FLOPs as the MAE arm's pretraining + fine-tuning.
    steps = matched_steps(S.settings, **data) if S["matched"] else None
    rows = orderings.run_grid(plan(S.seeds, S["perceiver"], S["orderings"], steps), S.settings, **data)
    found_shortcuts = shortcut_rows(S.seeds, **data)
    # Order-free references on the same clouds: a PointNet, a PointNet++-style grouping net, and
    # a hand-made descriptor of local shape (upper and lower half) with logistic regression.
    references = regime.baseline_rows(arm("stored", False), S.seeds, S.settings, family="points", **data)
    outcome = regime.write_outcome(S.out, rows, references, shortcuts=found_shortcuts)
    record_findings(S.out / "comparisons.csv", rows, FINDINGS)
    tables = learned_tables(S.settings, S.seeds[0], **data)
    clouds = {o: test_clouds(data["dataset"], o, S.seeds[0], data_dir=data["data_dir"], options=data["data_options"])
              for o in S["orderings"]}
    outcome.extra["structure"] = structure_rows(tables, clouds)
    outcome.extra["test_size"] = len(next(iter(clouds.values())))     # test clouds behind each top-1
    outcome.figures["position_clouds"] = lambda: clouds_figure(tables, clouds, S.seeds[0], data)
    return outcome


def clouds_figure(tables, clouds: Mapping[str, torch.Tensor], seed: int, data: Mapping[str, Any]) -> plt.Figure:
    """draw_clouds on example test clouds of a few classes (stored order)."""
    test = orderings.load_splits(data["dataset"], "stored", seed, data_dir=data["data_dir"],
                                 data_options=data["data_options"])[1]
    return draw_clouds(tables, clouds, example_indices(test.labels), test.class_names, test.labels)


def write(S, outcome: regime.Outcome, dataset: str) -> None:
    """metrics.csv (test metrics, shortcuts, structure scores), arms.csv, summary.json, provenance."""
    structure, found_shortcuts = outcome.extra["structure"], outcome.extra["shortcuts"]
    metrics = common.metric_rows(outcome.rows + found_shortcuts) + [
        {"run_id": r["table"], "seed": S.seeds[0], "split": "positions", "metric": m, "value": r[m]}
        for r in structure for m in ("structure_3d", "structure_3d_chance_sd", "structure_sequence",
                                     "structure_sequence_chance_sd")]
    regime.write_results(S, metrics=metrics, rows=outcome.rows, settings=dict(S.settings), seeds=S.seeds,
                         dataset=dataset, findings=[f.__dict__ for f in regime.findings(S.out)], structure=structure,
                         shortcuts=found_shortcuts, regime=regime.label(outcome.rows),
                         runs=regime.run_records(outcome.rows), test_size=outcome.extra.get("test_size"))


CHANCE = "chance (most frequent class)"


def shortcut_rows(seeds: tuple[int, ...], *, dataset: str, data_dir: str | None = None,
                  data_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows like HiP's ({'arm', 'seed', 'test_accuracy'}) for each shortcut baseline and chance,
    on the data each seed's runs train and test on (a built-in set is drawn from the seed; a
    set read from files is scored once and its rows repeated per seed)."""
    rows, scored = [], {}
    for seed in seeds:
        train, test = orderings.load_splits(dataset, "stored", seed, data_dir=data_dir, data_options=data_options)
        key = (train.fingerprint, test.fingerprint)
        if key not in scored:
            scored[key] = {**shortcuts.shortcut_scores(train.points, train.labels, test.points, test.labels),
                           CHANCE: shortcuts.chance(test.labels)}
        rows += [{"arm": name, "seed": seed, "test_accuracy": value} for name, value in scored[key].items()]
    return rows


def reference_levels(baselines: list[dict[str, Any]]) -> dict[str, float]:
    """{baseline: mean accuracy over seeds}, for the accuracy figure's horizontal lines."""
    return {arm: sum(accs.values()) / len(accs) for arm, accs in orderings.by_arm(baselines).items()}


def margin_lines(rows: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> list[str]:
    """One computed sentence per HiP arm: its mean accuracy and its margin over the better
    shortcut baseline, seed by seed (mean, and with 2 or more seeds the 95% t interval: above
    the baselines when the interval lies above 0)."""
    base = orderings.by_arm(baselines)
    names = [n for n in shortcuts.BASELINES if n in base]
    if not names:
        raise ValueError("no shortcut baseline rows to compare with")
    best = {seed: max(base[n][seed] for n in names) for seed in set.intersection(*(set(base[n]) for n in names))}
    lines = []
    for arm, accs in orderings.by_arm(rows).items():
        seeds = sorted(set(accs) & set(best))
        if not seeds:
            continue
        gaps = [accs[s] - best[s] for s in seeds]
        ours, shortcut = (sum(v) / len(seeds) for v in ([accs[s] for s in seeds], [best[s] for s in seeds]))
        text = (f"{arm}: {ours:.1f}% top-1, the better shortcut baseline {shortcut:.1f}% (mean over "
                f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}): margin {sum(gaps) / len(gaps):+.1f} points")
        if len(seeds) < 2:
            lines.append(text + " (one seed: no interval).")
            continue
        ci = t_interval(gaps)
        verdict = ("above the shortcut baselines" if ci.low > 0 else
                   "below them" if ci.high < 0 else "not shown to be above them")
        lines.append(f"{text}, 95% interval [{ci.low:+.1f}, {ci.high:+.1f}]: {verdict}.")
    return lines


def contrasts(rows: list[dict[str, Any]]) -> dict[str, tuple[dict[str, float], dict[str, float] | None]]:
    """Comparisons shown without a verdict (orderings.contrast_table)."""
    st, sh = (label("stored", True), label("stored", False)), (label("shuffled", True), label("shuffled", False))
    out = {
        "MAE gain, shuffled order": ({sh[0]: 1, sh[1]: -1}, None),
        "shuffled minus stored, with MAE": ({sh[0]: 1, st[0]: -1}, None),
        "shuffled minus stored, without MAE": ({sh[1]: 1, st[1]: -1}, None),
        "MAE gain, stored minus shuffled (interaction)": ({st[0]: 1, st[1]: -1, sh[0]: -1, sh[1]: 1}, None),
        "HiP + MAE minus Perceiver, stored": ({st[0]: 1, PERCEIVER: -1},
                                             {"modelnet40.hip16_mae": 1, "modelnet40.perceiver_io": -1}),
    }
    ran = {r["arm"] for r in rows}
    return {k: v for k, v in out.items() if set(v[0]) <= ran}


def learned_tables(settings: Mapping[str, Any], seed: int, **kwargs: Any) -> dict[str, tuple[torch.Tensor, Any]]:
    """Position tables [P, E] (input order) of the HiP arms in the profile's orders, and one at
    initialisation."""
    arms = [arm(o, mae) for o in settings["orderings"] for mae in (True, False)]
    return orderings.learned_tables(arms, seed, settings, "points", **kwargs)


def test_clouds(dataset: str, ordering: str, seed: int, *, data_dir=None, options=None) -> torch.Tensor:
    """The test clouds [N, P, 3] in an order, as the model sees them (slot m = table row m)."""
    return load_dataset(dataset, "test", ordering=ordering, data_dir=data_dir, seed=seed,
                        augment=False, **dict(options or {})).points


def ordering_of(table_name: str) -> str:
    return next((o for o in POINT_ORDERINGS if table_name.startswith(o)), "stored")


def structure_rows(tables: Mapping[str, tuple[torch.Tensor, Any]],
                   clouds: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
    """Per table: structure score (and chance sd) against 3-D distance, averaged over the test
    clouds in that table's order, and against distance along the sequence (orderings docstring);
    on all slots or a fixed subset of 2,048."""
    rows = []
    for name, (table, _) in tables.items():
        keep = orderings.subset(len(table))
        row = {"table": name}
        for kind, dist in (("3d", orderings.mean_cloud_distances(clouds[ordering_of(name)][:, keep])),
                           ("sequence", orderings.index_distances(keep))):
            row[f"structure_{kind}"], row[f"structure_{kind}_chance_sd"] = orderings.structure_score(table[keep], dist)
        rows.append(row)
    return rows


def pca_colours(table: torch.Tensor):
    """[P, 3] RGB in [0, 1]: the table's first three principal components."""
    return plots.pca_rgb(table, None, table.shape[0], 1)[:, 0]


def draw_clouds(tables: Mapping[str, tuple[torch.Tensor, Any]], clouds: Mapping[str, torch.Tensor],
                examples: list[int], class_names: list[str], labels: torch.Tensor) -> plt.Figure:
    """One row per table, one 3-D scatter per example cloud, points coloured by PCA of the table."""
    fig = plt.figure(figsize=(2.2 * len(examples), 2.1 * len(tables)))
    for r, (name, (table, _)) in enumerate(tables.items()):
        colours = pca_colours(table)
        points = clouds[ordering_of(name)]
        for c, i in enumerate(examples):
            ax = fig.add_subplot(len(tables), len(examples), r * len(examples) + c + 1, projection="3d")
            x = points[i].numpy()
            ax.scatter(x[:, 0], x[:, 1], x[:, 2], c=colours, s=2, depthshade=False)
            ax.set_axis_off()
            ax.set_title(f"{name}\n{class_names[int(labels[i])]}" if c == 0 else class_names[int(labels[i])],
                         fontsize=7)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.95, wspace=0, hspace=0.15)
    return fig


def example_indices(labels: torch.Tensor, count: int = 3) -> list[int]:
    """The first test cloud of `count` classes spread over the label range."""
    classes = sorted(set(labels.tolist()))
    picks = [classes[round(k * (len(classes) - 1) / max(count - 1, 1))] for k in range(min(count, len(classes)))]
    return [int((labels == c).nonzero()[0]) for c in picks]
