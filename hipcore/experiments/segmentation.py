"""07_dense_decoding: a label per pixel, where HiP's decoder is what the model is for.

The paper (PASCAL VOC, 512 x 512, mean IoU): HiP-16 with the full decoder 71.0, reading the
bottleneck only 70.0, Perceiver IO 62.0 (67.7 with a shallow variant), ResNet-50 70.5. VOC is
not on this machine; the task here is collages (`hipcore.data.collages`): Fashion-MNIST items
pasted on a side x side canvas, one of 11 labels per pixel (0 background), drawn from the seed.

Arms, each trained with task 'segment' (per-pixel cross-entropy; validation mIoU picks the
checkpoint and feeds the plateau rule; the test set scored once):

    HiP, full decoder       the profile's HiP (small3), its segmentation head reading the finest
                            decoder level (dense_from 'decoder')
    HiP, bottleneck only    the same HiP, the head reading the processor's latents, the decoder
                            blocks skipped (dense_from 'bottleneck')
    Perceiver IO            a flat Perceiver (one block, one group), the head its query decoder

Beside them, a reference a reader knows: a small U-Net (`baselines.SmallUNet`) trained on each
seed's same training canvases, its epochs chosen on the same validation canvases. Verdict rows
(`FINDINGS`): full decoder minus bottleneck (paper +1.0 mIoU points) and full decoder minus
Perceiver IO (paper +9.0), paired by seed, judged by `hipcore.report`'s rules.

The cost: one training step of each model (the U-Net too) at canvas sides 64, 128, 256, 512
and up, each side in fresh processes (`hipcore.bench.suite`: steps/s, peak memory, a model
that ran out of memory or time at one side not tried at larger ones), on one-channel canvases
as collages are.

    S = notebook.setup(NOTEBOOK, profile=..., table=TABLE, ...)
    res = results(S, data)            # committed results, or trained here
    write(S, res)                     # metrics, summary.json, provenance
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..config import variant as variant_config
from ..data import load_dataset
from ..files import write_csv_atomic
from ..locations import resolve_relative
from ..notebook import ParameterError
from ..report import paper_reference
from ..results import fmt_mean_sd, markdown, read_table
from . import baselines, common, image_arms, regime

NOTEBOOK = "07_dense_decoding"     # notebooks/<NOTEBOOK>.ipynb, its results in results/<NOTEBOOK>/<profile>/
DATASET = "collages"

FULL, BOTTLENECK, PERCEIVER = "HiP, full decoder", "HiP, bottleneck only", "Perceiver IO (query decoder)"
UNET = baselines.DENSE_MODELS[0]
ITEM_SIDE = 28                     # Fashion-MNIST's side: an item's size on a 64-pixel canvas

# Per profile: the canvas `side` (a multiple of 16), canvases to train on (`limit_train`; as
# many again as `val_size` are drawn for validation) and to test on, the U-Net's epoch grid, and
# the cost curve's sides, batch, repeats, and the step time and memory past which a model stops.
TABLE = common.profiles({
    # CI: 32 x 32 canvases, a handful of steps; checks the plumbing, not the finding.
    "smoke": dict(side=32, limit_train=48, val_size=16, test_canvases=32, epochs=1, batch_size=16,
                  warmup_epochs=0.5, val_fraction=0.1, flat_variant="perceiver_small", unet_epochs=(1, 2),
                  cost_sides=(32, 64), cost_batch=1, cost_repeats=2, cost_max_step_s=5.0, cost_memory_gb=4.0,
                  cost_threads=1),
    # Binder (2 GB, a share of a CPU): 300 canvases of 64 x 64, 2 epochs, one seed; cost up to 128.
    "binder": dict(side=64, limit_train=300, val_size=100, test_canvases=100, epochs=2, batch_size=32,
                   warmup_epochs=0.5, val_fraction=0.1, flat_variant="perceiver_small", unet_epochs=(1, 2, 3),
                   cost_sides=(64, 128), cost_batch=1, cost_repeats=2, cost_max_step_s=10.0, cost_memory_gb=1.0,
                   cost_threads=None),
    # 2 CPU cores: 1,000 canvases of 64 x 64 (200 more to validate on, 500 to test), 3 seeds,
    # early training. Measured at one thread (bf16, a 2-core AMD EPYC beside the converged queue),
    # an epoch with its validation: 14 s with the full decoder, 18 s reading the bottleneck, 22 s
    # for the flat Perceiver, so 6 epochs x 3 seeds take about 16 min; the U-Net's grid up to 6
    # epochs about 75 s a seed; the cost curve (64-1024) 3.8 min: about 24 minutes at one
    # thread, less on two quiet cores. After 2 epochs every arm was still near all-background
    # (validation mIoU 7-8%).
    "quick": dict(side=64, limit_train=1000, val_size=200, test_canvases=500, epochs=6, batch_size=32,
                  lr=2e-3, warmup_epochs=0.5, val_fraction=0.1, seeds=(0, 1, 2), flat_variant="perceiver_small",
                  unet_epochs=(2, 4, 6), cost_sides=(64, 128, 256, 512, 1024), cost_batch=1, cost_repeats=3,
                  cost_max_step_s=20.0, cost_memory_gb=12.0, cost_threads=None),
    # 128 x 128 canvases (items 56 pixels a side), 4,000 to train on, each arm to its plateau.
    "full": dict(side=128, limit_train=4000, val_size=1000, test_canvases=1000, epochs=60, batch_size=32,
                 lr=2e-3, warmup_epochs=2, val_fraction=0.1, plateau=True, seeds=(0, 1, 2),
                 flat_variant="perceiver_small", unet_epochs=baselines.KNOBS[UNET].epochs,
                 cost_sides=(64, 128, 256, 512, 1024, 2048), cost_batch=1, cost_repeats=5,
                 cost_max_step_s=60.0, cost_memory_gb=20.0, cost_threads=None),
    # The paper's side and model (HiP-16 at 512 x 512), its flat baseline Perceiver IO's size; a GPU.
    "paper": dict(variant="hip16", side=512, limit_train=10000, val_size=1000, test_canvases=1000, epochs=100,
                  batch_size=32, warmup_epochs=5, val_fraction=0.1, plateau=True, seeds=(0, 1, 2),
                  flat_variant="perceiver_io_imagenet", unet_epochs=baselines.KNOBS[UNET].epochs,
                  cost_sides=(128, 256, 512, 1024, 2048), cost_batch=8, cost_repeats=5, cost_max_step_s=120.0,
                  cost_memory_gb=60.0, cost_threads=None),
    # quick's canvases, each arm until the plateau rule stops it (epochs: the cap), judged on 6,000
    # validation canvases (below about 4,700 the rule cannot stop a flat curve near 50%, its noise
    # binomial over canvases), at a constant learning rate after warm-up as the images' converged
    # row (the rule, not the cap, ends a run); the converged queue trains it, the U-Net (a job of
    # its own) at `other_seeds`.
    "converged": dict(side=64, limit_train=1000, test_canvases=500, epochs=60, batch_size=32,
                      lr=2e-3, warmup_epochs=0.5, schedule="constant", val_fraction=0.1, plateau=True,
                      seeds=(0, 1, 2, 3, 4),
                      flat_variant="perceiver_small", unet_epochs=(2, 4, 6, 8, 10, 15, 20), other_seeds=3,
                      cost_sides=(64, 128, 256, 512, 1024), cost_batch=1, cost_repeats=3, cost_max_step_s=20.0,
                      cost_memory_gb=12.0, cost_threads=None),
}, {"other_seeds": "seeds of what no paper row rests on: the U-Net's (the converged queue)",
    "side": "the canvas side in pixels (a multiple of 16)",
    "test_canvases": "test canvases (the same for every seed)",
    "flat_variant": "the flat Perceiver IO's variant",
    "unet_epochs": "the small U-Net's epoch grid, chosen on validation",
    "cost_sides": "canvas sides of the cost curve",
    "cost_batch": "canvases per timed step",
    "cost_repeats": "timed steps per model and side",
    "cost_max_step_s": "a model slower than this per step is not tried at larger sides",
    "cost_memory_gb": "a model needing more memory than this is not tried at larger sides",
    "cost_threads": "threads of the timed steps (None: every core)"})

# The paper's mIoU on PASCAL VOC for each arm (results/paper_reference.csv); the U-Net stands
# where the paper's reference CNN, ResNet-50, does.
PAPER_KEYS = {FULL: "voc.hip16_full_decoder", BOTTLENECK: "voc.hip16_bottleneck", PERCEIVER: "voc.perceiver_io",
              UNET: "voc.resnet50"}
PAPER_NAMES = {FULL: "HiP-16, full decoder", BOTTLENECK: "HiP-16, bottleneck only", PERCEIVER: "Perceiver IO",
               UNET: "ResNet-50"}
PAPER_ALSO = {PERCEIVER: ("shallow", "voc.perceiver_io_shallow")}      # another row the paper gives an arm

# (finding, claim, paper key, baseline arm, treatment arm): the effect is treatment - baseline, in mIoU points.
FINDINGS = (
    ("Dense: HiP full decoder vs bottleneck only", "higher", "effect.voc_full_decoder_vs_bottleneck",
     BOTTLENECK, FULL),
    ("Dense: HiP full decoder vs Perceiver IO", "higher", "effect.voc_full_decoder_vs_perceiver_io",
     PERCEIVER, FULL),
)
MATCHES: dict[str, str] = {}        # no FLOP-matched control (the converged queue)


# ---- data and arms ----

def item_side(side: int) -> int:
    """Items grow with the canvas: 28 pixels (Fashion-MNIST's own) up to a 64-pixel canvas,
    side * 28 / 64 above it, so a 128 canvas is not 92% background."""
    return max(ITEM_SIDE, side * ITEM_SIDE // 64)


def data_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """collages' options of a profile: the canvas and its items, training canvases enough for
    limit_train plus val_size spare ones (validation), and the test canvases."""
    side = settings["side"]
    return {"side": side, "item_side": item_side(side), "test_canvases": settings["test_canvases"],
            "train_canvases": settings["limit_train"] + settings["val_size"]}


def arms(settings: Mapping[str, Any]) -> dict[str, common.Arm]:
    """{key: arm}: the profile's HiP reading its full decoder or its bottleneck, and the flat
    Perceiver with its query decoder, all trained to segment."""
    return {"full": common.Arm(FULL, task="segment", ordering="raster", model={"dense_from": "decoder"}),
            "bottleneck": common.Arm(BOTTLENECK, task="segment", ordering="raster", model={"dense_from": "bottleneck"}),
            "perceiver": common.Arm(PERCEIVER, variant=settings["flat_variant"], task="segment", ordering="raster")}


def queue_arms(settings: Mapping[str, Any]) -> dict[str, tuple[common.Arm, str | None]]:
    """{key: (arm, None)} for the converged queue (hipcore.converge): no arm matches another's FLOPs."""
    return {key: (arm, MATCHES.get(key)) for key, arm in arms(settings).items()}


def check_canvas(side: Any, settings: Mapping[str, Any]) -> int:
    """`side` when every arm's first-level groups split a side x side canvas into whole groups
    and collages can draw it (a multiple of 16, items fitting); ParameterError naming it otherwise."""
    if not isinstance(side, int) or isinstance(side, bool) or side < ITEM_SIDE:
        raise ParameterError(f"side={side!r} is not allowed; give the canvas side in pixels, an int >= {ITEM_SIDE} "
                             "(64, 128, 256, ...)")
    for arm in arms(settings).values():
        name = arm.variant or settings["variant"]
        groups = variant_config(name).blocks[0].groups
        if (side * side) % groups:
            raise ParameterError(f"side={side}: {name}'s {groups} first-level groups cannot split a {side} x {side} "
                                 f"canvas ({side * side} positions) evenly; choose a multiple of 16 (64, 128, 256)")
    try:
        from ..data.collages import check_side

        check_side(side)
    except ValueError as error:
        raise ParameterError(f"side={side}: {error}") from None
    return side


def record_findings(path: str | Path, rows: list[dict[str, Any]]) -> list[str]:
    """FINDINGS' per-seed pairs of test mIoU (in 'mIoU %') for the arms that ran."""
    return image_arms.record_findings(path, rows, FINDINGS, metric="test_miou", unit="mIoU %")


# ---- the notebook's two calls: its results (read or trained), and writing them ----

COST = "cost.csv"


def results(S, data: Mapping[str, Any]) -> regime.Outcome:
    """The arms' runs, the U-Net's rows, learning curves and the cost curve: read from the
    committed results (S.reading, a notebook.Setup), else trained and measured here, written,
    and the findings recorded. data: dataset, data_dir, data_options."""
    if S.reading:
        return regime.read_outcome(S.out, cost=read_cost(S.out / COST))
    # The cost first: its measuring processes then run beside a kernel that has trained nothing
    # yet (on Binder, beside one that has, they would pass its 2 GB).
    cost = cost_rows(S.settings)
    write_csv_atomic(S.out / COST, COST_COLUMNS, [{c: "" if r.get(c) is None else r[c] for c in COST_COLUMNS}
                                                  for r in cost])
    chosen = arms(S.settings)
    rows = common.run_arms(list(chosen.values()), S.seeds, S.settings, **data)
    for row in rows:
        row["parameters"] = trained_parameters(next(a for a in chosen.values() if a.label == row["arm"]),
                                               S.settings, **data)
    knobs = {UNET: baselines.Knobs(epochs=tuple(S["unet_epochs"]))}
    references = regime.baseline_rows(chosen["full"], S.seeds, S.settings, family="dense", knobs=knobs, **data)
    print("; ".join(f"{r['model']}, seed {r['seed']}: {r['test_miou']:.2f}% mIoU ({r['epochs']} epochs)"
                    for r in references))
    outcome = regime.write_outcome(S.out, rows, references, cost=cost)
    record_findings(S.out / "comparisons.csv", rows)
    outcome.figures["masks"] = lambda: masks_figure(rows, S.seeds[0], data)
    return outcome


def write(S, outcome: regime.Outcome) -> None:
    """metrics.csv (test mIoU, pixel accuracy and parameters per arm), arms.csv, summary.json
    (arms, the U-Net, findings, the cost curve's sentences), provenance."""
    table = arm_table(outcome)
    metrics = common.metric_rows(outcome.rows, RUN_METRICS) + [
        {"run_id": a["arm"], "split": "model", "metric": "parameters", "value": a["parameters"]} for a in table]
    regime.write_results(S, metrics=metrics, rows=outcome.rows, dataset=DATASET, seeds=S.seeds,
                         settings=dict(S.settings), arms=table, findings=[f.__dict__ for f in regime.findings(S.out)],
                         regime=regime.label(outcome.rows), cost=cost_sentences(outcome.extra["cost"]))


RUN_METRICS = (*common.DENSE_SCORES, "test_loss", "train_examples_per_s", "total_seconds")


def trained_parameters(arm: common.Arm, settings: Mapping[str, Any], **data: Any) -> int:
    """Parameters the arm's segmentation trains (the reconstruction head, and reading the
    bottleneck the decoder, left out as the training loop leaves them), built on the meta device."""
    from ..config import ModalitySpec
    from ..model import HiP
    from ..train.dense import freeze_unused
    from ..train.engine import model_config

    _, cfg = common.train_configs(arm, 0, settings, **data)
    side = settings["side"]
    with torch.device("meta"):
        model = HiP(model_config(cfg, num_labels()), {"image": ModalitySpec(side * side, 1, (side, side))})
    freeze_unused(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def num_labels() -> int:
    """collages' labels per pixel: background and the ten item classes (read where the data states them)."""
    from ..data.collages import CLASS_NAMES  # late: a module listing notebooks never loads the dense data

    return len(CLASS_NAMES)


# ---- tables ----

def arm_table(outcome: regime.Outcome) -> list[dict[str, Any]]:
    """One dict per arm, then the U-Net: test mIoU per seed, mean and sd, pixel accuracy, the
    paper's VOC mIoU beside it, trained parameters, epochs run."""
    ref = paper_reference()
    out = []
    for arm, group in pd.DataFrame(outcome.rows).groupby("arm", sort=False):
        out.append(_arm_entry(arm, group, ref, parameters=int(group["parameters"].iloc[0]),
                              epochs=", ".join(str(int(e)) for e in group.get("epochs_run", []))))
    if outcome.references:
        unet = pd.DataFrame(outcome.references)
        out.append(_arm_entry(UNET, unet, ref, parameters=unet_parameters(),
                              epochs=", ".join(str(int(e)) for e in unet["epochs"]) + " (chosen on validation)"))
    return out


def _arm_entry(arm: str, group: pd.DataFrame, ref, *, parameters: int, epochs: str) -> dict[str, Any]:
    key = PAPER_KEYS.get(arm)
    mious = [float(v) for v in group["test_miou"]]
    also = PAPER_ALSO.get(arm)
    return {"arm": arm, "paper_key": key, "paper": ref[key].value if key in ref else None,
            "paper_also": f"{also[0]} {ref[also[1]].value:.1f}" if also and also[1] in ref else "",
            "paper_arm": PAPER_NAMES.get(arm), "mious": mious, "miou": statistics.fmean(mious),
            "miou_sd": statistics.stdev(mious) if len(mious) > 1 else math.nan,
            "pixel_accuracy": statistics.fmean(float(v) for v in group["test_pixel_accuracy"]),
            "seeds": len(mious), "parameters": parameters, "epochs": epochs}


def unet_parameters() -> int:
    return sum(p.numel() for p in baselines.SmallUNet(1, num_labels()).parameters())


def markdown_arms(table: list[dict[str, Any]], side: int) -> str:
    """The paper's table beside ours: VOC mIoU, ours on collages (mean ± sd over seeds), pixel
    accuracy, parameters trained, epochs."""
    return markdown(pd.DataFrame([{
        "arm": a["arm"],
        "paper (VOC 512 x 512)": "n/a" if a["paper"] is None else (
            f"{a['paper_arm']}: {a['paper']:.1f}" + (f" ({a['paper_also']})" if a["paper_also"] else "")),
        f"ours mIoU % (collages {side} x {side})": fmt_mean_sd(a["miou"], a["miou_sd"]),
        "pixel accuracy %": f"{a['pixel_accuracy']:.1f}",
        "seeds": a["seeds"],
        "parameters trained": f"{a['parameters']:,}",
        "epochs": a["epochs"]} for a in table]))


# ---- figures ----

def class_colours():
    """A colour per collages label: background black, the ten item classes tab10's."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(["black", *plt.get_cmap("tab10").colors])


def masks_figure(rows: list[dict[str, Any]], seed: int, data: Mapping[str, Any], count: int = 4) -> plt.Figure:
    """Test canvases (rows): the canvas, its ground truth, and each arm's predicted labels from
    the checkpoint its validation selected (seed `seed`)."""
    from ..train import load_model
    from ..train.dense import predict_masks

    test = load_dataset(DATASET, "test", ordering="raster", data_dir=data.get("data_dir"), seed=seed,
                        **dict(data["data_options"]))
    indices = list(range(min(count, len(test))))
    picked = [r for r in rows if r["seed"] == seed]
    predicted, truth = {}, None
    for row in picked:
        folder = resolve_relative(row["run_dir"])
        model = load_model(folder / "best.pt" if (folder / "best.pt").is_file() else folder / "last.pt")
        truth, predicted[row["arm"]] = predict_masks(model, test, indices)            # [n, side, side] each
    canvases = test.get_batch(torch.tensor(indices))[0]["image"][..., 0]              # [n, M], raster
    return draw_masks(canvases.reshape(truth.shape).numpy(), truth.numpy(),
                      {arm: labels.numpy() for arm, labels in predicted.items()}, seed)


def draw_masks(canvases: np.ndarray, truth: np.ndarray, predicted: Mapping[str, np.ndarray], seed: int) -> plt.Figure:
    """canvases, truth [n, H, W] and {arm: predicted [n, H, W]} -> one row per canvas."""
    columns = ["canvas", "ground truth", *predicted]
    fig, axes = plt.subplots(len(canvases), len(columns), figsize=(1.9 * len(columns), 1.9 * len(canvases)),
                             squeeze=False)
    cmap = class_colours()
    for i in range(len(canvases)):
        panels = [canvases[i], truth[i], *(p[i] for p in predicted.values())]
        for j, (ax, panel) in enumerate(zip(axes[i], panels)):
            if j == 0:
                ax.imshow(panel, cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(panel, cmap=cmap, vmin=-0.5, vmax=num_labels() - 0.5, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(columns[j], fontsize=7)
    fig.suptitle(f"test canvases: labels per pixel (seed {seed})", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles=label_patches(), loc="lower center", ncol=6, fontsize=6, frameon=False)
    return fig


def label_patches() -> list:
    """One legend patch per collages label, in `class_colours`."""
    from matplotlib.patches import Patch

    from ..data.collages import CLASS_NAMES  # late: a module listing notebooks never loads the dense data

    cmap = class_colours()
    return [Patch(color=cmap(i), label=name) for i, name in enumerate(CLASS_NAMES)]


def draw_curves(curves: list[dict[str, Any]], rows: list[dict[str, Any]], title: str) -> plt.Figure:
    """Every run's validation mIoU per epoch (colour: arm; line style: seed), a star where its
    validation selected the checkpoint the test set scored, its last point where it stopped
    (the legend says whether at its plateau)."""
    fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
    labels = list(dict.fromkeys(r["arm"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    for row in rows:
        val = sorted((c["epoch"], 100 * c["value"]) for c in curves if c["arm"] == row["arm"]
                     and c["seed"] == row["seed"] and c["split"] == "val" and c["metric"] == "miou")
        if not val:
            continue
        colour, style = f"C{labels.index(row['arm'])}", ("-", "--", ":", "-.")[seeds.index(row["seed"]) % 4]
        stop = "at its plateau" if row.get("converged") else "not at its plateau"
        ax.plot(*zip(*val), color=colour, ls=style, marker=".",
                label=f"{row['arm']}, seed {row['seed']}: stopped at {val[-1][0]} ({stop})")
        chosen = [c["epoch"] for c in curves if c["arm"] == row["arm"] and c["seed"] == row["seed"]
                  and c["split"] == "test" and c["metric"] == "miou"]
        if chosen:
            ax.plot(chosen[0], dict(val).get(chosen[0], math.nan), "*", color=colour, markersize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation mIoU (%)")
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title(title + " (stars: the epoch validation selected)", fontsize=9)
    return fig


# ---- the cost against canvas side ----

# The benchmark's model for each arm (hipcore.bench.models) at the cost curve's sides.
COST_MODELS = {FULL: "seg_hip_decoder", BOTTLENECK: "seg_hip_bottleneck", PERCEIVER: "seg_perceiver_io",
               UNET: "seg_unet"}
COST_COLUMNS = ("arm", "model", "side", "status", "steps_per_s", "peak_memory_gb", "flops_per_step", "params",
                "batch", "threads", "precision")


def cost_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """hipcore.bench.suite's settings for the cost curve of a profile."""
    return dict(models=tuple(COST_MODELS.values()), sides=tuple(settings["cost_sides"]), batch=settings["cost_batch"],
                warmup=1, repeats=settings["cost_repeats"], max_step_s=settings["cost_max_step_s"],
                memory_limit_gb=settings["cost_memory_gb"], peak_sizes=(512, 1024), min_side={}, max_side={},
                threads=settings["cost_threads"], seed=0, precision=settings["precision"])


def cost_rows(settings: Mapping[str, Any], log=print) -> list[dict[str, Any]]:
    """One training step of each model at each side, in fresh processes: one row per (arm, side)."""
    from ..bench.suite import run

    names = {model: arm for arm, model in COST_MODELS.items()}
    measured = run(cost_settings(settings), log=log)
    return [{"arm": names[r["model"]], **{c: r.get(c) for c in COST_COLUMNS if c != "arm"}} for r in measured.rows]


COST_SHAPE = dict(key=("arm", "side"), whole=("side",), known={"arm": (tuple(COST_MODELS), "segmentation.COST_MODELS")})


def read_cost(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a cost.csv, numbers as numbers (empty where the step did not run), checked."""
    raw = read_table(Path(path), COST_COLUMNS, **COST_SHAPE)
    rows = raw.to_dict("records")
    for r in rows:
        for c in ("steps_per_s", "peak_memory_gb", "flops_per_step", "params", "batch", "threads"):
            value = r.get(c)
            r[c] = None if value in ("", None) or (isinstance(value, float) and math.isnan(value)) else float(value)
        r["side"] = int(r["side"])
    return rows


def cost_sentences(cost: list[dict[str, Any]]) -> list[str]:
    """Per model: steps/s and memory from its smallest to its largest side measured, and how many
    times a step's time grew; then whether Perceiver IO's grew faster than HiP's over the sides
    both reached. Computed from the rows, nothing written in advance."""
    ok = [r for r in cost if r["status"] == "ok" and r["steps_per_s"]]
    lines = []
    for arm in COST_MODELS:
        mine = sorted((r["side"], r) for r in ok if r["arm"] == arm)
        stopped = [r for r in cost if r["arm"] == arm and r["status"] != "ok"]
        if not mine:
            continue
        (s0, first), (s1, last) = mine[0], mine[-1]
        end = f"; at {stopped[0]['side']}: {stopped[0]['status']}" if stopped else ""
        lines.append(f"{arm}: {first['steps_per_s']:.2f} steps/s at {s0} x {s0}, {last['steps_per_s']:.3f} at "
                     f"{s1} x {s1} "
                     f"(a step {first['steps_per_s'] / last['steps_per_s']:.1f}x as long), peak memory "
                     f"{first['peak_memory_gb']:.2f} -> {last['peak_memory_gb']:.2f} GiB{end}")
    return lines + growth_sentence(ok)


def growth_sentence(ok: list[dict[str, Any]]) -> list[str]:
    """Perceiver IO's step-time growth against HiP's (full decoder) over the sides both measured."""
    sides = {arm: {r["side"]: r["steps_per_s"] for r in ok if r["arm"] == arm} for arm in (FULL, PERCEIVER)}
    common_sides = sorted(set(sides[FULL]) & set(sides[PERCEIVER]))
    if len(common_sides) < 2:
        return []
    low, high = common_sides[0], common_sides[-1]
    growth = {arm: sides[arm][low] / sides[arm][high] for arm in sides}
    faster = growth[PERCEIVER] > growth[FULL]
    return [f"from {low} x {low} to {high} x {high}, a step of {PERCEIVER} took {growth[PERCEIVER]:.1f}x longer and "
            f"one of {FULL} {growth[FULL]:.1f}x: the flat Perceiver's cost grew "
            f"{'faster' if faster else 'no faster'} than HiP's"]


def markdown_cost(cost: list[dict[str, Any]]) -> str:
    """Steps/s and peak memory per model (rows) and canvas side (columns); what stopped a model."""
    sides = sorted({r["side"] for r in cost})

    def cell(r: dict[str, Any] | None) -> str:
        if r is None:
            return ""
        if r["status"] != "ok":
            return r["status"]
        return f"{r['steps_per_s']:.3g} steps/s, {r['peak_memory_gb']:.2f} GiB"

    by = {(r["arm"], r["side"]): r for r in cost}
    return markdown(pd.DataFrame([{"model": arm, **{f"{s} x {s}": cell(by.get((arm, s))) for s in sides}}
                                  for arm in COST_MODELS if any(a == arm for a, _ in by)]))


def draw_cost(cost: list[dict[str, Any]], title: str) -> plt.Figure:
    """Steps/s and peak memory against canvas side, one line per model (log-log); a model's
    line ends where it ran out of memory or time."""
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for i, arm in enumerate(COST_MODELS):
        points = sorted((r["side"], r["steps_per_s"], r["peak_memory_gb"]) for r in cost
                        if r["arm"] == arm and r["status"] == "ok" and r["steps_per_s"])
        if not points:
            continue
        sides, rates, gib = zip(*points)
        speed.plot(sides, rates, "o-", color=f"C{i}", label=arm)
        memory.plot(sides, gib, "o-", color=f"C{i}", label=arm)
    for ax, label in ((speed, "training steps/s"), (memory, "peak memory (GiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("canvas side (pixels)")
        ax.set_ylabel(label)
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig
