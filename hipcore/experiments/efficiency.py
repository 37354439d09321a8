"""05_efficiency: the notebook's calls over `hipcore.bench`: a training step of HiP and
Perceiver models timed against image size, the training loop's rates, and finding F5, read
from the committed results or measured here on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..bench import loops, suite
from ..bench import results as timings

NOTEBOOK = "05_efficiency"     # notebooks/<NOTEBOOK>.ipynb, its results in results/<NOTEBOOK>/<profile>/

# (finding, claim, paper key, baseline model, treatment model): steps/s of each, paired by repeat.
FINDINGS = (
    ("F5 HiP-16 trains faster than Perceiver IO", "higher", "effect.F5_speedup_hip16_vs_perceiver_io_224",
     "perceiver_io", "hip16"),
)


@dataclass
class Measured:
    """What the notebook's tables and figure are drawn from."""

    run: timings.Results                  # step timings per model and side
    loop_rows: list[dict[str, Any]]       # training-loop rates per precision ([]: not measured)


def results(S, settings: Mapping[str, Any], checkpoint: bool = False) -> Measured:
    """The timings: read from the committed results (S.reading, a notebook.Setup), else
    measured here and written (the speed table, the loop rates, F5's pairs in comparisons.csv).
    `checkpoint`: time steps with activation checkpointing as well."""
    if S.reading:
        return Measured(timings.read(S.out), timings.read_loops(S.out) if (S.out / "loops.csv").is_file() else [])
    run = suite.run(settings, options={"checkpoint": True} if checkpoint else None)
    timings.write(run, S.out)
    loop_rows = []
    if settings["loop_images"]:
        loop_rows = loops.loop_rates(limit_train=settings["loop_images"], threads=suite.threads_of(settings),
                                     precisions=suite.native_precisions(), batch=settings["loop_batch"])
        timings.write_loops(loop_rows, S.out)
    for finding in FINDINGS:
        timings.record_comparisons(run, S.out / "comparisons.csv", finding)
    return Measured(run, loop_rows)
