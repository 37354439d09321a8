"""The converged queue: every (notebook, arm, seed) of the `converged` profile trained until
the plateau rule stops it, as small jobs that outlast a sitting and a machine.

    python -m hipcore converge --list                        # every job, its state and minutes here
    python -m hipcore converge --budget-minutes 150          # run what is left within the time box
    python -m hipcore converge --budget-minutes 150 --commit # ... and commit each job file as it lands

A job is one (notebook, arm, seed): the arm's MAE pretraining (when it has one), then its
classification, trained by `common.run_arm` into the run cache (runs/), where a killed run
resumes from its last checkpoint. A finished job writes one small file,
results/<notebook>/converged/jobs/<arm>-seed<seed>.json (`JobRecord`): the run's row (test
metrics at the checkpoint chosen on validation), each stage's per-epoch curve, epochs and
stop reason, precision, wall time, the CPU and its flags, the commit and the training-code
fingerprint, and the digest of each training-code file the job imported. A job file is *current*
when those files and its run ids are what this checkout would train; otherwise it is *stale*
and runs again. A file that is truncated, names another
job, or was made by uncommitted code is refused with one line and listed to run again.

A job's runs carry the precision they trained in (bf16 on a CPU with avx512_bf16 or AMX, fp32
elsewhere), and a pair never mixes precisions: a finished job stays current on a machine that
trains another precision (its run ids are checked in its own), and the jobs left of its seed on
its dataset wait for a machine of that precision, while seeds no job has started run anywhere.

A FLOP-matched control waits for the job it matches (the same seed) and trains the steps
whose FLOPs equal that job's recorded FLOPs. The queue runs one job per core at once, each in a
process of its own with one thread (JOB_THREADS), never two jobs that share a run (an MAE
pretraining); each job is locked (`fcntl`) for as long as it runs, so two queues in one
checkout never train it twice.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import pickle
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .errors import HipcoreError
from .files import write_text_atomic
from .locations import results_dir, runs_dir

PROFILE = "converged"
LOCKS = "converge-locks"          # runs/converge-locks/: each job's lock and the spec its child reads
JOBS = "jobs.json"               # results/<notebook>/converged/jobs.json: every job's state (write_notebook)
FORMAT = 2
STOP_MARGIN_S = 30.0           # the time box stops a running job this long before it ends
POLL_S = 1.0
# Seconds per epoch before this machine has finished a job of its own on the dataset: images
# from results/plateau_check (small3, bf16, 5,400 training images, a 2-core Xeon with AMX);
# clouds from quick's 04 (1,800 clouds of 1,024 points, about 4 s an epoch, the same Xeon).
# Epochs expected before the rule stops a stage: plateau_check's 16-28 classification epochs;
# MAE ran to its cap there (None: the stage's cap).
# Collages' segmentation: an epoch of notebook 07's slowest arm (the flat Perceiver) on 1,000
# canvases of 64 x 64 with 200 validation canvases took 22 s at one thread (bf16, a 2-core AMD
# EPYC; small3: 14-18 s), written here at PRIOR_THREADS as the priors are scaled (22 x 1 / 2); the
# converged profile's 6,000 validation canvases add an evaluation this leaves out.
PRIOR_EPOCH_SECONDS = {("fashion_mnist", "pretrain"): 21.0, ("fashion_mnist", "supervised"): 11.0,
                       ("parts3d", "pretrain"): 5.0, ("parts3d", "supervised"): 4.0,
                       ("collages", "segment"): 11.0}
PRIOR_EPOCHS = {"pretrain": None, "supervised": 25, "segment": 25}
PRIOR_THREADS = 2              # the threads of those priors' runs: a job of fewer takes longer
# Reference baselines (experiments.baselines, tuned on validation) per notebook and seed of the
# controls' seeds, on the split of the notebook's first arm: a job of their own ('references').
REFERENCES, REFERENCES_KEY = "reference baselines", "references"
PRIOR_REFERENCE_MINUTES = {"images": 10.0, "points": 3.0, "dense": 5.0}
POINT_DATASETS = ("parts3d", "shapes3d", "modelnet40", "fashion_mnist_points")
DENSE_DATASETS = ("collages",)           # a label per pixel: the small U-Net ('dense' baselines)
REFERENCE_CODE = ("hipcore/experiments/baselines.py",)   # what a references job's results also depend on
REFERENCES_PRECISION = "fp32"            # the baselines' precision on every machine
# Threads per job: on 2 cores two jobs of one thread each finish a queue sooner than one job of
# two threads (results/05_efficiency/epochs/<cpu>/queue.csv, python -m hipcore bench-epochs).
JOB_THREADS = 1


class JobFileError(HipcoreError):
    """A job file that cannot be used: truncated, for another job, or made by uncommitted code."""


@dataclass(frozen=True)
class Job:
    """One (notebook, arm, seed) of the queue."""

    notebook: str                  # the notebook's results folder, e.g. '01_imagenet_comparison'
    key: str                       # the arm's key in its notebook module, e.g. 'hip_mae'
    seed: int
    matches: str | None = None     # a FLOP-matched control: the key of the arm it matches

    @property
    def name(self) -> str:
        return f"{self.key}-seed{self.seed}"

    @property
    def title(self) -> str:
        return f"{self.notebook[:2]} {self.name}"

    def path(self, root: Path) -> Path:
        return root / self.notebook / PROFILE / "jobs" / f"{self.name}.json"


@dataclass
class JobRecord:
    """What a finished job leaves in its file."""

    job: dict[str, Any]            # asdict(Job)
    row: dict[str, Any]            # common.run_arm's row: test metrics at the selected checkpoint
    stages: list[dict[str, Any]]   # per stage: name, run_id, epochs, stop, per-epoch curve
    run_ids: list[str]             # the runs behind it (MAE pretraining first): what makes it current
    code_fingerprint: str          # the training code's (provenance.code_fingerprint), for the record
    code_files: dict[str, str]     # the training code the job imported: {path: digest}; what makes it current
    commit: str | None
    precision: str
    wall_seconds: float
    machine: dict[str, Any]        # device.machine(): CPU name and flags, cores, torch
    flops: float | None = None     # training FLOPs used (MAE pretraining included), when recorded
    format: int = FORMAT
    finished: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


REQUIRED = ("job", "row", "stages", "run_ids", "code_fingerprint", "code_files", "commit", "precision", "wall_seconds",
            "machine", "format")


def read_record(path: Path, job: Job) -> JobRecord:
    """The record in `path`, which must be job's; JobFileError (one line naming the file) for a
    truncated or malformed file, one naming another job, or one made by uncommitted code."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise JobFileError(f"{path}: not a complete job file ({type(error).__name__}); it runs again") from None
    if isinstance(data, dict) and "format" in data and data["format"] != FORMAT:
        raise JobFileError(f"{path}: job file format {data['format']!r}, this code reads {FORMAT}; it runs again")
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED):
        missing = [k for k in REQUIRED if not isinstance(data, dict) or k not in data]
        raise JobFileError(f"{path}: a job file lacks {', '.join(missing)}; it runs again")
    if data["job"] != asdict(job):
        raise JobFileError(f"{path}: holds job {data['job']}, not {asdict(job)} (a copied or duplicated "
                           f"file); it runs again")
    if not data["commit"]:
        raise JobFileError(f"{path}: made by code no commit holds (a dirty tree); it runs again")
    known = {k: data[k] for k in JobRecord.__dataclass_fields__ if k in data}
    return JobRecord(**known)


def write_record(record: JobRecord, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(asdict(record), indent=1, default=str) + "\n")
    return path


# ---- the plan: which jobs, with which settings ----


@dataclass(frozen=True)
class Planned:
    """A job with what trains it: run(settings, matched_steps) -> run_arm's row, and the
    TrainConfigs of its stages (None for a control whose steps wait on another job)."""

    job: Job
    settings: Mapping[str, Any]
    arm: Any                                      # common.Arm (a control: its steps not yet set)
    dataset: str = "fashion_mnist"
    data_options: Mapping[str, Any] = field(default_factory=dict)
    family: str | None = None                     # a references job: the baselines' family ('images', 'points',
                                                  # 'dense')

    @property
    def label(self) -> str:
        return REFERENCES if self.family else self.arm.label


def notebook_plan(notebook: str, module, profile: str = PROFILE, dataset: str = "fashion_mnist",
                  data_options: Mapping[str, Any] | None = None) -> list[Planned]:
    """Every (arm, seed) a notebook trains at `profile` (`module.queue_arms`): paper arms over
    the profile's seeds, controls (arms that match another's FLOPs, or the module's OTHER_ARMS)
    over the first `other_seeds` of them."""
    settings = module.TABLE[profile]
    seeds = tuple(settings["seeds"])
    other = seeds[:settings.get("other_seeds", len(seeds))]
    arms = module.queue_arms(settings)             # {key: (Arm, key it FLOP-matches or None)}
    out = []
    for key, (arm, matches) in arms.items():
        control = matches is not None or key in getattr(module, "OTHER_ARMS", ())
        for seed in other if control else seeds:
            out.append(Planned(Job(notebook, key, seed, matches), settings, arm, dataset, dict(data_options or {})))
    base = next(iter(arms.values()))[0]            # the references train on the first arm's split
    family = "points" if dataset in POINT_DATASETS else "dense" if dataset in DENSE_DATASETS else "images"
    out += [Planned(Job(notebook, REFERENCES_KEY, seed), settings, base, dataset, dict(data_options or {}), family)
            for seed in other]
    return out


def plan(profile: str = PROFILE) -> list[Planned]:
    """Every job of the queue, notebook by notebook."""
    from .experiments import flattening, imagenet_comparison, mae_positions, point_clouds, segmentation

    clouds = point_clouds.data_options("parts3d", point_clouds.TABLE[profile])
    canvases = segmentation.data_options(segmentation.TABLE[profile])
    return (notebook_plan("01_imagenet_comparison", imagenet_comparison, profile)
            + notebook_plan("03_mae_positional_embeddings", mae_positions, profile)
            + notebook_plan("02_flattening_ablation", flattening, profile)
            + notebook_plan("04_point_clouds", point_clouds, profile, "parts3d", clouds)
            + notebook_plan(segmentation.NOTEBOOK, segmentation, profile, segmentation.DATASET, canvases))


# ---- states ----


def configs(planned: Planned, steps: int | None = None, runs: Path | None = None, precision: str | None = None):
    """(pretraining or None, supervised) TrainConfigs of a job (a control with `steps`), in
    `precision` (None: the one this machine trains, `common.precision_here`)."""
    from .experiments.common import train_configs

    arm = planned.arm if steps is None else planned.arm.replace(steps=steps)
    return train_configs(arm, planned.job.seed, planned.settings, dataset=planned.dataset,
                         data_options=planned.data_options, runs_dir=runs, precision=precision)


def run_ids(planned: Planned, steps: int | None = None, precision: str | None = None) -> list[str]:
    """The runs behind a job, trained in `precision` (None: this machine's); a references job's
    one 'run' is its baselines on the first arm's split (the split is all the supervised run id
    and the family add; the baselines train in fp32 on every machine, so the id is fp32's)."""
    pre, sup = configs(planned, steps, precision=REFERENCES_PRECISION if planned.family else precision)
    if planned.family:
        return [f"references-{planned.family}-{sup.run_id}"]
    return [c.run_id for c in (pre, sup) if c is not None]


@dataclass
class State:
    planned: Planned
    state: str                     # 'done', 'stale', 'refused', 'waiting', 'to run'
    why: str = ""
    record: JobRecord | None = None
    minutes: float = 0.0           # estimated minutes here, when it still has to run
    twin_of: State | None = None   # another notebook's job that trains the same runs (its minutes, not ours)

    @property
    def train_minutes(self) -> float:
        """Minutes this job keeps a worker when started here: a twin's are its first's, though
        it adds none to a total (the first's are counted once)."""
        return self.minutes if self.twin_of is None else self.twin_of.minutes


def matched_steps(planned: Planned, matched: JobRecord) -> int:
    """Supervised steps of a control whose FLOPs equal the matched job's recorded FLOPs."""
    if not matched.flops:
        raise JobFileError(f"{planned.job.title} matches {matched.job['key']}-seed{matched.job['seed']}, whose "
                           f"job file records no FLOPs; rerun that job")
    from .experiments.common import sized_from_record

    sized = sized_from_record(planned.arm, planned.job.seed, planned.settings, {**matched.row, "flops": matched.flops},
                              dataset=planned.dataset, data_options=planned.data_options)
    return sized.steps


def states(jobs: list[Planned], root: Path) -> list[State]:
    """Each job's state: its file read and checked against what this checkout would train, in
    the precision the record says its runs trained in. A job left to train whose seed's other
    runs on its dataset trained in another precision than this machine's waits for a machine
    that trains in theirs (`seed_precisions`): a pair never mixes precisions."""
    from .experiments import common

    records: dict[tuple[str, str, int], JobRecord] = {}
    out = []
    for p in sorted(jobs, key=lambda p: p.job.matches is not None):       # matched jobs first
        out.append(_state(p, root, records))
    pinned, here = seed_precisions(out), None
    for s in out:
        pin = pinned.get((s.planned.dataset, s.planned.job.seed))
        if s.state == "done" or s.planned.family or not pin:
            continue
        here = here or common.precision_here()
        if here not in pin:
            reason = (f"for a machine that trains {' or '.join(sorted(pin))}: seed {s.planned.job.seed}'s runs on "
                      f"{s.planned.dataset} trained in it, this one trains {here}")
            s.state, s.why = "waiting", reason + (f"; {s.why}" if s.why else "")
    order = {p.job: i for i, p in enumerate(jobs)}
    return sorted(out, key=lambda s: order[s.planned.job])


def seed_precisions(found: list[State]) -> dict[tuple[str, int], set[str]]:
    """{(dataset, seed): the precisions its finished jobs trained in}, the reference baselines
    (fp32 on every machine) left out. Notebooks that share runs (01, 02, 03) share a dataset, so
    a seed's pairs across them stay in one precision."""
    pinned: dict[tuple[str, int], set[str]] = {}
    for s in found:
        if s.state == "done" and not s.planned.family:
            pinned.setdefault((s.planned.dataset, s.planned.job.seed), set()).add(s.record.precision)
    return pinned


def _state(p: Planned, root: Path, records: dict) -> State:
    job, path = p.job, p.job.path(root)
    steps = None
    if job.matches is not None:
        matched = records.get((job.notebook, job.matches, job.seed))
        if matched is None:
            return State(p, "waiting", f"for {job.matches}-seed{job.seed}")
        steps = matched_steps(p, matched)
    if not path.exists():
        return State(p, "to run")
    try:
        record = read_record(path, job)
    except JobFileError as error:          # named from the results folder: no machine's path in a status file
        return State(p, "refused", str(error).replace(str(path), path.relative_to(root).as_posix()))
    changed = changed_code(record)
    if changed:
        return State(p, "stale", f"training code changed since: {', '.join(changed)}")
    if record.run_ids != run_ids(p, steps, record.precision):
        return State(p, "stale", "its settings changed (other run ids)")
    records[(job.notebook, job.key, job.seed)] = record
    return State(p, "done", record=record)


def changed_code(record: JobRecord) -> list[str]:
    """The files of the training code the job ran that differ here (or are gone): a job is stale
    when the code it imported changed, not when code it never ran did."""
    from . import provenance

    now = provenance.file_digests(sorted(record.code_files))
    return [name for name, digest in record.code_files.items() if now[name] != digest]


# ---- estimates ----


def job_threads() -> int:
    """The threads each job's torch takes: OMP_NUM_THREADS, which cmd_converge sets for the jobs
    from its workers; without it (`--list`, the summary), the queue's default, JOB_THREADS."""
    return max(1, int(os.environ.get("OMP_NUM_THREADS") or JOB_THREADS))


def epoch_seconds(done: list[JobRecord], cpu: str, threads: int | None = None,
                  precision: str | None = None) -> dict[tuple[str, str], float]:
    """{(dataset, stage task): median seconds of an epoch} over the epochs of finished jobs on
    this CPU model at `threads` (default job_threads()) and in `precision` (None: any). The median
    of single epochs, not of whole stages, so a stretch a job shared its cores with something else
    barely moves it. A stage not yet measured here takes its prior (PRIOR_EPOCH_SECONDS, scaled
    from PRIOR_THREADS) times this machine's speed against the priors' machine: the median ratio
    of the measured stages to their priors (1 when none is measured)."""
    threads = job_threads() if threads is None else threads
    measured: dict[tuple[str, str], list[float]] = {key: [] for key in PRIOR_EPOCH_SECONDS}
    for record in done:
        if (record.machine.get("cpu") == cpu and record.machine.get("torch_threads") == threads
                and precision in (None, record.precision)):
            for stage in record.stages:
                measured.setdefault((stage["dataset"], stage["task"]), []).extend(epoch_durations(stage))
    seen = {k: statistics.median(v) for k, v in measured.items() if v}
    prior = {k: PRIOR_EPOCH_SECONDS[k] * PRIOR_THREADS / threads for k in PRIOR_EPOCH_SECONDS}
    slower = statistics.median(seen[k] / prior[k] for k in seen if k in prior) if set(seen) & set(prior) else 1.0
    return {**{k: seconds * slower for k, seconds in prior.items()}, **seen}


def epoch_durations(stage: Mapping[str, Any]) -> list[float]:
    """Seconds of each epoch of a job's stage: the steps of its curve's cumulative seconds, else
    the stage's seconds spread evenly over its epochs; [] where it records neither."""
    elapsed = [e["seconds"] for e in stage.get("curve", []) if isinstance(e.get("seconds"), (int, float))]
    steps = [b - a for a, b in zip([0.0, *elapsed], elapsed)]
    if steps and len(steps) == stage.get("epochs") and all(t > 0 for t in steps):
        return steps
    if stage.get("epochs") and stage.get("seconds"):
        return [stage["seconds"] / stage["epochs"]] * stage["epochs"]
    return []


def estimate_minutes(p: Planned, per_epoch: Mapping[str, float], done: list[JobRecord]) -> float:
    """Minutes a job takes here: each stage's expected epochs (the median of this arm's finished
    jobs, else PRIOR_EPOCHS, else its cap) times seconds per epoch; a references job, the median
    of the finished ones, else PRIOR_REFERENCE_MINUTES."""
    if p.family:
        seen = [r.wall_seconds / 60 for r in done if r.job["key"] == REFERENCES_KEY and not r.stages
                and r.row.get("family") == p.family]
        return statistics.median(seen) if seen else PRIOR_REFERENCE_MINUTES[p.family]
    pre, sup = configs(p, steps=None if p.job.matches is None else 1)
    minutes = 0.0
    for cfg in (pre, sup):
        if cfg is None:
            continue
        seen = [s["epochs"] for r in done if r.job["key"] == p.job.key for s in r.stages if s["task"] == cfg.task]
        epochs = statistics.median(seen) if seen else (PRIOR_EPOCHS[cfg.task] or cfg.epochs)
        minutes += min(epochs, cfg.epochs) * per_epoch[(cfg.dataset, cfg.task)] / 60
    return minutes


def cpu_hours(minutes: float, threads: int) -> float:
    """CPU-hours of jobs that take `minutes` of wall time at `threads` threads each."""
    return minutes * threads / 60


def survey(root: Path | None = None, jobs: list[Planned] | None = None) -> list[State]:
    """Every job's state, with the minutes each left to run would take on this machine. A job
    whose runs are another notebook's (01 and 03 share three arms) costs nothing: it takes that
    job's record (`twin`)."""
    from . import device
    from .experiments import common

    root = results_dir() if root is None else root
    found = states(plan() if jobs is None else jobs, root)
    done = [s.record for s in found if s.record is not None]
    per_epoch = epoch_seconds(done, device.cpu_name(), precision=common.precision_here())
    first: dict[tuple[str, ...], State] = {}
    for s in found:
        if s.state == "done":
            continue
        if s.state == "waiting":
            s.minutes = estimate_minutes(s.planned, per_epoch, done)
            continue
        ids = tuple(run_ids(s.planned))
        if ids in first:
            s.twin_of = first[ids]
            s.why = f"same runs as {s.twin_of.planned.job.title}" + (f"; {s.why}" if s.why else "")
        else:
            first[ids] = s
            s.minutes = estimate_minutes(s.planned, per_epoch, done)
    return found


def twin(s: State, found: list[State]) -> JobRecord | None:
    """A current record of another job that trained the same runs, or None."""
    ids = run_ids(s.planned)
    return next((o.record for o in found if o.record is not None and o.record.run_ids == ids), None)


def listing(found: list[State]) -> list[str]:
    """One line per job and a total: what is done, stale, refused, waiting or to run."""
    lines = []
    for s in found:
        extra = f" ({s.why})" if s.why else ""
        cost = f", about {s.minutes:.0f} min" if s.state != "done" and s.twin_of is None else ""
        lines.append(f"{s.planned.job.title}: {s.state}{extra}{cost}")
    left = [s for s in found if s.state != "done"]
    threads = job_threads()
    lines.append(f"{len(found) - len(left)} of {len(found)} jobs done; the {len(left)} left take about "
                 f"{cpu_hours(sum(s.minutes for s in left), threads):.1f} CPU-hours here (minutes are a job's "
                 f"wall time at {threads} thread{'s' if threads > 1 else ''})")
    return lines


# ---- running ----


@contextmanager
def job_lock(job: Job, runs: Path) -> Iterator[bool]:
    """Whether this process holds the job's lock (another queue running it: False)."""
    folder = runs / LOCKS
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{job.notebook}-{job.name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stage_curve(run_dir: Path) -> list[dict[str, Any]]:
    """Per epoch of a run: train loss, validation metric(s), learning rate and seconds, from its
    metrics.csv and timing.csv."""
    import csv

    epochs: dict[int, dict[str, Any]] = {}
    for name in ("metrics.csv", "timing.csv"):
        path = run_dir / name
        if not path.is_file():
            continue
        with open(path, newline="") as handle:
            for r in csv.DictReader(handle):
                if r["split"] in ("train_epoch", "val", "time"):
                    key = "seconds" if r["metric"] == "elapsed_seconds" else f"{r['split']}_{r['metric']}"
                    if r["split"] == "time" and key != "seconds":
                        continue
                    epochs.setdefault(int(r["epoch"]), {"epoch": int(r["epoch"])})[key] = float(r["value"])
    return [epochs[e] for e in sorted(epochs)]


def stage_record(cfg, result) -> dict[str, Any]:
    """What a job file keeps of one stage's RunResult."""
    stop = "plateau" if result.converged else ("cap reached" if cfg.plateau else "fixed length")
    return {"task": cfg.task, "dataset": cfg.dataset, "run_id": cfg.run_id, "epochs": result.epochs_run,
            "cap": cfg.epochs, "stop": stop, "selected_epoch": result.selected_epoch, "steps": result.steps,
            "seconds": result.wall_time, "curve": stage_curve(Path(cfg.run_dir))}


def train_job(p: Planned, steps: int | None, runs: Path) -> JobRecord:
    """Train (or resume, or reuse) one job's runs and make its record."""
    from . import provenance
    from .experiments.common import run_arm_results

    started = time.perf_counter()
    if p.family:
        return references_job(p, started)
    pre, sup = configs(p, steps, runs)
    arm = p.arm if steps is None else p.arm.replace(steps=steps)
    row, results = run_arm_results(arm, p.job.seed, p.settings, dataset=p.dataset,
                                   data_options=p.data_options, runs_dir=runs)
    ran = [c for c in (pre, sup) if c is not None]
    stages = [stage_record(cfg, res) for cfg, res in zip(ran, results)]
    return record_of(p, row, stages, [s["run_id"] for s in stages], sup.precision, started,
                     provenance.imported_training_code(), flops=float(row["flops"]))


def references_job(p: Planned, started: float) -> JobRecord:
    """The reference baselines of a job's seed on its notebook's split, tuned on validation."""
    from . import provenance
    from .experiments import regime

    rows = regime.baseline_rows(p.arm, (p.job.seed,), p.settings, family=p.family, dataset=p.dataset,
                                data_options=p.data_options)
    row = {"arm": REFERENCES, "seed": p.job.seed, "family": p.family, "references": rows}
    code = provenance.imported_training_code(parts=provenance.TRAINING_CODE + REFERENCE_CODE)
    return record_of(p, row, [], run_ids(p), REFERENCES_PRECISION, started, code)


def record_of(p: Planned, row: dict[str, Any], stages: list[dict[str, Any]], ids: list[str], precision: str,
              started: float, code: list[str], flops: float | None = None) -> JobRecord:
    from . import device, provenance

    identity = provenance.code_identity()
    return JobRecord(job=asdict(p.job), row=row, stages=stages, run_ids=ids,
                     code_fingerprint=identity["code_fingerprint"], code_files=provenance.file_digests(code),
                     commit=identity["commit"] if identity["verified"] else None, precision=precision,
                     wall_seconds=time.perf_counter() - started, machine=device.machine(), flops=flops)


def launch(p: Planned, steps: int | None, runs: Path, path: Path) -> subprocess.Popen:
    """One job in a fresh interpreter of its own, killed if the queue ends (processes.die_with_
    parent), which trains it and then writes its file atomically; it leaves no helper process
    behind once it has ended."""
    spec = runs / LOCKS / f"{p.job.notebook}-{p.job.name}.pickle"
    spec.write_bytes(pickle.dumps((p, steps, str(runs), str(path))))
    code = ("import pickle, sys; from hipcore.converge import train_into; "
            "train_into(*pickle.loads(open(sys.argv[1], 'rb').read()), parent=int(sys.argv[2]))")
    return subprocess.Popen([sys.executable, "-c", code, str(spec), str(os.getpid())])


def train_into(p: Planned, steps: int | None, runs: str, path: str, *, parent: int) -> None:
    """The child's work: end with the queue, train the job, write its file."""
    from .processes import die_with_parent

    die_with_parent(parent)
    write_record(train_job(p, steps, Path(runs)), Path(path))


def stages_line(record: JobRecord) -> str:
    """'pretrain 41 epochs (plateau); supervised 23 epochs (plateau)'."""
    return "; ".join(f"{s['task']} {s['epochs']} epochs ({s['stop']})" for s in record.stages)


def _score(row: Mapping[str, Any]) -> str:
    """'test top-1 82.76' (a segmentation: 'test mIoU 11.39'), or '' where the row has neither."""
    from .experiments.common import score_key, score_name

    return f"{score_name(row)} {row[score_key(row)]:.2f}" if score_key(row) else ""


def reached(record: JobRecord) -> str:
    """What a finished job reached, for its commit message: the arm's test score and its stages,
    or each reference model's test score ('logistic regression test top-1 82.85; ...')."""
    references = record.row.get("references")
    if references:
        return "; ".join(f"{r['model']} {_score(r)}" for r in references)
    return ", ".join(part for part in (_score(record.row), stages_line(record)) if part)


def commit_folder(folder: Path, record: JobRecord, env: Mapping[str, str] | None = None,
                  taken_from: Job | None = None) -> None:
    """Commit the job's file and what was rewritten from the jobs in a notebook's converged folder,
    alone: another job's file that landed in the same folder meanwhile waits for its own commit.
    The message names the job and what it reached (and, for a record taken from another
    notebook's job of the same runs, that job)."""
    job = record.job
    message = f"Converged job {job['notebook'][:2]} {job['key']} seed {job['seed']}: {reached(record)}"
    if taken_from is not None:
        message += f" (the runs of {taken_from.title}, its record taken)"
    from . import provenance

    own = Job(**job).path(folder.parent.parent)                   # folder/jobs/<key>-seed<seed>.json
    others = [f":(exclude){path}" for path in sorted(own.parent.iterdir()) if path != own]
    provenance.commit_paths([folder, *others], message, env)


def run(budget_minutes: float, *, root: Path | None = None, runs: Path | None = None, commit: bool = False,
        jobs: list[Planned] | None = None, log: Callable[[str], None] = print,
        start: Callable[..., subprocess.Popen] = launch, workers: int = 1) -> list[str]:
    """Run the jobs left (to run, stale, refused), in the plan's order, `workers` at a time (each
    in its own process), within `budget_minutes`; a job still running when the box ends is
    stopped (it resumes from its run folder next time). Two jobs that share a run (an MAE
    pretraining) never run at once. Returns the titles of the jobs finished in this call."""
    if not (isinstance(budget_minutes, (int, float)) and not isinstance(budget_minutes, bool)
            and math.isfinite(budget_minutes) and budget_minutes > 0):
        raise ValueError(f"--budget-minutes must be a positive number of minutes, got {budget_minutes!r}")
    deadline = time.monotonic() + 60 * budget_minutes - STOP_MARGIN_S
    root = results_dir() if root is None else root
    runs = runs_dir() if runs is None else runs
    finished: list[str] = []
    running: dict[Job, Running] = {}
    try:
        while time.monotonic() < deadline:
            taken: list[tuple[JobRecord, Job]] = []
            todo = [s for s in _left(root, jobs, log, taken) if s.planned.job not in running]
            if commit:
                for copy, source in taken:
                    commit_folder(Job(**copy.job).path(root).parent.parent, copy, taken_from=source)
            _start_jobs(todo, running, workers, root, runs, log, start, deadline)
            if not running:
                break
            for job in _wait_for_one(running, deadline):
                finished.append(job.title)
                written = write_notebook(job.notebook, survey(root, jobs), root)
                log(f"{job.title}: done; {job.notebook} has {written['done']} of {written['total']} jobs"
                    + (", its verdict pairs written" if written["written"] else ""))
                if commit:
                    commit_folder(written["folder"], read_record(job.path(root), job))
    finally:
        why = "by the time box" if time.monotonic() >= deadline else "as the queue stopped on an error"
        for job, r in running.items():
            r.stop()
            log(f"{job.title}: stopped {why}; it resumes from its run folder next time")
    write_status(root, jobs)
    log(f"finished {len(finished)} job(s) in this box")
    return finished


def write_status(root: Path | None = None, jobs: list[Planned] | None = None) -> list[dict[str, Any]]:
    """write_notebook for every notebook of the queue; returns what each wrote."""
    root = results_dir() if root is None else root
    found = survey(root, jobs)
    return [write_notebook(notebook, found, root) for notebook in dict.fromkeys(s.planned.job.notebook
                                                                               for s in found)]


# ---- what the README and SUMMARY say of it ----


def status_block(root: Path) -> str:
    """Markdown from the committed jobs.json files: per notebook, jobs done, stale, refused, to
    run and the CPU-hours left; and whether its verdict pairs exist (only when all its jobs are
    done). The queue that has never written a status says how to start it."""
    rows, machines = [], set()
    from .digests import check

    for folder in sorted(root.glob(f"*/{PROFILE}/{JOBS}")):
        status = json.loads(check(folder).read_text())
        jobs = status["jobs"]
        machines.add(status["estimated_on"])
        threads = status.get("threads_per_job", 1)            # written before it was recorded: one
        count = {k: sum(j["state"] == k for j in jobs) for k in ("done", "stale", "refused", "waiting", "to run")}
        rows.append(f"| {folder.parent.parent.name[:2]} | {count['done']} of {len(jobs)} | {count['stale']} | "
                    f"{count['refused']} | {count['waiting'] + count['to run']} | "
                    f"{cpu_hours(sum(j['minutes_left'] for j in jobs), threads):.1f} | "
                    + ("written" if (folder.parent / "comparisons.csv").exists() else
                       "none yet (a partial set is never a verdict)") + " |")
    if not rows:
        return ("The converged queue has not run yet: `python -m hipcore converge --list` lists its jobs and "
                "their minutes on this machine.")
    head = ("The `converged` profile (`python -m hipcore converge`): every arm of a paper row trained until "
            "the plateau rule stops it, over five seeds (controls three), on `quick`'s training images with "
            "the whole test set scored once at the checkpoint chosen on validation; one job per notebook, "
            f"arm and seed, resumable across sittings. Hours estimated on {', '.join(sorted(machines))}:")
    table = ["| notebook | jobs done | stale | refused | left to run | CPU-hours left | verdict pairs |",
             "|---|---|---|---|---|---|---|", *rows]
    return "\n".join([head, "", *table])


@dataclass
class Running:
    """A job's child process and the lock it holds while it runs."""

    child: subprocess.Popen
    lock: ExitStack
    run_ids: frozenset[str]

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        self.lock.close()


def _left(root: Path, jobs: list[Planned] | None, log, taken: list[tuple[JobRecord, Job]]) -> list[State]:
    """The jobs still to train; a job whose runs another notebook's job trained takes its record
    (appended to `taken` with the job it came from)."""
    found = survey(root, jobs)
    todo = []
    for s in (s for s in found if s.state in ("to run", "stale", "refused")):
        record = twin(s, found)
        if record is None:
            todo.append(s)
            continue
        row = {**record.row, "arm": s.planned.label}                       # this notebook's name for it
        copy = JobRecord(**{**asdict(record), "job": asdict(s.planned.job), "row": row})
        write_record(copy, s.planned.job.path(root))
        taken.append((copy, Job(**record.job)))
        log(f"{s.planned.job.title}: the same runs as {Job(**record.job).title}, its record taken")
    return todo


def _start_jobs(todo: list[State], running: dict[Job, Running], workers: int, root: Path, runs: Path,
                log, start, deadline: float) -> None:
    """Start jobs of `todo` in order until `workers` run: each one nobody else holds, that shares
    no run with a running job, and whose estimate fits in what is left of the box (a job stopped
    by the box is lost with its run folder when the next sitting runs on another machine)."""
    for s in todo:
        if len(running) >= workers:
            return
        job = s.planned.job
        left = (deadline - time.monotonic()) / 60
        if s.train_minutes > left:
            log(f"{job.title}: about {s.train_minutes:.0f} min, more than the {left:.0f} left in this box; "
                "not started")
            continue
        steps = None
        if job.matches is not None:
            matched = Job(job.notebook, job.matches, job.seed)
            steps = matched_steps(s.planned, read_record(matched.path(root), matched))
        ids = frozenset(run_ids(s.planned, steps))
        if any(ids & r.run_ids for r in running.values()):
            continue                                             # its MAE pretraining is training now
        lock = ExitStack()
        if not lock.enter_context(job_lock(job, runs)):
            lock.close()
            log(f"{job.title}: another queue is running it")
            continue
        log(f"{job.title}: {s.state}{f' ({s.why})' if s.why else ''}; about {s.train_minutes:.0f} min")
        running[job] = Running(start(s.planned, steps, runs, job.path(root)), lock, ids)


def _wait_for_one(running: dict[Job, Running], deadline: float) -> list[Job]:
    """Wait until a running job ends (-> the jobs that ended, their locks released) or the
    deadline (-> [], the jobs still running). A job that failed stops the queue."""
    while time.monotonic() < deadline:
        ended = [job for job, r in running.items() if r.child.poll() is not None]
        if ended:
            for job in ended:
                r = running.pop(job)
                r.lock.close()
                if r.child.returncode != 0:
                    raise HipcoreError(f"{job.title} failed (exit {r.child.returncode}); its output is above")
            return ended
        time.sleep(POLL_S)
    return []


# ---- a notebook's results from its jobs ----


def recorders() -> dict[str, Callable[[Path, list[dict[str, Any]]], Any]]:
    """{notebook: record(comparisons.csv path, rows)}: each notebook's own paired findings."""
    from .experiments import flattening, image_arms, imagenet_comparison, mae_positions, point_clouds, segmentation

    return {"01_imagenet_comparison": lambda path, rows: image_arms.record_findings(path, rows,
                                                                                    imagenet_comparison.FINDINGS),
            "03_mae_positional_embeddings": lambda path, rows: image_arms.record_findings(path, rows,
                                                                                          mae_positions.FINDINGS),
            "02_flattening_ablation": flattening.record_findings,
            "04_point_clouds": point_clouds.record_findings,
            segmentation.NOTEBOOK: segmentation.record_findings}


def jobs_table(found: list[State]) -> list[dict[str, Any]]:
    """One row per job of a notebook: state, why, epochs and stop per stage, precision, CPU."""
    out = []
    for s in found:
        r = s.record
        out.append({"job": s.planned.job.name, "arm": s.planned.label, "seed": s.planned.job.seed,
                    "state": s.state, "why": s.why,
                    "stages": stages_line(r) if r else "",
                    "precision": r.precision if r else "", "cpu": r.machine.get("cpu", "") if r else "",
                    "minutes_left": round(s.minutes, 1) if s.state != "done" else 0.0})
    return out


VERDICT_FILES = ("runs.json", "arms.csv", "comparisons.csv", "baselines.csv")   # once every job is done


def reference_rows(found: list[State]) -> list[dict[str, Any]]:
    """The baselines.csv rows of a notebook's finished references jobs."""
    return [r for s in found if s.planned.family and s.record is not None for r in s.record.row["references"]]


def write_notebook(notebook: str, found: list[State], root: Path) -> dict[str, Any]:
    """results/<notebook>/converged/, with its provenance (the commit that wrote it, and the
    commits the finished jobs were trained at) and signed: jobs.json (every job's state) always;
    runs.json, arms.csv and comparisons.csv (the verdict pairs) only once every job is done, each
    seed's in one precision (a pair never mixes precisions; seeds may differ, as machines do): a
    partial set is never a verdict.
    -> {'folder', 'done', 'total', 'missing': [job names or the reason], 'written'}."""
    from . import device, digests, provenance
    from .experiments.baselines import write_baselines
    from .experiments.common import write_arms, write_runs

    mine = [s for s in found if s.planned.job.notebook == notebook]
    folder = root / notebook / PROFILE
    folder.mkdir(parents=True, exist_ok=True)
    digests.unsign(folder)
    for name in VERDICT_FILES:
        (folder / name).unlink(missing_ok=True)
    status = {"profile": PROFILE, "estimated_on": device.cpu_name(), "threads_per_job": job_threads(),
              "jobs": jobs_table(mine)}
    write_text_atomic(folder / JOBS, json.dumps(status, indent=1) + "\n")
    missing = [s.planned.job.name for s in mine if s.state != "done"]
    arms = [s for s in mine if not s.planned.family]
    for (dataset, seed), precisions in sorted(seed_precisions(arms).items()):
        if len(precisions) > 1:
            missing.append(f"one precision for seed {seed}'s jobs, whose pairs they make (found "
                           f"{', '.join(sorted(precisions))})")
    out = {"folder": folder, "done": sum(s.state == "done" for s in mine), "total": len(mine), "missing": missing,
           "written": []}
    if not missing:
        rows = [{**s.record.row, "precision": s.record.precision} for s in arms]
        recorders()[notebook](folder / "comparisons.csv", rows)
        out["written"] = [write_runs(folder, rows), write_arms(folder / "arms.csv", rows), folder / "comparisons.csv"]
        references = reference_rows(mine)
        if references:
            out["written"].append(write_baselines(folder, references))
    provenance.write(folder, mine[0].planned.settings if mine else None, profile=PROFILE,
                     seeds=sorted({s.planned.job.seed for s in mine}),
                     command=provenance.command("converge", status=True, notebooks=[notebook[:2]]),
                     job_commits=sorted({s.record.commit for s in mine if s.record is not None}))
    return out


# ---- what a notebook shows of its jobs ----


@dataclass
class View:
    """A notebook's converged evidence as this checkout reads it: every job's state (`table`),
    a line saying how far the set is (`text`), each finished run's validation curve with its stop
    (`figure`, None before any job is done) and, once every job is done, the verdict rows
    (`findings`, report.Finding; empty for a partial set, which is never a verdict)."""

    table: Any                     # pandas DataFrame, one row per job
    text: str
    figure: Any
    findings: list


def view(notebook: str, root: Path | None = None) -> View:
    """The converged evidence of `notebook` (e.g. '01_imagenet_comparison') under results `root`."""
    import pandas as pd

    from .experiments import regime
    from .experiments.common import score_of

    root = results_dir() if root is None else Path(root)
    mine = survey(root, [p for p in plan() if p.job.notebook == notebook])
    if not mine:
        raise ValueError(f"notebook {notebook!r} has no jobs in the converged queue")
    counts = {state: sum(s.state == state for s in mine) for state in ("done", "stale", "refused", "waiting", "to run")}
    table = pd.DataFrame(jobs_table(mine)).drop(columns=["job"])
    done = [s.record for s in mine if s.record is not None]
    score = "test mIoU" if any(s.planned.arm.task == "segment" for s in mine) else "test top-1"
    table.insert(3, score, [f"{score_of(s.record.row):.2f}" if s.record and not s.planned.family else ""
                            for s in mine])
    folder = root / notebook / PROFILE
    complete = counts["done"] == len(mine) and (folder / "comparisons.csv").is_file()
    left = ", ".join(f"{n} {state}" for state, n in counts.items() if n and state != "done")
    text = (f"Converged profile (`python -m hipcore converge`): {counts['done']} of {len(mine)} jobs done"
            + (f"; {left}. A partial set is no verdict: the rows wait for every job." if left else
               "; the verdict rows below pair them by seed."))
    text += references_text([s for s in mine if not s.planned.family], reference_rows(mine))
    return View(table, text, curves_figure([r for r in done if r.stages]) if any(r.stages for r in done) else None,
                regime.findings(folder) if complete else [])


def references_text(arms: list[State], references: list[dict[str, Any]]) -> str:
    """Each reference baseline's mean test score (top-1, or mIoU) over its finished seeds beside
    the finished arms'."""
    from .experiments import regime
    from .experiments.common import score_of

    if not references:
        return "\n\nNo reference baseline has finished at this profile's split yet."
    means: dict[str, list[float]] = {}
    for s in arms:
        if s.record is not None:
            means.setdefault(s.planned.label, []).append(score_of(s.record.row))
    summary = [{"arm": arm, "accuracy": statistics.mean(v)} for arm, v in means.items()]
    seeds = sorted({r["seed"] for r in references})
    return (f"\n\nReference baselines at the same split, tuned on its validation set (seeds {seeds}): "
            + "; ".join(regime.baseline_lines(references, summary)) + ".")


# Per stage's task: the validation metric its curve plots (stage_curve's key), its label, the panel's title.
CURVES = {"pretrain": ("val_loss", "loss (MAE)", "MAE pretraining"),
          "supervised": ("val_accuracy", "top-1", "classification"),
          "segment": ("val_miou", "mIoU", "segmentation")}


def curves_figure(records: list[JobRecord]):
    """Each finished job's validation curve per stage (MAE: loss; classification: top-1), one
    line per seed, its stop marked (o: the plateau rule stopped it, x: its cap)."""
    import matplotlib.pyplot as plt

    stages = sorted({s["task"] for r in records for s in r.stages}, key=list(CURVES).index)
    fig, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 4), squeeze=False)
    arms = sorted({r.row["arm"] for r in records})
    colours = dict(zip(arms, plt.cm.tab10.colors))
    for ax, task in zip(axes[0], stages):
        key, label, title = CURVES[task]
        for r in records:
            for stage in (s for s in r.stages if s["task"] == task and s["curve"]):
                epochs = [e["epoch"] for e in stage["curve"] if key in e]
                values = [e[key] for e in stage["curve"] if key in e]
                if not epochs:
                    continue
                ax.plot(epochs, values, color=colours[r.row["arm"]], lw=1, alpha=0.8)
                ax.plot(epochs[-1], values[-1], "o" if stage["stop"] == "plateau" else "x",
                        color=colours[r.row["arm"]])
        ax.set(xlabel="epoch", ylabel="validation " + label, title=title + " (o plateau, x cap)")
    for arm in arms:
        axes[0][-1].plot([], [], color=colours[arm], label=arm)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---- command line ----


def add_commands(sub) -> None:
    """`converge` on an argparse subparsers object."""
    from .argtypes import positive_float, positive_int

    queue = sub.add_parser("converge", help="train the converged profile's jobs, a time box at a time",
                           description=cmd_converge.__doc__)
    queue.add_argument("--list", action="store_true", help="list every job, its state and minutes here; train nothing")
    queue.add_argument("--budget-minutes", type=positive_float, default=None,
                       help="train what is left for at most this many minutes")
    queue.add_argument("--commit", action="store_true", help="commit each notebook's folder as a job lands (git)")
    queue.add_argument("--notebooks", nargs="+", metavar="NN", default=None,
                       help="only these notebooks' jobs, by number, in this order (e.g. 04 01); default all")
    queue.add_argument("--workers", type=positive_int, default=None,
                       help=f"jobs at once, each in its own process (default: one per core, {JOB_THREADS} "
                            "thread each; see JOB_THREADS)")
    queue.add_argument("--status", action="store_true",
                       help="write each notebook's converged/jobs.json (and its verdict pairs once all its jobs "
                            "are done) from the job files; train nothing")
    queue.set_defaults(func=cmd_converge)


def cmd_converge(args: argparse.Namespace) -> int:
    """Lists the converged profile's jobs (notebooks 01-04: each arm and seed to its plateau)
    with their state and estimated minutes on this machine; with --budget-minutes, trains the
    ones left within that time box, one job per core at once. Run it again to go on."""
    from . import provenance

    jobs = chosen(args.notebooks)
    if args.status:
        for written in write_status(jobs=jobs):
            print(f"{provenance.relative(written['folder'] / JOBS)}: {written['done']} of {written['total']} "
                  "jobs done" + ("; verdict pairs written" if written["written"] else ""))
        return 0
    if args.list or args.budget_minutes is None:
        print("\n".join(listing(survey(jobs=jobs))))
        return 0
    if args.commit and provenance.git_state()["dirty"] is not False:
        raise HipcoreError("--commit needs a clean checkout (only results/ may differ from HEAD): commit "
                           "or stash the code first")
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or max(1, cores // JOB_THREADS)
    os.environ["OMP_NUM_THREADS"] = str(max(1, cores // workers))          # what each job's torch uses
    run(args.budget_minutes, commit=args.commit, jobs=jobs, workers=workers)
    return 0


def chosen(notebooks: list[str] | None) -> list[Planned]:
    """The queue's jobs of the notebooks named by number ('04', '01'), in that order of notebooks,
    or all of them."""
    jobs = plan()
    if not notebooks:
        return jobs
    known = sorted({p.job.notebook[:2] for p in jobs})
    unknown = [n for n in notebooks if n not in known]
    if unknown:
        raise ValueError(f"--notebooks {' '.join(unknown)}: the queue holds notebooks {', '.join(known)}")
    order = {n: i for i, n in enumerate(notebooks)}
    return sorted((p for p in jobs if p.job.notebook[:2] in order), key=lambda p: order[p.job.notebook[:2]])
