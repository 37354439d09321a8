"""Position tables scored for grid geometry as F7 decides it, for notebooks 03 and 06.

Every table is scored by `geometry.partial_geometry` on the training images of the seed's run
(the data's pixel correlation and cosine removed), beside content-only controls built from the
same images and scored exactly alike: `geometry.content_controls` (per-pixel statistics,
class-mean images, PCA loadings) and the table's own rows permuted; in 03 also a 2-D Fourier
table, the positive control. A table is called structured only by F7's rule (`decide`:
`geometry.holds_geometry` over seeds, the table against its best content-only control seed by
seed); one seed shows no spread, so it cannot be decided.

The raw score (row similarity against grid distance, against a permutation band) is gone:
tables built from image content alone pass it (issue 32, item 3).
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import torch

from .. import geometry
from ..results import markdown
from .common import Arm, train_configs, training_part

GEOMETRY_IMAGES = 2000        # training images the data's pixel correlation and the controls are built from
CONTENT, GEOMETRIC, LEARNED = "content only (control)", "geometry (positive control)", "learned"
FOURIER = "2-D Fourier table"
HOLDS, LACKS, UNDECIDED = "yes", "no", "cannot be decided (one seed)"
# A results folder written before the partial score: its raw score's column, and what to do.
SUPERSEDED = "raw score (superseded)"
RERUN = ("These results predate the partial score: their structure table holds the raw structure score, "
         "superseded because tables built from image content alone pass it; rerun the profile (train = True) "
         "to score each table beside the content-only controls.")
# structure_rows' columns as tables show them
HEADINGS = {"partial_score": "partial score (mean over seeds)",
            "best_control": "best content-only control (mean over seeds)",
            "holds_geometry": "holds geometry (F7's rule)"}


def training_images(arm: Arm, seed: int, settings: Mapping[str, Any], modality: str = "image",
                    train_data=None, **data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [N, M, C] in the tables' input order, labels [N]): the first GEOMETRY_IMAGES of
    the examples the seed's run of `arm` trains on (from `train_data`, the training set, when
    it is loaded already)."""
    _, sup = train_configs(arm, seed, settings, **data)
    part = training_part(sup, train_data)
    inputs, labels = part.get_batch(torch.arange(min(GEOMETRY_IMAGES, len(part))))
    return inputs[modality], labels


def permuted_name(table: str) -> str:
    """The name of `table`'s own rows-permuted control."""
    return f"{table}, {geometry.PERMUTED}"


def geometry_scores(tables: Mapping[str, torch.Tensor], spec, images: torch.Tensor, labels: torch.Tensor,
                    seed: int, *, fourier: bool = True) -> list[dict[str, Any]]:
    """`geometry.partial_geometry` of each table (LEARNED), of the content-only controls built
    from the same training images (CONTENT: shared, 'of' ''; each table's rows permuted, 'of'
    that table) and, with `fourier`, of a 2-D Fourier table (GEOMETRIC, its rows permuted too),
    all scored alike: rows {'table', 'kind', 'of', 'score'}."""
    fourier_tables = {FOURIER: geometry.fourier_table(spec.grid, spec.order)} if fourier else {}
    scored = ([(name, LEARNED, "", t) for name, t in tables.items()]
              + [(name, CONTENT, "", t) for name, t in geometry.content_controls(images, labels).items()]
              + [(permuted_name(name), CONTENT, name, geometry.permuted(t, seed))
                 for name, t in {**tables, **fourier_tables}.items()]
              + [(name, GEOMETRIC, "", t) for name, t in fourier_tables.items()])
    return [{"table": name, "kind": kind, "of": of,
             "score": geometry.partial_geometry(t, images, spec.grid, spec.order, seed=seed)}
            for name, kind, of, t in scored]


def controls_of(scores: list[dict[str, Any]], table: str) -> dict[str, float]:
    """{control: score} of `table`'s content-only controls among `geometry_scores` rows: the
    shared ones and its own rows permuted (named by geometry.PERMUTED, so seeds line up)."""
    return {(geometry.PERMUTED if r["of"] else r["table"]): r["score"] for r in scores
            if r["kind"] == CONTENT and r["of"] in ("", table)}


def best_control(scores: list[dict[str, Any]], table: str) -> float:
    """The best content-only control's partial score for `table` (`controls_of`)."""
    return max(controls_of(scores, table).values())


def decide(scores: list[float], controls: Mapping[str, list[float]]) -> str:
    """F7's rule on one table: HOLDS when `geometry.holds_geometry` says so over the seeds
    (scores and each control's, one per seed), LACKS when not, UNDECIDED with one seed."""
    if len(scores) < 2:
        return UNDECIDED
    return HOLDS if geometry.holds_geometry(scores, dict(controls)) else LACKS


def structure_rows(per_seed: Mapping[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per scored table (learned, and the Fourier table), from {seed: geometry_scores
    rows} of the seeds that scored it: its mean partial score, the mean of its best content-only
    control, the seeds and F7's decision (`decide`)."""
    seeds = sorted(per_seed)
    names = [r["table"] for r in per_seed[seeds[0]] if r["kind"] != CONTENT] if seeds else []
    out = []
    for name in names:
        have = [s for s in seeds if any(r["table"] == name for r in per_seed[s])]
        scores = [next(r["score"] for r in per_seed[s] if r["table"] == name) for s in have]
        controls = [controls_of(per_seed[s], name) for s in have]
        by_control = {c: [per[c] for per in controls] for c in controls[0]}
        best = [max(per.values()) for per in controls]
        out.append({"table": name, "seeds": len(have), "partial_score": sum(scores) / len(scores),
                    "best_control": sum(best) / len(best), "holds_geometry": decide(scores, by_control)})
    return out


def sentence(what: str, row: Mapping[str, Any]) -> str:
    """One line on one table's `structure_rows`-shaped row: its score, its best control's and
    F7's decision."""
    said = {HOLDS: "holds grid geometry beyond content", LACKS: "does not beat content alone by more than the "
            "seeds' spread allows", UNDECIDED: "cannot be decided from one seed (no spread to set the margin)"}
    seeds = int(row["seeds"])
    return (f"{what}: partial score {row['partial_score']:+.3f} against {row['best_control']:+.3f} for the best "
            f"content-only control ({seeds} seed{'s' if seeds != 1 else ''}): {said[row['holds_geometry']]}.")


def shown(rows: list[dict[str, Any]] | pd.DataFrame) -> str:
    """Markdown: `structure_rows`-shaped rows (any leading columns kept), scores signed to three
    places, columns headed as HEADINGS says."""
    frame = pd.DataFrame(rows).copy()
    for column in ("partial_score", "best_control"):
        frame[column] = frame[column].map(lambda v: f"{v:+.3f}")
    return markdown(frame.rename(columns=HEADINGS))
