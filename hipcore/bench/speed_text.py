"""The README's training-speed text, from a committed benchmark folder alone (metrics.csv,
steps.csv, loops.csv, comparisons.csv, summary.json), never typed.

    speed_block(folder, made_on)    the table at the largest side, the ratios to perceiver-pytorch
                                    at every side, F5's repeats and the notebooks' loop rates
    large_images_text(folder, ...)  the paper's models from 224 up (the full profile's folder)

`made_on` describes the machine and commit (the caller reads provenance.json); every figure
here is read from the folder's files.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..results import markdown
from .results import ratios, read, read_loops
from .suite import Results

NAMES = {"hip16": "HiP-16", "hip256": "HiP-256", "hip16_fourier": "HiP-16, Fourier features",
         "perceiver_io": "Perceiver IO (the paper's ImageNet configuration)",
         "perceiver_small": "flat Perceiver, CPU scale (`perceiver_small`)",
         "perceiver_matched": "flat Perceiver in perceiver-pytorch's configuration (ours)",
         "perceiver_pytorch": "the same in `perceiver-pytorch` (the `bench` extra's pin)"}
SLOW = 1.2        # a repeat whose step is this much over the median is named as raising the mean
TASKS = {"supervised": "classification", "pretrain": "MAE pretraining"}


def _table(results: Results, side: int) -> str:
    """One row per model trained at `side`: steps/s, peak memory, FLOPs, share of the matmul peak."""
    rows = [r for r in results.rows if r["side"] == side and r["status"] == "ok"]
    precision = rows[0].get("precision") or "fp32"
    frame = pd.DataFrame({
        "model": [NAMES.get(r["model"], r["model"]) for r in rows],
        "steps/s": [f"{r['steps_per_s']:.3g}" for r in rows],
        "peak memory (GiB)": [f"{r['peak_memory_gb']:.2f}" for r in rows],
        "GFLOP per step": [f"{r['flops_per_step'] / 1e9:,.0f}" for r in rows],
        f"% of the {precision} matmul peak": [f"{100 * r['fraction_of_peak']:.1f}" for r in rows]})
    return markdown(frame)


def _peaks(results: Results) -> str:
    """'2,940.7 GFLOP/s in bf16 (fp32 445.0, fp16 424.6)': the run's matmul peaks."""
    precision = results.info.get("precision") or "fp32"
    peaks = results.info.get("peaks_gflops") or {precision: results.info["peak_gflops"]}
    others = ", ".join(f"{p} {v:,.1f}" for p, v in peaks.items() if p != precision)
    return f"{peaks[precision]:,.1f} GFLOP/s in {precision}" + (f" ({others})" if others else "")


def _against_pytorch(results: Results) -> str:
    found = ratios(results, "perceiver_matched", "perceiver_pytorch")
    if not found:
        return ""
    each = ", ".join(f"{ratio:.2f}x at {side} px" for side, ratio in sorted(found.items()))
    return (f"Our flat Perceiver over `perceiver-pytorch` at the same configuration, steps/s at each side "
            f"measured: {each}.")


def _f5(folder: Path, results: Results) -> str:
    """F5's row (comparisons.csv): its per-repeat ratios, their geometric mean, each repeat's
    Perceiver IO step, and the ratio of the medians that notebook 05's target row gives."""
    path = folder / "comparisons.csv"
    if not path.is_file():
        return ""
    pairs = pd.read_csv(path)
    pairs = pairs[pairs["finding"].str.startswith("F5")]
    if pairs.empty:
        return ""
    each = pairs["treatment"] / pairs["baseline"]
    mean = math.exp(each.map(math.log).mean())
    seconds = 1 / pairs["baseline"]
    warmup = results.info.get("settings", {}).get("warmup", "?")
    text = (f"F5 (HiP-16 over Perceiver IO at 224, the table at the top of this page) is the geometric mean of "
            f"the ratios of {len(each)} interleaved repeats in `comparisons.csv`: "
            f"{', '.join(f'{v:.2f}x' for v in each)}, mean {mean:.2f}x. Perceiver IO's step took "
            f"{', '.join(f'{v:.2f}' for v in seconds)} s in those repeats, after {warmup} untimed warm-up "
            f"step(s) per model.")
    if seconds.max() > SLOW * seconds.median():
        text += (f" The slowest ({seconds.max():.2f} s, {seconds.max() / seconds.median():.2f}x the median) "
                 "raises its repeat's ratio and with it the mean.")
    dropped = results.info.get("warmup", {}).get("f5_repeats_dropped")
    if dropped:
        text += (f" Repeat(s) {', '.join(map(str, dropped))} went as warm-up (summary.json's rule: "
                 f"{results.info['warmup']['rule']}).")
    medians = ratios(results).get(224)
    if medians is not None:
        text += f" The ratio of the median steps/s of all repeats in `metrics.csv` is {medians:.2f}x."
    return text


def _loops(folder: Path) -> str:
    if not (folder / "loops.csv").is_file():
        return ""
    rows = read_loops(folder)
    parts = []
    for task, name in TASKS.items():
        rates = [f"{r['examples_per_s']:,.0f} in {r['precision']}" for r in rows if r["task"] == task]
        if rates:
            parts.append(f"{name} {', '.join(rates)}")
    batch = rows[0]["batch"] if rows else "?"
    return (f"The notebooks' own training loop (`loops.csv`, small3 on Fashion-MNIST, batch {batch}), "
            f"images/s: {'; '.join(parts)}.")


LARGE_MODELS = ("hip16", "hip256", "hip16_fourier", "perceiver_io")
LARGE_FROM = 224     # the large-image table's first side: the paper's ImageNet side


def large_images_text(folder: str | Path, made_on: str) -> str:
    """The paper's models from LARGE_FROM up to the largest side of a benchmark folder (the
    full profile's): steps/s and peak memory, or why a model did not step; '' without one."""
    folder = Path(folder)
    if not (folder / "metrics.csv").is_file():
        return ""
    results = read(folder)
    sides = sorted({r["side"] for r in results.rows if r["side"] >= LARGE_FROM})
    cells = {(r["model"], r["side"]): (f"{r['steps_per_s']:.3g} ({r['peak_memory_gb']:.1f})" if r["status"] == "ok"
                                       else r["status"]) for r in results.rows}
    frame = pd.DataFrame([{"model": NAMES[m].split(" (")[0], **{f"{side}": cells.get((m, side), "-") for side in sides}}
                          for m in LARGE_MODELS if any((m, side) in cells for side in sides)])
    settings = results.info.get("settings", {})
    return "\n\n".join([
        f"Large images (`python -m hipcore bench --profile full`, `results/{folder.parent.name}/{folder.name}/`), "
        f"measured on {made_on}: steps/s (peak memory in GiB) at each side, batch {settings.get('batch', '?')}, "
        f"the median of {settings.get('repeats', '?')} timed steps; OOM: over the run's "
        f"{settings.get('memory_limit_gb', '?')} GiB limit. F5's memory half is its row in results/SUMMARY.md.",
        markdown(frame)])


def speed_block(folder: str | Path, made_on: str) -> str:
    """The README's speed section: everything read from the benchmark folder `folder`."""
    folder = Path(folder)
    if not (folder / "metrics.csv").is_file():
        return f"No benchmark in `{folder.name}` yet: `python -m hipcore bench` writes one."
    results = read(folder)
    side = max(r["side"] for r in results.rows if r["status"] == "ok")
    settings = results.info.get("settings", {})
    where = f"{folder.parent.name}/{folder.name}"
    head = (f"`python -m hipcore bench` (notebook 05, `results/{where}/`), measured on {made_on}: one step = "
            f"forward, backward, AdamW; batch {settings.get('batch', '?')}; the median of "
            f"{settings.get('repeats', '?')} interleaved timed steps; the matmul peak measured in the same run, "
            f"{_peaks(results)}. At {side} x {side}:")
    parts = [head, _table(results, side), _against_pytorch(results), _f5(folder, results), _loops(folder)]
    return "\n\n".join(part for part in parts if part)
