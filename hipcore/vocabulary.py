"""The verdict vocabulary: every word a results table can say, as `hipcore.report`'s rules say
it, with its definition; the README's verdict block is written from here.

    VERDICTS, REGIMES       each verdict (regime): a case that makes report's rules say it, and what it means
    vocabulary_block()      the README's block: the verdicts as the rules word them, then the columns
    defined(verdict)        whether a verdict written in a table is one of VERDICTS (numbers aside)
    defined_regime(regime)  the same for a *regime* cell and REGIMES

Each word shown is produced by calling the report's rule on its case, never typed, so a word the
rules stop saying fails here, and `defined` lets a test find a table word with no definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from . import report

PAPER = 1.0                             # the paper's effect in the cases below (top-1 points)


@dataclass(frozen=True)
class Verdict:
    says: Callable[[], str]             # report's rule on a case that gives this verdict
    means: str


def _directional(values: list[float], paper: float | None = PAPER) -> Callable[[], str]:
    return lambda: report.directional_verdict("higher", values, paper=paper)


def _same(values: list[float]) -> Callable[[], str]:
    return lambda: report.equivalence_verdict(values, report.MARGINS["top-1 %"])


def _finding(effects: list[float], replicate: str = "repeat", converged: str = "", epochs: str = "") -> report.Finding:
    """report.finding on a control with no paper key, over seeds or timing repeats."""
    rows = [{"finding": "control", "claim": "higher", "paper_key": "", "metric": "top-1 %", "seed": i,
             "baseline": 0.0, "treatment": e, "kind": "effect", "margin": "", "replicate": replicate,
             "converged": converged, "epochs": epochs, "test_size": ""} for i, e in enumerate(effects)]
    return report.finding("control", rows, {})


def _own_control(effects: list[float]) -> str:
    """report.finding's verdict on a control with no paper key (timing repeats: no plateau needed)."""
    return _finding(effects).verdict


def _regime(replicate: str, converged: str, epochs: str = "") -> Callable[[], str]:
    return lambda: report.regime(_finding([0.9, 1.0, 1.1], replicate, converged, epochs))


def _not_after_holm() -> str:
    """report.adjust on a table of two rows each significant alone (p 0.044 and 0.039), neither
    after Holm's adjustment (0.078)."""
    return report.adjust([_finding([3.0, 4.5, 6.5]), _finding([0.9, 1.2, 1.8])])[0].verdict


def _unconverged(epochs: str) -> Callable[[], str]:
    return lambda: report.converged_verdict("reproduced", "no", epochs)


LOW, HIGH = report.SIZE_RANGE
VERDICTS = (
    Verdict(_directional([0.9, 1.0, 1.1]),
            f"a directional claim: the paper's sign, the {report.LEVEL:.0%} t interval over seeds (or timing "
            f"repeats) excludes 0, and the size fits the paper's: the interval contains the paper's value or ours "
            f"over the paper's is within {LOW:g}-{HIGH:g}x (a band fixed in advance). A no-effect claim: the "
            f"{1 - 2 * report.ALPHA_SAME:.0%} interval lies inside the margin (`report.MARGINS`: "
            + ", ".join(f"{m:g} in {unit}" for unit, m in report.MARGINS.items()) + ")."),
    Verdict(_directional([2.9, 3.0, 3.1]),
            "significant in the paper's direction, but the size is outside the band and the interval excludes the "
            "paper's value: Rx is ours over the paper's."),
    Verdict(lambda: _own_control([0.9, 1.0, 1.1]),
            "our own control, not in the paper: significant in the direction we expected; nothing to reproduce."),
    Verdict(_not_after_holm,
            "significant in the paper's direction on its own, but not after Holm's adjustment across the table's "
            "directional rows (the adjusted p against 0.05): never *reproduced*."),
    Verdict(_directional([0.1, 1.0, 1.9]), "the paper's sign, but the interval includes 0."),
    Verdict(_directional([-1.1, -1.0, -0.9]), "the other sign, and the interval excludes 0."),
    Verdict(_directional([-1.9, -1.0, -0.1]), "the other sign, the interval includes 0."),
    Verdict(_directional([1.0]), "fewer than 2 seeds or repeats (or a non-finite value): no interval, no rule."),
    Verdict(_same([1.4, 1.5, 1.6]),
            "a no-effect claim whose whole interval lies beyond the margin: there is an effect."),
    Verdict(_same([0.8, 0.9, 1.0]),
            "a no-effect claim whose interval reaches outside the margin, however near 0 its mean."),
    Verdict(_same([-0.4, 0.5, 1.4]),
            "the same, where the interval is wider than the margin itself: these seeds cannot show no effect."),
    Verdict(_unconverged("8/2"),
            "a row over seeds whose arms are not all recorded at their validation plateau (the epochs each stage "
            "trained) is never *reproduced*: the rule's word follows the colon, and a pass reads as here."),
    Verdict(lambda: report.converged_verdict("same direction, not significant", ""),
            "the same, for rows that record no plateau at all."),
    Verdict(lambda: report.only_one_trains_verdict(["HiP-16", "HiP-256"], [], "HiP-256", 2),
            "F5's memory half (only HiP-256 trains at 2048 x 2048): other models trained too, at this batch and in "
            "this machine's memory (the row names them)."),
    Verdict(lambda: report.only_one_trains_verdict(["HiP-256"], ["Perceiver IO"], "HiP-256", 2),
            "F5's memory half: a model was too slow or skipped, so whether it fits is not known."),
)
REGIMES = (
    Verdict(_regime("seed", "yes", "20/40"), "every arm of the row reached its validation plateau (the epochs each "
                                             "stage trained); a notebook's reference baselines may follow."),
    Verdict(_regime("seed", "no", "8/2"), "some arm stopped before its plateau: early training."),
    Verdict(_regime("seed", ""), "the rows record no plateau: counted as not converged."),
    Verdict(_regime("repeat", ""), "timing repeats (F5): no trained model to converge."),
    Verdict(_regime("seed", "n/a"), "the same recipe computed two ways (e.g. bf16 against fp32): no pair of "
                                     "arms to converge."),
)
COLUMNS = {
    "ours / paper": "our effect over the paper's (a ratio's: our speed-up over the paper's).",
    "power": "how often the same rule, with as many seeds and our seed-to-seed spread, would say *reproduced* if "
             "the true effect were the paper's.",
    "Holm p": f"each directional row's p value adjusted with Holm's step-down method across the table's "
              f"directional rows, against {report.HOLM_ALPHA:g}; a row above it is never *reproduced*.",
}
CONVERGED_PREFIX = re.compile(r"^not converged (at \S+ epochs|\(no plateau recorded\)): ")
NUMBER = re.compile(r"\d+(\.\d+)?(/\d+)*")            # 5.4, or epochs per stage: 8/2/2


def _shape(text: str) -> str:
    """A verdict with its numbers as N, so that '5.4x' and '3.3x' are the same word."""
    return NUMBER.sub("N", text.strip())


def defined(verdict: str, words: tuple[Verdict, ...] = VERDICTS) -> bool:
    """Whether `verdict` (as a table writes it) is one of `words` (VERDICTS, or REGIMES), numbers
    aside; a not-converged row's prefix is defined and the rule's word after it must be too."""
    shapes = {_shape(v.says()) for v in words}
    if _shape(verdict) in shapes:
        return True
    stripped = CONVERGED_PREFIX.sub("", verdict)
    return stripped != verdict and (_shape(stripped) in shapes or defined(stripped, words))


def defined_regime(regime: str) -> bool:
    """Whether a *regime* cell is one of REGIMES, the baselines a table adds after it aside."""
    return defined(regime.split("; baselines ")[0], REGIMES)


def vocabulary_block() -> str:
    """The README's verdict block: each verdict as the rules word it, then the table's columns."""
    lines = ["Each verdict below is what `hipcore/report.py`'s rules say in one case (numbers vary with the "
             "case); no table says a word that is not here (`tests/test_readme.py`):", ""]
    lines += [f"- *{v.says()}*: {v.means}" for v in VERDICTS]
    lines += ["", "The *regime* column, as `report.regime` words it:", ""]
    lines += [f"- *{v.says()}*: {v.means}" for v in REGIMES]
    lines += ["", "The tables' other columns:", ""]
    lines += [f"- *{name}*: {means}" for name, means in COLUMNS.items()]
    return "\n".join(lines)
