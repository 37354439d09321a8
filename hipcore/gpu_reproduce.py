"""The verdict pairs of notebooks 01 and 03 at a profile, trained to their plateau in stretches
of a time budget: the one prepared command of a GPU session.

    HIPCORE_COMMIT=... HIPCORE_CODE_FINGERPRINT=... \\
    python -m hipcore reproduce-gpu --profile full --device cuda --out DIR --budget-seconds 540

Arms (image_arms): HiP with MAE-learned positions, HiP with classification-learned positions
(F1) and the flat Perceiver IO with Fourier features (HiP against Perceiver IO), `seeds` each.
Every (arm, seed) is one job: its MAE pretraining (if any), then its classification, trained by
`common.run_arm` into DIR/runs, the run cache: a finished run is reused, an unfinished one
resumes exactly from its last checkpoint (saved every `checkpoint_every` steps as well as at
epoch ends). Jobs run in child processes, `parallel` at a time on the one device, so a GPU is
kept busy by several small models at once.

Before the budget runs out the command stops every child (a stopped child loses at most the
steps since its last checkpoint) and says what is left; run it again with the same DIR to go
on. When every job is done it writes DIR/results/<notebook>/<profile>/: comparisons.csv (with
each pair's convergence), arms.csv and provenance.json, whose commit is verified only when the
code that ran is that commit's (`hipcore.provenance.code_identity`). What DIR must carry
between machines is DIR/runs (checkpoints of small models, a few MB each) and DIR/rows.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from . import provenance, results
from .device import pick_device
from .errors import HipcoreError
from .experiments import common, image_arms
from .experiments import imagenet_comparison as ic
from .experiments import mae_positions as mp
from .processes import die_with_parent
from .train.config import DEVICE_NAME, MAX_SEED

ARMS = {"hip_mae": image_arms.HIP_MAE, "hip_classification": image_arms.HIP_CLASSIFICATION,
        "perceiver_fourier": image_arms.perceiver_arms("perceiver_small")[0]}
NOTEBOOKS = {"01_imagenet_comparison": ic.FINDINGS, "03_mae_positional_embeddings": mp.FINDINGS}
# Each stage trains to its validation plateau (hipcore.train.plateau) within the profile's epochs.
PLATEAU = {"val_fraction": 0.1, "plateau": True}
MIN_EPOCHS = 4
BASE_BATCH = 128               # the batch every profile's learning rates were set for
STOP_MARGIN_S = 20.0            # stop the children this long before the budget ends
POLL_S = 0.5


class JobsFailedError(HipcoreError):
    """A job's child process ended without its row; the others' progress is kept."""


@dataclass(frozen=True)
class Job:
    arm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.arm}-seed{self.seed}"


def large_batch(row: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """The large-batch recipe: batch `batch` with the learning rates scaled by sqrt(batch / 128)
    (AdamW keeps its update size under square-root scaling; linear scaling overshoots it), and
    the warm-up kept in epochs, so it sees the same images in fewer, larger steps. To be checked
    against batch 128 at one seed before its verdicts are used (tools/gpu_session.sh does)."""
    if batch == row.get("batch_size", BASE_BATCH):
        return dict(row)
    scale = (batch / row.get("batch_size", BASE_BATCH)) ** 0.5
    return {**row, "batch_size": batch, "lr": row["lr"] * scale,
            "pretrain_lr": row.get("pretrain_lr", row["lr"]) * scale}


def settings_for(profile: str, device: str, checkpoint_every: int, batch: int = BASE_BATCH) -> dict[str, Any]:
    """The profile's image settings at `batch` (`large_batch`) with the plateau rule on, on `device`."""
    if profile not in common.IMAGE_TABLE:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(common.IMAGE_TABLE)}")
    row = large_batch(common.IMAGE_TABLE[profile], batch)
    wait = min(MIN_EPOCHS, row["epochs"], row["pretrain_epochs"])    # the rule's wait fits the caps
    return {**row, **PLATEAU, "min_epochs": wait, "device": device, "checkpoint_every": checkpoint_every}


def _whole(value: Any, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < MAX_SEED


def check_options(*, budget_seconds: Any, device: Any, seeds: Any, parallel: Any, checkpoint_every: Any,
                  batch: Any) -> None:
    """ValueError naming the option, before any job starts: a finite budget above the stop
    margin, a device this machine has, seeds that fit in 64 bits (each once), positive counts."""
    ok = (isinstance(budget_seconds, (int, float)) and not isinstance(budget_seconds, bool)
          and math.isfinite(budget_seconds) and budget_seconds > STOP_MARGIN_S)
    if not ok:
        raise ValueError(f"--budget-seconds must be a finite number of seconds above the {STOP_MARGIN_S:.0f} s "
                         f"the command keeps to stop, got {budget_seconds!r}")
    for name, value in (("--parallel", parallel), ("--checkpoint-every", checkpoint_every), ("--batch", batch)):
        if not _whole(value):
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    if seeds is not None:
        bad = [s for s in seeds if not _whole(s, 0)]
        if bad or not seeds or len(set(seeds)) < len(seeds):
            raise ValueError(f"--seeds must be whole numbers in [0, 2**63), each once, got {list(seeds)!r}")
    if not (isinstance(device, str) and DEVICE_NAME.fullmatch(device)) or device == "auto":
        raise ValueError(f"--device must be cpu, cuda or cuda:<index>, got {device!r}")
    pick_device(device)                               # a device this machine does not have: one line now


def read_row(path: Path, job: Job) -> dict[str, Any]:
    """A finished job's row (rows/<job>.json), checked: a JSON object of that arm and seed
    carrying the arm's settings and its test accuracy; a ValueError naming the file otherwise."""
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable row ({error}); remove it to train {job.name} again") from None
    needs = ("arm", "seed", "test_accuracy", *common.ARM_SETTINGS)
    if not isinstance(row, dict) or any(k not in row for k in needs):
        missing = needs if not isinstance(row, dict) else [k for k in needs if k not in row]
        raise ValueError(f"{path}: a row lacks {', '.join(missing)}; remove it to train {job.name} again")
    if row["arm"] != ARMS[job.arm].label or row["seed"] != job.seed:
        raise ValueError(f"{path}: holds arm {row['arm']!r} seed {row['seed']!r}, not {job.name}")
    results.check_run(path, None, row)                 # finite numbers within their range
    return row


def _run_job(job: Job, settings: dict[str, Any], runs_dir: str, rows_dir: str, parent: int | None = None) -> None:
    """One job in a child process: train (or resume, or reuse) it, then write its row. It dies
    with the command that started it (`parent`), so an orphan never keeps training or its lock."""
    if parent is not None:
        die_with_parent(parent)
    row = common.run_arm(ARMS[job.arm], job.seed, settings, dataset="fashion_mnist", runs_dir=Path(runs_dir))
    path = Path(rows_dir) / f"{job.name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row, default=str))
    tmp.replace(path)                                  # a row exists only for a finished job


def run(profile: str, *, out: str | Path, budget_seconds: float, device: str = "cuda",
        seeds: tuple[int, ...] | None = None, parallel: int = 2, checkpoint_every: int = 200,
        batch: int = BASE_BATCH, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train what is left of the jobs within the budget; write the results once all are done.
    Returns {'done': [job names], 'left': [job names], 'written': [paths]}."""
    started = time.monotonic()
    check_options(budget_seconds=budget_seconds, device=device, seeds=seeds, parallel=parallel,
                  checkpoint_every=checkpoint_every, batch=batch)
    out = Path(out)
    settings = settings_for(profile, device, checkpoint_every, batch)
    seeds = tuple(settings["seeds"] if seeds is None else seeds)
    provenance.check_environment()                   # a named commit is refused now, not after training
    runs_dir, rows_dir = out / "runs", out / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    jobs = [Job(arm, seed) for seed in seeds for arm in ARMS]
    todo = [job for job in jobs if not (rows_dir / f"{job.name}.json").exists()]
    log(f"{len(jobs) - len(todo)} of {len(jobs)} jobs done before this stretch; budget {budget_seconds:.0f} s")
    context = multiprocessing.get_context("spawn")
    running: dict[str, multiprocessing.Process] = {}
    failed = []
    while todo or running:
        left = budget_seconds - (time.monotonic() - started)
        if left <= STOP_MARGIN_S:
            break
        while todo and len(running) < parallel:
            job = todo.pop(0)
            process = context.Process(target=_run_job, name=job.name,
                                      args=(job, settings, str(runs_dir), str(rows_dir), os.getpid()))
            process.start()
            running[job.name] = process
            log(f"started {job.name}")
        time.sleep(POLL_S)
        for name, process in list(running.items()):
            if not process.is_alive():
                process.join()
                del running[name]
                if process.exitcode == 0 and (rows_dir / f"{name}.json").exists():
                    log(f"finished {name}")
                else:
                    failed.append(name)
                    log(f"{name} failed (exit {process.exitcode})")
    for name, process in running.items():                  # the budget is running out
        process.kill()
        process.join()
        log(f"stopped {name}: it resumes from its last checkpoint next time")
    if failed:
        raise JobsFailedError(f"jobs failed: {', '.join(failed)} (their output is above); run again with the "
                              "same --out to retry them")
    done = sorted(p.stem for p in rows_dir.glob("*.json"))
    left = [job.name for job in jobs if job.name not in done]
    written = [] if left else write_results(out, profile, settings, seeds, rows_dir)
    log(f"{len(done)} of {len(jobs)} jobs done" + (f"; left: {', '.join(left)}" if left else "; results written"))
    return {"done": done, "left": left, "written": written}


def write_results(out: Path, profile: str, settings: Mapping[str, Any], seeds: tuple[int, ...],
                  rows_dir: Path) -> list[Path]:
    """DIR/results/<notebook>/<profile>/: comparisons.csv, arms.csv, provenance.json."""
    rows = [read_row(rows_dir / f"{Job(arm, seed).name}.json", Job(arm, seed)) for seed in seeds for arm in ARMS]
    written = []
    for notebook, findings in NOTEBOOKS.items():
        folder = out / "results" / notebook / profile
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "comparisons.csv").unlink(missing_ok=True)
        image_arms.record_findings(folder / "comparisons.csv", rows, findings)
        common.write_arms(folder / "arms.csv", rows)
        written += [folder / "comparisons.csv", folder / "arms.csv",
                    provenance.write(folder, settings, profile=profile, seeds=list(seeds),
                                     command=provenance.command("reproduce-gpu", profile=profile,
                                                                device=settings["device"],
                                                                batch=settings["batch_size"]))]
    return written


def cmd_reproduce_gpu(args) -> int:
    """Trains HiP + MAE, HiP with classification-learned positions and Perceiver IO (Fourier) for
    each seed, each stage to its validation plateau, several at a time, into OUT/runs; stops
    before --budget-seconds (exit 3) and goes on from OUT when run again; once all are done
    writes OUT/results/<notebook>/<profile>/ with provenance. Set the variables `python -m
    hipcore provenance-env` prints first, so the results name a verified commit."""
    outcome = run(args.profile, out=args.out, budget_seconds=args.budget_seconds, device=args.device,
                  seeds=None if args.seeds is None else tuple(args.seeds), parallel=args.parallel,
                  checkpoint_every=args.checkpoint_every, batch=args.batch)
    return 0 if not outcome["left"] else 3


def add_commands(sub) -> None:
    """`reproduce-gpu` on an argparse subparsers object."""
    from .argtypes import non_negative_int, positive_int

    gpu = sub.add_parser("reproduce-gpu", help="notebooks 01 and 03's verdict pairs, to their plateau, in time-boxed "
                                               "stretches (a GPU session's one command)",
                         description=cmd_reproduce_gpu.__doc__)
    gpu.add_argument("--profile", default="full", choices=("smoke", "binder", "quick", "full", "paper"),
                     help="the image notebooks' settings (default full)")
    gpu.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    gpu.add_argument("--out", required=True, help="the folder of runs and results; run again with it to go on")
    gpu.add_argument("--budget-seconds", type=float, required=True, help="stop before this much wall time")
    gpu.add_argument("--seeds", nargs="+", type=non_negative_int, default=None, help="default: the profile's")
    gpu.add_argument("--parallel", type=positive_int, default=2, help="jobs training at once (default 2)")
    gpu.add_argument("--batch", type=positive_int, default=128,
                     help="batch size; above 128 the large-batch recipe scales the learning rates by "
                          "sqrt(batch / 128) (hipcore.gpu_reproduce.large_batch)")
    gpu.add_argument("--checkpoint-every", type=positive_int, default=200,
                     help="steps between checkpoints inside an epoch: the most a stop can lose (default 200)")
    gpu.set_defaults(func=cmd_reproduce_gpu)
