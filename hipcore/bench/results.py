"""What the benchmark leaves behind and what it concludes: CSVs, the figure, the targets.

Files in a results folder:
- metrics.csv: one row per (model, side), the columns of `suite.COLUMNS`;
- steps.csv: one row per timed step (model, side, batch, repeat, seconds);
- summary.json: machine, load average, matmul peaks per precision, settings, targets;
- loops.csv: training examples/s of the notebooks' own loops per precision (notebook 05);
- comparisons.csv (F5): Perceiver IO (baseline) and HiP-16 (treatment) steps/s at 224,
  paired by repeat, warm-up repeats dropped (`timed_pairs`), for `hipcore.report`;
- speed.png / speed.svg: time per step and peak memory against the number of inputs, beside
  the paper's TPU table.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from .. import report
from ..digests import check
from ..files import read_json
from ..plots import save_figure
from ..results import markdown
from .suite import COLUMNS, STEP_COLUMNS, Results

F5_MODELS = ("perceiver_io", "hip16")          # F5's (baseline, treatment): notebook 05's FINDINGS
F5_SIDE = 224
# The warm-up rule of timed repeats. A model's leading timed steps are warm-up while each takes
# more than WARMUP_FACTOR times the median of the steps after it (the first timed step can still
# pay for allocation and kernel choice: quick's Perceiver IO at 224 took 5.8 s, then 3.8 and
# 3.7); at least MIN_KEPT steps stay. A paired repeat is dropped when either model's step is
# warm-up. The F5 rows and summary.json's F5 target are both computed from the repeats kept.
WARMUP_FACTOR = 1.25
MIN_KEPT = 2
WARMUP_RULE = (f"a model's leading timed steps are warm-up while each takes more than {WARMUP_FACTOR:g}x the "
               f"median of the steps after it (at least {MIN_KEPT} kept); a paired repeat is dropped when "
               "either model's step is warm-up")
PAPER_SPEED_MODELS = {"hip16": "HiP-16", "hip256": "HiP-256", "hip16_fourier": "HiP-16 Fourier",
                      "perceiver_io": "Perceiver IO"}


def _number(text: str) -> Any:
    if text in ("", "None"):
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def write(results: Results, out: str | Path) -> list[Path]:
    """metrics.csv, steps.csv and summary.json (with the targets and the warm-up rule) in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, columns, rows in (("metrics.csv", COLUMNS, results.rows), ("steps.csv", STEP_COLUMNS, results.steps)):
        with open(out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows({c: ("" if r.get(c) is None else r[c]) for c in columns} for r in rows)
    summary = dict(results.info, targets=targets(results), warmup=warmup_record(results))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return [out / "metrics.csv", out / "steps.csv", out / "summary.json"]


def write_loops(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """loops.csv: training examples/s of the notebooks' loops (task, precision, batch, examples_per_s)."""
    path = Path(out) / "loops.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=("task", "precision", "batch", "examples_per_s"))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_loops(out: str | Path) -> list[dict[str, Any]]:
    """The rows write_loops wrote, numbers as numbers (ResultsChanged where its folder's
    SHA256SUMS does not sign them)."""
    path = Path(out) / "loops.csv"
    with open(check(path), newline="") as f:
        reader = csv.DictReader(f)
        missing = {"task", "precision", "batch", "examples_per_s"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        return [{**r, "batch": int(r["batch"]), "examples_per_s": float(r["examples_per_s"])} for r in reader]


def read(out: str | Path) -> Results:
    """A benchmark folder's timings, checked against the folder's SHA256SUMS (ResultsChanged
    naming a file changed since its run)."""
    out = Path(out)
    tables = []
    for name, columns in (("metrics.csv", COLUMNS), ("steps.csv", STEP_COLUMNS)):
        with open(check(out / name), newline="") as f:
            reader = csv.DictReader(f)
            missing = set(columns) - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{out / name}: missing columns {sorted(missing)}")
            tables.append([{k: _number(v) if k not in ("model", "package", "status") else v
                            for k, v in r.items()} for r in reader])
    info = read_json(check(out / "summary.json")) if (out / "summary.json").exists() else {}
    return Results(tables[0], tables[1], info)


# ---- the paper's table ----

def paper_speed(reference: dict[str, report.Reference] | None = None) -> dict[tuple[str, int], float | None]:
    """{(model, side): steps/s on TPUv3 at batch 8, None where the paper reports OOM}."""
    reference = report.paper_reference() if reference is None else reference
    out = {}
    for key, ref in reference.items():
        parts = key.split(".")
        if parts[0] == "speed" and len(parts) == 3:
            out[(parts[1], int(parts[2]))] = ref.value
    return out


# ---- targets ----

def _steps(results: Results, model: str, side: int) -> float | None:
    row = results.row(model, side)
    return row["steps_per_s"] if row and row["status"] == "ok" else None


def _ratio(results: Results, a: str, b: str, side: int) -> float | None:
    sa, sb = _steps(results, a, side), _steps(results, b, side)
    return sa / sb if sa and sb else None


def ratios(results: Results, treatment: str = "hip16", baseline: str = "perceiver_io") -> dict[int, float]:
    """{side: treatment steps/s / baseline steps/s} where both trained (of their medians)."""
    sides = sorted({r["side"] for r in results.rows})
    return {s: r for s in sides if (r := _ratio(results, treatment, baseline, s)) is not None}


def f5_ratio(results: Results) -> float | None:
    """F5's ratio, HiP-16's steps/s over Perceiver IO's at 224: the geometric mean over the
    repeats the warm-up rule keeps (`paired_ratio`), the effect of the rows `record_comparisons`
    writes; the ratio of the medians where no steps were recorded."""
    paired = paired_ratio(results, *F5_MODELS, F5_SIDE)
    return paired if paired is not None else ratios(results, F5_MODELS[1], F5_MODELS[0]).get(F5_SIDE)


def warmup_steps(seconds: list[float]) -> int:
    """How many leading steps of one model's timed steps are warm-up (WARMUP_FACTOR's rule)."""
    n = 0
    while len(seconds) - n > MIN_KEPT and seconds[n] > WARMUP_FACTOR * statistics.median(seconds[n + 1:]):
        n += 1
    return n


def timed_pairs(results: Results, baseline: str, treatment: str, side: int) -> list[tuple[int, float, float]]:
    """(repeat, baseline seconds, treatment seconds) of the repeats both models timed at `side`
    that the warm-up rule keeps."""
    times = {m: [s["seconds"] for s in sorted(results.steps, key=lambda s: s["repeat"])
                 if s["model"] == m and s["side"] == side] for m in (baseline, treatment)}
    n = min(len(times[baseline]), len(times[treatment]))
    drop = max(warmup_steps(times[baseline][:n]), warmup_steps(times[treatment][:n]))
    return [(i, times[baseline][i], times[treatment][i]) for i in range(drop, n)]


def paired_ratio(results: Results, baseline: str, treatment: str, side: int) -> float | None:
    """The treatment's steps/s over the baseline's at `side`: the geometric mean over the kept
    repeats of their ratios (hipcore.report's effect of the rows `record_comparisons` writes)."""
    pairs = timed_pairs(results, baseline, treatment, side)
    if not pairs:
        return None
    return math.exp(statistics.fmean(math.log(base / treat) for _, base, treat in pairs))


def warmup_record(results: Results) -> dict[str, Any]:
    """What summary.json says of the warm-up rule: the rule, and F5's repeats kept and dropped."""
    times = [s for s in results.steps if s["model"] == F5_MODELS[0] and s["side"] == F5_SIDE]
    kept = [i for i, _, _ in timed_pairs(results, *F5_MODELS, F5_SIDE)]
    return {"rule": WARMUP_RULE, "f5_repeats_kept": kept,
            "f5_repeats_dropped": sorted({s["repeat"] for s in times} - set(kept))}


def memory_exponents(results: Results, model: str, from_side: int = 224) -> dict[int, float]:
    """{side: d log(peak memory) / d log(inputs) from the previous side}, sides >= from_side."""
    rows = sorted((r for r in results.rows if r["model"] == model and r["status"] == "ok"
                   and r["side"] >= from_side and r["peak_memory_gb"]), key=lambda r: r["side"])
    return {b["side"]: math.log(b["peak_memory_gb"] / a["peak_memory_gb"]) / math.log(b["inputs"] / a["inputs"])
            for a, b in zip(rows, rows[1:])}


def targets(results: Results, reference: dict[str, report.Reference] | None = None) -> list[dict[str, Any]]:
    """The claims of the paper (F5) and this project's targets, each with paper | ours | met?"""
    paper = paper_speed(reference)
    found = []

    def add(target: str, paper_value: str, ours: str, met: bool | None) -> None:
        found.append({"target": target, "paper": paper_value, "ours": ours,
                      "met": "n/a (not measured)" if met is None else ("yes" if met else "no")})

    r, f5 = ratios(results), f5_ratio(results)
    add("HiP-16 / Perceiver IO steps/s at 224 >= 3.7", "3.7",
        f"{f5:.1f}" if f5 is not None else "not measured", None if f5 is None else f5 >= 3.7)
    paper_r = {s: paper[("hip16", s)] / paper[("perceiver_io", s)] for s in (224, 384, 512)}
    grow = [r[s] for s in sorted(r) if s >= 224]
    add("that ratio grows with resolution", " / ".join(f"{v:.1f}" for v in paper_r.values()) + " (224/384/512)",
        " / ".join(f"{r[s]:.1f} ({s})" for s in sorted(r) if s >= 224) or "not measured",
        None if len(grow) < 2 else all(b >= a for a, b in zip(grow, grow[1:])))
    m = ratios(results, "perceiver_matched", "perceiver_pytorch")
    side = 224 if 224 in m else (max(m) if m else None)
    add("hipcore flat Perceiver >= 2x perceiver-pytorch (same configuration)", "-",
        " / ".join(f"{v:.1f} ({s})" for s, v in sorted(m.items())) or "not measured",
        None if side is None else m[side] >= 2.0)
    row = results.row("hip16", 224)
    ok = row is not None and row["status"] == "ok"
    frac = (row.get("fraction_of_best_peak") or row["fraction_of_peak"]) if ok else None
    add("HiP-16 step at 224 >= 35% of the machine's best-precision matmul peak", "-",
        f"{100 * frac:.0f}% of {row.get('best_peak_gflops') or row['peak_gflops']:.0f} GFLOP/s "
        f"(trained in {row.get('precision') or 'fp32'})" if frac else "not measured",
        None if frac is None else frac >= 0.35)
    row = results.row("hip256", 2048)
    memory = results.info.get("machine", {}).get("memory_gb")
    ok = row is not None and row["status"] == "ok"
    add("one HiP-256 step at 2048 x 2048 within this machine's memory",
        f"{paper[('hip256', 2048)]} steps/s (TPUv3, batch 8)",
        (f"{row['steps_per_s']:.2f} steps/s, {row['peak_memory_gb']:.1f} GiB" if ok
         else (row["status"] if row else "not measured")),
        None if row is None else (ok and (memory is None or row["peak_memory_gb"] < memory)))
    exps = memory_exponents(results, "hip256")
    add("HiP-256 peak memory grows no faster than linearly in inputs", "-",
        ", ".join(f"x^{e:.2f} to {s}" for s, e in sorted(exps.items())) or "not measured",
        None if not exps else all(e <= 1.02 for e in exps.values()))
    trained = [m for m in PAPER_SPEED_MODELS if _steps(results, m, 2048)]
    add("only HiP-256 trains at 2048 x 2048", "only HiP-256 (others OOM at batch 8)",
        ", ".join(trained) or ("none" if any(r["side"] == 2048 for r in results.rows) else "not measured"),
        None if not any(r["side"] == 2048 for r in results.rows) else trained == ["hip256"])
    return found


def markdown_targets(found: list[dict[str, Any]]) -> str:
    return markdown(pd.DataFrame(found, columns=["target", "paper", "ours", "met"]).rename(columns={"met": "met?"}))


def markdown_table(results: Results, models: list[str] | None = None) -> str:
    """Our figures per model and side, with the paper's TPU steps/s beside them."""
    paper = paper_speed()
    models = models or list(dict.fromkeys(r["model"] for r in results.rows))
    cells = []
    for r in sorted((r for r in results.rows if r["model"] in models),
                    key=lambda r: (models.index(r["model"]), r["side"])):
        ref = paper.get((r["model"], r["side"]), "")
        ok = r["status"] == "ok"
        best = r.get("fraction_of_best_peak") or r["fraction_of_peak"]
        cells.append({
            # rows from before the column were fp32; a model that never stepped has none
            "model": r["model"], "side": r["side"], "precision": r.get("precision") or ("fp32" if ok else ""),
            "steps/s": f"{r['steps_per_s']:.3g}" if ok else r["status"],
            "images/s": f"{r['images_per_s']:.3g}" if ok else "",
            "inputs/s": f"{r['inputs_per_s']:.3g}" if ok else "",
            "peak GiB": f"{r['peak_memory_gb']:.2f}" if ok else "",
            "GFLOP/step": f"{r['flops_per_step'] / 1e9:.0f}" if r["flops_per_step"] else "",
            "GFLOP/s": f"{r['achieved_gflops']:.1f}" if ok else "",
            "% of its peak": f"{100 * r['fraction_of_peak']:.0f}%" if ok else "",
            "% of best peak": f"{100 * best:.0f}%" if ok else "",
            "paper steps/s": "OOM" if ref is None else f"{ref}"})
    return markdown(pd.DataFrame(cells, columns=["model", "side", "precision", "steps/s", "images/s", "inputs/s",
                                                 "peak GiB", "GFLOP/step", "GFLOP/s", "% of its peak",
                                                 "% of best peak", "paper steps/s"]))


def record_comparisons(results: Results, path: str | Path, finding: tuple[str, str, str, str, str],
                       side: int = F5_SIDE) -> int:
    """A speed finding as paired rows for hipcore.report: steps/s of the baseline model and the
    treatment model, one pair per interleaved repeat the warm-up rule keeps (`timed_pairs`; F5:
    Perceiver IO vs HiP-16, whose ratio the report compares with the paper's 3.7x and
    summary.json's target shows: `f5_ratio`). finding: (name, claim, paper key, baseline model, treatment
    model), a row of notebook 05's FINDINGS."""
    name, claim, key, baseline, treatment = finding
    pairs = timed_pairs(results, baseline, treatment, side)
    for i, base, treat in pairs:
        report.append_comparison(path, finding=name, claim=claim, paper_key=key, metric=f"steps/s ratio at {side}",
                                 seed=i, baseline=1 / base, treatment=1 / treat, replicate="repeat")
    return len(pairs)


# ---- the figure ----

def figure(results: Results, reference: dict[str, report.Reference] | None = None) -> plt.Figure:
    """Seconds per step and peak memory against inputs (ours, log-log), and the paper's TPU table."""
    paper = paper_speed(reference)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    models = list(dict.fromkeys(r["model"] for r in results.rows))
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    batch = results.rows[0]["batch"] if results.rows else "?"
    for model in models:
        rows = sorted((r for r in results.rows if r["model"] == model), key=lambda r: r["side"])
        ok = [r for r in rows if r["status"] == "ok"]
        if ok:
            axes[0].plot([r["inputs"] for r in ok], [r["step_s_median"] for r in ok], "o-",
                         color=colours[model], label=model)
            axes[1].plot([r["inputs"] for r in ok], [r["peak_memory_gb"] for r in ok], "o-",
                         color=colours[model], label=model)
        failed = [r for r in rows if r["status"] in ("OOM", "skipped (too slow)")]
        if failed and ok:
            first = failed[0]
            axes[0].plot([first["inputs"]], [ok[-1]["step_s_median"]], "x", color=colours[model], ms=9)
            axes[0].annotate(first["status"].replace("skipped ", ""), (first["inputs"], ok[-1]["step_s_median"]),
                             fontsize=7, color=colours[model], xytext=(4, 4), textcoords="offset points")
    for i, (model, label) in enumerate(PAPER_SPEED_MODELS.items()):
        sides = sorted(s for m, s in paper if m == model)
        ran = [(s * s, 1 / paper[(model, s)]) for s in sides if paper[(model, s)]]
        if ran:
            axes[2].plot(*zip(*ran), "o-", color=colours.get(model, f"C{i}"), label=label)
        oom = [s * s for s in sides if paper[(model, s)] is None]
        if oom and ran:
            axes[2].plot(oom[:1], [ran[-1][1]], "x", color=colours.get(model, f"C{i}"), ms=9)
    titles = (f"ours: seconds per training step (batch {batch})", f"ours: peak memory (batch {batch})",
              "paper: seconds per step (TPUv3, batch 8); x = OOM")
    for ax, title, ylabel in zip(axes, titles, ("seconds / step", "GiB", "seconds / step")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("inputs M (pixels)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save(results: Results, out: str | Path) -> list[Path]:
    """Write the CSVs, summary.json and the figure (speed.png + speed.svg) into `out`."""
    paths = write(results, out)
    fig = figure(results)
    paths += save_figure(fig, Path(out) / "speed")
    plt.close(fig)
    return paths
