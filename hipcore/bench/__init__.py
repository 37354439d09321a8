"""Training speed and memory of HiP against flat Perceivers, as the input grows (the paper's F5).

    from hipcore.bench import PROFILES, results, suite
    run = suite.run(PROFILES["quick"])          # ~15 minutes on 2 cores
    results.save(run, "results/05_efficiency/quick")

`models` names the benchmarked models, `timing` times a training step in a fresh process,
`suite` runs every model at every side, `results` writes the CSVs, figure and targets.
"""

from .models import MODEL_NAMES, MODELS, count_flops, make_model
from .suite import PROFILES, Results, check_settings, run

__all__ = ["MODELS", "MODEL_NAMES", "PROFILES", "Results", "check_settings", "count_flops",
           "make_model", "run"]
