"""The converged queue: job files (round trip, each refused form), stale detection, the time
box, a job killed in the middle, two queues in one checkout, and FLOP-matched steps."""

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from hipcore import converge, provenance
from hipcore.converge import Job, JobFileError, JobRecord, Planned
from hipcore.experiments import common, regime
from hipcore.experiments.image_arms import HIP_CLASSIFICATION, HIP_MAE

TRAINED = ["hipcore/train/engine.py", "hipcore/model/hip.py"]     # what a test job "imported"
SMOKE = {**common.IMAGE_TABLE["smoke"], "limit_train": 128, "limit_test": 64, "batch_size": 32}


@pytest.fixture(autouse=True)
def fp32_machine(monkeypatch):
    """Every test here on a machine that trains 'auto' in fp32, whatever this one resolves: run
    ids hold the precision, and tests that need another machine's say so."""
    machine(monkeypatch, "fp32")


def machine(monkeypatch, precision: str) -> None:
    real = common.resolve_precision
    monkeypatch.setattr(common, "resolve_precision",
                        lambda requested, device: precision if requested == "auto" else real(requested, device))


def planned(key="hip_classification", seed=0, matches=None, arm=HIP_CLASSIFICATION):
    return Planned(Job("01_imagenet_comparison", key, seed, matches), SMOKE, arm)


def record(p: Planned, **changes) -> JobRecord:
    """A finished job's record, its runs in changes' precision (default fp32)."""
    row = {"arm": p.arm.label, "seed": p.job.seed, **common.arm_settings(p.arm, p.settings), "test_accuracy": 50.0,
           "converged": True, "epochs_run": 3}
    precision = changes.get("precision", "fp32")
    ids = converge.run_ids(p, precision=precision)
    base = JobRecord(job=asdict(p.job), row=row, stages=[
        {"task": "supervised", "dataset": "fashion_mnist", "run_id": ids[-1], "epochs": 3,
         "seconds": 30.0, "stop": "plateau", "curve": []}], run_ids=ids,
        code_fingerprint=provenance.code_fingerprint(), code_files=provenance.file_digests(TRAINED),
        commit="a" * 40, precision=precision, wall_seconds=30.0,
        machine={"cpu": "test cpu"}, flops=1e12)
    return replace(base, **changes)


def test_a_job_file_round_trips(tmp_path):
    p = planned()
    path = converge.write_record(record(p), p.job.path(tmp_path))
    assert converge.read_record(path, p.job) == record(p, finished=converge.read_record(path, p.job).finished)
    [state] = converge.states([p], tmp_path)
    assert state.state == "done"


@pytest.mark.parametrize("damage, words", [
    (lambda text: text[: len(text) // 2], "not a complete job file"),
    (lambda text: json.dumps({**json.loads(text), "job": {**json.loads(text)["job"], "seed": 7}}),
     "copied or duplicated"),
    (lambda text: json.dumps({**json.loads(text), "commit": None}), "dirty tree"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "stages"}), "lacks stages"),
    (lambda text: json.dumps({**json.loads(text), "format": 99}), "format 99"),
    (lambda text: json.dumps({**{k: v for k, v in json.loads(text).items() if k != "code_files"}, "format": 1}),
     "format 1, this code reads 2"),                     # an older file: its format, not a missing field
])
def test_a_damaged_job_file_is_refused_naming_it_and_runs_again(tmp_path, damage, words):
    p = planned()
    path = converge.write_record(record(p), p.job.path(tmp_path))
    path.write_text(damage(path.read_text()))
    with pytest.raises(JobFileError, match=words) as error:
        converge.read_record(path, p.job)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    [state] = converge.states([p], tmp_path)
    assert state.state == "refused" and words in state.why
    assert state.why.startswith(f"01_imagenet_comparison/converged/jobs/{p.job.name}.json: ")   # no machine path


def test_a_job_whose_training_code_changed_or_other_settings_is_stale(tmp_path):
    p = planned()
    ran = {**provenance.file_digests(TRAINED), "hipcore/model/hip.py": "000000000000"}
    converge.write_record(record(p, code_files=ran), p.job.path(tmp_path))
    [state] = converge.states([p], tmp_path)
    assert state.state == "stale" and state.why == "training code changed since: hipcore/model/hip.py"
    gone = {**provenance.file_digests(TRAINED), "hipcore/model/gone.py": "000000000000"}
    converge.write_record(record(p, code_files=gone), p.job.path(tmp_path))
    [state] = converge.states([p], tmp_path)
    assert state.state == "stale" and "hipcore/model/gone.py" in state.why
    converge.write_record(record(p, run_ids=["supervised-00000000"]), p.job.path(tmp_path))
    [state] = converge.states([p], tmp_path)
    assert state.state == "stale" and "settings changed" in state.why


def test_a_matched_control_waits_then_trains_the_steps_of_its_match_flops(tmp_path, monkeypatch):
    arm, control = planned("hip_mae", arm=HIP_MAE), planned("perceiver_matched", matches="hip_mae")
    [waiting] = [s for s in converge.states([arm, control], tmp_path) if s.planned is control]
    assert waiting.state == "waiting"
    monkeypatch.setattr(common, "step_flops", lambda cfg, part: 1e9)
    converge.write_record(record(arm, flops=2.5e12), arm.job.path(tmp_path))
    assert converge.matched_steps(control, converge.read_record(arm.job.path(tmp_path), arm.job)) == 2500
    with pytest.raises(JobFileError, match="records no FLOPs"):
        converge.matched_steps(control, record(arm, flops=None))


@pytest.fixture
def quick_jobs(monkeypatch):
    """Every job estimated at no time, so that a short test box starts it."""
    monkeypatch.setattr(converge, "estimate_minutes", lambda p, per_epoch, done: 0.0)


def _sleeps(p, steps, runs, path):                      # a job that never finishes in the box
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def _writes(p, steps, runs, path):                      # a job that finishes at once
    converge.write_record(record(p), Path(path))
    return subprocess.Popen([sys.executable, "-c", "pass"])


def test_the_time_box_stops_a_running_job_and_leaves_no_file(tmp_path, monkeypatch, quick_jobs):
    monkeypatch.setattr(converge, "STOP_MARGIN_S", 0.0)
    p = planned()
    start = time.monotonic()
    done = converge.run(0.05, root=tmp_path, runs=tmp_path / "runs", jobs=[p], start=_sleeps, log=lambda s: None)
    assert done == [] and time.monotonic() - start < 300     # the child would sleep 600 s
    assert not p.job.path(tmp_path).exists()                     # killed mid-job: nothing half-written
    done = converge.run(10, root=tmp_path, runs=tmp_path / "runs", jobs=[p], start=_writes, log=lambda s: None)
    assert done == [p.job.title] and converge.read_record(p.job.path(tmp_path), p.job)


def test_two_workers_run_two_jobs_at_once_but_never_two_that_share_a_run(tmp_path, monkeypatch, quick_jobs):
    monkeypatch.setattr(converge, "STOP_MARGIN_S", 0.0)
    first, other_seed = planned(seed=0), planned(seed=1)
    same_runs = replace(first, job=Job("03_mae_positional_embeddings", "hip_classification", 0))
    started = []

    def sleeps(p, steps, runs, path):
        started.append(p.job)
        return _sleeps(p, steps, runs, path)

    converge.run(0.05, root=tmp_path, runs=tmp_path / "runs", jobs=[first, same_runs, other_seed], start=sleeps,
                 workers=2, log=lambda s: None)
    assert started == [first.job, other_seed.job]       # same_runs waits: its runs are first's
    started.clear()
    converge.run(0.05, root=tmp_path, runs=tmp_path / "runs", jobs=[first, same_runs, other_seed], start=sleeps,
                 workers=1, log=lambda s: None)
    assert started == [first.job]


def test_a_worker_whose_job_ends_takes_the_next_while_the_other_runs(tmp_path, monkeypatch, quick_jobs):
    monkeypatch.setattr(converge, "STOP_MARGIN_S", 0.0)
    quick, slow, third = planned(seed=0), planned(seed=1), planned(seed=2)
    order = []

    def start(p, steps, runs, path):
        order.append(p.job.seed)
        return (_sleeps if p is slow else _writes)(p, steps, runs, path)

    done = converge.run(0.1, root=tmp_path, runs=tmp_path / "runs", jobs=[quick, slow, third], start=start,
                        workers=2, log=lambda s: None)
    assert order == [0, 1, 2] and done == [quick.job.title, third.job.title]
    assert not slow.job.path(tmp_path).exists()          # stopped by the box, nothing half-written


def test_a_job_another_queue_holds_is_skipped(tmp_path, quick_jobs):
    p = planned()
    lines = []
    with converge.job_lock(p.job, tmp_path / "runs") as mine:
        assert mine
        done = converge.run(10, root=tmp_path, runs=tmp_path / "runs", jobs=[p], start=_writes, log=lines.append)
    assert done == [] and any("another queue is running it" in line for line in lines)


def test_a_job_with_another_notebooks_runs_takes_its_record(tmp_path, quick_jobs):
    first = planned()
    second = replace(first, job=Job("03_mae_positional_embeddings", "hip_classification", 0))
    converge.write_record(record(first), first.job.path(tmp_path))
    done = converge.run(10, root=tmp_path, runs=tmp_path / "runs", jobs=[first, second], start=_sleeps,
                        log=lambda s: None)
    assert done == []
    taken = converge.read_record(second.job.path(tmp_path), second.job)
    assert taken.row == record(first).row and taken.job["notebook"] == "03_mae_positional_embeddings"


def test_the_plan_holds_every_paper_row_at_five_seeds_and_controls_at_three():
    jobs = converge.plan()
    seeds = {}
    for p in jobs:
        seeds.setdefault((p.job.notebook, p.job.key), set()).add(p.job.seed)
    assert seeds[("01_imagenet_comparison", "hip_mae")] == {0, 1, 2, 3, 4}
    assert seeds[("02_flattening_ablation", "shuffled_mae")] == {0, 1, 2, 3, 4}
    assert seeds[("04_point_clouds", "stored_mae")] == {0, 1, 2, 3, 4}
    assert seeds[("03_mae_positional_embeddings", "compute_matched")] == {0, 1, 2}
    assert {key: seeds[("07_dense_decoding", key)] for key in ("full", "bottleneck", "perceiver")} == {
        key: {0, 1, 2, 3, 4} for key in ("full", "bottleneck", "perceiver")}
    assert all(p.settings["plateau"] and p.settings["limit_test"] is None for p in jobs)
    lines = converge.listing(converge.survey(Path("/nonexistent"), jobs))
    assert lines[-1].startswith(f"0 of {len(jobs)} jobs done") and "CPU-hours" in lines[-1]


@pytest.mark.parametrize("budget", [0, -1, float("nan"), float("inf"), True])
def test_a_budget_that_is_not_a_positive_number_is_refused(tmp_path, budget):
    with pytest.raises(ValueError, match="--budget-minutes"):
        converge.run(budget, root=tmp_path, jobs=[])


def test_a_real_job_trains_and_records_its_curve_stop_and_flops(tmp_path, monkeypatch):
    p = replace(planned(), settings={**SMOKE, "epochs": 2, "plateau": True, "min_epochs": 1})
    monkeypatch.setattr(provenance, "code_identity", lambda: {"code_fingerprint": provenance.code_fingerprint(),
                                                             "commit": "b" * 40, "verified": True})
    rec = converge.train_job(p, None, tmp_path / "runs")
    [stage] = rec.stages
    assert stage["task"] == "supervised" and stage["stop"] in ("plateau", "cap reached")
    assert [e["epoch"] for e in stage["curve"]] == list(range(1, stage["epochs"] + 1))
    assert {"train_epoch_loss", "val_accuracy", "seconds"} <= set(stage["curve"][0])
    assert rec.flops > 0 and rec.commit == "b" * 40 and rec.machine["cpu"]
    assert {"hipcore/train/engine.py", "hipcore/model/hip.py", "hipcore/data/fashion_mnist.py"} <= set(rec.code_files)
    assert all(name.startswith(("hipcore/model", "hipcore/train", "hipcore/data", "hipcore/config.py",
                                "hipcore/device.py")) for name in rec.code_files)
    path = converge.write_record(rec, p.job.path(tmp_path))
    assert converge.read_record(path, p.job).run_ids == converge.run_ids(p)


def test_a_segmentation_job_trains_and_its_notebook_gets_mean_iou_pairs(tmp_path, monkeypatch):
    from hipcore.experiments import segmentation
    from hipcore.report import read_comparisons

    settings = {**segmentation.TABLE["smoke"], "epochs": 2, "plateau": True, "min_epochs": 1}
    monkeypatch.setattr(provenance, "code_identity", lambda: {"code_fingerprint": provenance.code_fingerprint(),
                                                             "commit": "b" * 40, "verified": True})
    jobs = [Planned(Job(segmentation.NOTEBOOK, key, seed), settings, arm, segmentation.DATASET,
                    segmentation.data_options(settings))
            for seed in (0, 1) for key, arm in segmentation.arms(settings).items() if key != "perceiver"]
    rec = converge.train_job(jobs[0], None, tmp_path / "runs")
    [stage] = rec.stages
    assert stage["task"] == "segment" and {"val_miou", "val_pixel_accuracy"} <= set(stage["curve"][0])
    assert 0 <= rec.row["test_miou"] <= 100 and "test_accuracy" not in rec.row
    assert "hipcore/train/dense.py" in rec.code_files
    for p, miou in zip(jobs, (40.0, 38.0, 42.0, 40.5)):
        row = {**rec.row, "arm": p.arm.label, "seed": p.job.seed, "test_miou": miou}
        converge.write_record(replace(rec, job=asdict(p.job), row=row, run_ids=converge.run_ids(p)),
                              p.job.path(tmp_path))
    out = converge.write_notebook(segmentation.NOTEBOOK, converge.states(jobs, tmp_path), tmp_path)
    pairs = read_comparisons(out["folder"] / "comparisons.csv")
    assert [(r["metric"], int(r["seed"]), float(r["baseline"]), float(r["treatment"])) for r in pairs] == [
        ("mIoU %", 0, 38.0, 40.0), ("mIoU %", 1, 40.5, 42.0)]
    references = next(p for p in converge.plan() if p.job.notebook == segmentation.NOTEBOOK and p.family)
    assert references.family == "dense"
    unet = converge.train_job(replace(references, settings=settings, data_options=jobs[0].data_options), None,
                              tmp_path / "runs")
    [row] = unet.row["references"]
    assert row["model"] == "small U-Net" and 0 <= row["test_miou"] <= 100 and row["seed"] == 0


def finished(p: Planned, top1: float, precision: str = "bf16") -> JobRecord:
    return record(p, row={**record(p).row, "test_accuracy": top1}, precision=precision)


def _four_jobs():
    """hip_mae and perceiver_fourier of notebook 01, seeds 0 and 1."""
    from hipcore.experiments.image_arms import PERCEIVER_FOURIER

    fourier = common.Arm(PERCEIVER_FOURIER, variant="perceiver_small", position="fourier", ordering="raster")
    return [planned("hip_mae", s, arm=HIP_MAE) for s in (0, 1)] + [planned("perceiver_fourier", s, arm=fourier)
                                                                   for s in (0, 1)]


def test_a_notebook_gets_verdict_pairs_only_when_every_job_is_done_each_seed_in_one_precision(tmp_path,
                                                                                              monkeypatch):
    from hipcore.report import read_comparisons

    machine(monkeypatch, "bf16")
    jobs = _four_jobs()
    for p, top1 in zip(jobs[:3], (80.0, 81.0, 78.0)):
        converge.write_record(finished(p, top1), p.job.path(tmp_path))
    found = converge.states(jobs, tmp_path)
    out = converge.write_notebook("01_imagenet_comparison", found, tmp_path)
    assert out["missing"] == ["perceiver_fourier-seed1"] and out["written"] == []
    assert not (out["folder"] / "comparisons.csv").exists()
    status = json.loads((out["folder"] / converge.JOBS).read_text())
    assert [j["state"] for j in status["jobs"]] == ["done"] * 3 + ["to run"]

    converge.write_record(finished(jobs[3], 79.5, precision="fp32"), jobs[3].job.path(tmp_path))  # another machine's
    found = converge.states(jobs, tmp_path)
    out = converge.write_notebook("01_imagenet_comparison", found, tmp_path)
    assert out["written"] == [] and out["missing"] == ["one precision for seed 1's jobs, whose pairs they make "
                                                       "(found bf16, fp32)"]

    converge.write_record(finished(jobs[3], 79.5), jobs[3].job.path(tmp_path))
    found = converge.states(jobs, tmp_path)
    out = converge.write_notebook("01_imagenet_comparison", found, tmp_path)
    pairs = read_comparisons(out["folder"] / "comparisons.csv")
    assert [(int(r["seed"]), float(r["baseline"]), float(r["treatment"])) for r in pairs] == [(0, 78.0, 80.0),
                                                                                            (1, 79.5, 81.0)]
    for p, top1 in ((jobs[0], 80.0), (jobs[2], 78.0)):                      # seed 0 from an fp32 machine
        converge.write_record(finished(p, top1, precision="fp32"), p.job.path(tmp_path))
    out = converge.write_notebook("01_imagenet_comparison", converge.states(jobs, tmp_path), tmp_path)
    assert out["missing"] == [] and len(read_comparisons(out["folder"] / "comparisons.csv")) == 2


def test_a_seeds_jobs_wait_for_a_machine_of_the_precision_its_runs_trained_in(tmp_path, monkeypatch):
    """On an fp32 machine a bf16 job stays done (its run ids are checked in bf16, not rerun in
    fp32), the rest of its seed waits for a bf16 machine, other seeds and the references (fp32
    everywhere, the same id on every machine) run; on a bf16 machine the seed runs."""
    jobs = _four_jobs()
    references = Planned(Job("01_imagenet_comparison", converge.REFERENCES_KEY, 0), SMOKE, HIP_MAE, family="images")
    converge.write_record(finished(jobs[0], 80.0), jobs[0].job.path(tmp_path))
    found = {s.planned.job.name: s for s in converge.states([*jobs, references], tmp_path)}
    assert {name: s.state for name, s in found.items()} == {
        "hip_mae-seed0": "done", "hip_mae-seed1": "to run", "perceiver_fourier-seed0": "waiting",
        "perceiver_fourier-seed1": "to run", "references-seed0": "to run"}
    assert found["perceiver_fourier-seed0"].why == ("for a machine that trains bf16: seed 0's runs on fashion_mnist "
                                                     "trained in it, this one trains fp32")
    fp32_ids = converge.run_ids(references)
    machine(monkeypatch, "bf16")
    assert converge.run_ids(references) == fp32_ids
    found = {s.planned.job.name: s.state for s in converge.states(jobs, tmp_path)}
    assert found["perceiver_fourier-seed0"] == "to run" and found["hip_mae-seed0"] == "done"


def test_epoch_seconds_are_the_median_of_single_epochs_of_this_cpu_and_precision():
    """A job that shared its cores for a stretch (three slow epochs) barely moves the estimate,
    and a job of another precision on the same CPU model is not counted."""
    p = planned()
    curve = [{"epoch": e, "seconds": s} for e, s in enumerate((30.0, 90.0, 150.0, 160.0, 170.0, 180.0, 190.0), 1)]
    stage = {"task": "supervised", "dataset": "fashion_mnist", "run_id": "x", "epochs": 7, "seconds": 190.0,
             "curve": curve}
    assert converge.epoch_durations(stage) == [30.0, 60.0, 60.0, 10.0, 10.0, 10.0, 10.0]
    assert converge.epoch_durations({**stage, "curve": []}) == [190.0 / 7] * 7
    one = record(p, stages=[stage], machine={"cpu": "cpu", "torch_threads": 1})
    other = record(p, stages=[{**stage, "curve": [], "seconds": 700.0}], precision="bf16",
                   machine={"cpu": "cpu", "torch_threads": 1})
    assert converge.epoch_seconds([one, other], "cpu", 1, "fp32")[("fashion_mnist", "supervised")] == 10.0


def test_the_status_block_counts_each_notebooks_jobs_from_its_committed_status(tmp_path):
    assert "has not run yet" in converge.status_block(tmp_path)
    jobs = [planned("hip_classification", s) for s in (0, 1)]
    converge.write_record(record(jobs[0]), jobs[0].job.path(tmp_path))
    converge.write_status(tmp_path, jobs)
    block = converge.status_block(tmp_path)
    row = next(line for line in block.splitlines() if line.startswith("| 01 "))
    assert row.startswith("| 01 | 1 of 2 | 0 | 0 | 1 |") and "none yet" in row
    status = json.loads((tmp_path / "01_imagenet_comparison" / "converged" / converge.JOBS).read_text())
    assert [j["state"] for j in status["jobs"]] == ["done", "to run"] and status["estimated_on"]


def test_a_job_runs_in_a_fresh_interpreter_and_writes_its_file(tmp_path):
    p = replace(planned(), settings={**SMOKE, "epochs": 1})
    (tmp_path / "runs" / converge.LOCKS).mkdir(parents=True)
    child = converge.launch(p, None, tmp_path / "runs", p.job.path(tmp_path))
    assert child.wait(timeout=600) == 0
    written = json.loads(p.job.path(tmp_path).read_text())      # commit or not: this checkout may be dirty
    assert written["job"] == asdict(p.job)                      # the child trained in what this machine resolves
    assert written["run_ids"] == converge.run_ids(p, precision=written["precision"])


def test_a_changed_status_file_is_refused_naming_it(tmp_path):
    from hipcore.digests import ResultsChanged

    converge.write_status(tmp_path, [planned()])
    path = tmp_path / "01_imagenet_comparison" / "converged" / converge.JOBS
    path.write_text(path.read_text().replace('"to run"', '"done"'))
    with pytest.raises(ResultsChanged, match="jobs.json: changed since its folder was signed"):
        converge.status_block(tmp_path)


def test_the_queue_can_be_narrowed_to_notebooks_by_number():
    assert {p.job.notebook for p in converge.chosen(["04"])} == {"04_point_clouds"}
    assert len(converge.chosen(None)) == len(converge.plan())
    order = [p.job.notebook[:2] for p in converge.chosen(["04", "01"])]
    assert order == sorted(order, reverse=True) and set(order) == {"04", "01"}     # in the order named
    assert {p.job.notebook for p in converge.chosen(["07"])} == {"07_dense_decoding"}
    with pytest.raises(ValueError, match="--notebooks 08: the queue holds notebooks 01, 02, 03, 04, 07"):
        converge.chosen(["08"])


def test_commit_folder_commits_that_folder_alone_naming_the_job(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "elsewhere.txt").write_text("not part of the job\n")
    p = planned()
    converge.write_status(tmp_path, [p])
    folder = tmp_path / "01_imagenet_comparison" / "converged"
    rec = finished(p, 81.25)
    converge.write_record(rec, p.job.path(tmp_path))
    subprocess.run([*git, "add", "elsewhere.txt"], check=True)            # staged, but not the job's
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    converge.commit_folder(folder, rec, env=env)
    log = subprocess.run([*git, "log", "--format=%s", "--name-only"], capture_output=True, text=True).stdout
    assert log.startswith("Converged job 01 hip_classification seed 0: test top-1 81.25, supervised 3 epochs (plateau)")
    assert "jobs/hip_classification-seed0.json" in log and "elsewhere.txt" not in log


def test_two_jobs_landing_in_one_folder_are_committed_each_with_its_own_message(tmp_path):
    """Two workers finish at once: the first job's commit leaves the second's file for the
    second's commit (which, were it taken, would find nothing to commit and stop the queue)."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    one, two = planned(seed=0), planned(seed=1)
    converge.write_status(tmp_path, [one, two])
    records = {p.job.seed: finished(p, 80.0 + p.job.seed) for p in (one, two)}
    for p in (one, two):
        converge.write_record(records[p.job.seed], p.job.path(tmp_path))
    folder = tmp_path / "01_imagenet_comparison" / "converged"
    for p in (one, two):
        converge.commit_folder(folder, records[p.job.seed], env=env)
    log = subprocess.run([*git, "log", "--reverse", "--format=@%s", "--name-only"], capture_output=True,
                         text=True).stdout
    commits = [c.strip().splitlines() for c in log.split("@") if c.strip()]
    assert [c[0].split(":")[0] for c in commits] == ["Converged job 01 hip_classification seed 0",
                                                     "Converged job 01 hip_classification seed 1"]
    assert [[f.rsplit("/", 1)[-1] for f in c[1:] if "/jobs/" in f] for c in commits] == \
        [["hip_classification-seed0.json"], ["hip_classification-seed1.json"]]
    assert "jobs.json" in " ".join(commits[0])


def test_a_commit_message_names_what_each_reference_and_a_segmentation_reached():
    refs = record(planned(), stages=[], row={"arm": "reference baselines", "seed": 0, "references": [
        {"model": "logistic regression", "test_accuracy": 82.85}, {"model": "small CNN", "test_accuracy": 87.67}]})
    assert converge.reached(refs) == "logistic regression test top-1 82.85; small CNN test top-1 87.67"
    dense = record(planned(), row={"arm": "HiP", "test_miou": 11.391, "test_pixel_accuracy": 80.0})
    assert converge.reached(dense) == "test mIoU 11.39, supervised 3 epochs (plateau)"


def test_a_notebook_views_its_jobs_as_partial_until_every_one_is_done(tmp_path):
    jobs = [p for p in converge.plan() if p.job.notebook == "04_point_clouds"]
    # a job no FLOP-matched control waits on: sizing a control from its record loads 8,000 clouds
    first = next(p for p in jobs if not p.family and not any(q.job.matches == p.job.key for q in jobs))
    curve = [{"epoch": e, "val_accuracy": 40.0 + e, "train_epoch_loss": 1.0 / e} for e in (1, 2, 3)]
    done = record(first, stages=[{"task": "supervised", "dataset": "parts3d", "run_id": converge.run_ids(first)[-1],
                                  "epochs": 3, "seconds": 9.0, "stop": "plateau", "curve": curve}],
                  row={**record(first).row, "arm": first.arm.label, "test_accuracy": 61.25})
    converge.write_record(done, first.job.path(tmp_path))
    seen = converge.view("04_point_clouds", tmp_path)
    assert seen.text.startswith(f"Converged profile (`python -m hipcore converge`): 1 of {len(jobs)} jobs done; ")
    assert "A partial set is no verdict" in seen.text and seen.findings == []
    assert list(seen.table["state"]).count("done") == 1 and "61.25" in list(seen.table["test top-1"])
    [ax] = seen.figure.axes
    assert list(ax.lines[0].get_ydata()) == [41.0, 42.0, 43.0] and ax.lines[1].get_marker() == "o"
    with pytest.raises(ValueError, match="no jobs in the converged queue"):
        converge.view("05_efficiency", tmp_path)


def test_notebook_07s_view_scores_its_jobs_by_miou_and_draws_their_validation_miou(tmp_path):
    jobs = [p for p in converge.plan() if p.job.notebook == "07_dense_decoding"]
    first = next(p for p in jobs if not p.family)
    curve = [{"epoch": e, "val_miou": 0.1 * e, "train_epoch_loss": 1.0 / e} for e in (1, 2, 3)]
    row = {k: v for k, v in record(first).row.items() if k != "test_accuracy"}
    done = record(first, stages=[{"task": "segment", "dataset": "collages", "run_id": converge.run_ids(first)[-1],
                                  "epochs": 3, "seconds": 9.0, "stop": "cap reached", "curve": curve}],
                  row={**row, "arm": first.arm.label, "test_miou": 11.5, "test_pixel_accuracy": 80.0})
    converge.write_record(done, first.job.path(tmp_path))
    seen = converge.view("07_dense_decoding", tmp_path)
    assert "test top-1" not in seen.table and list(seen.table["test mIoU"]).count("11.50") == 1
    [ax] = seen.figure.axes
    assert list(ax.lines[0].get_ydata()) == [0.1, 0.2, 0.30000000000000004] and ax.lines[1].get_marker() == "x"
    assert ax.get_ylabel() == "validation mIoU"
    references = [{"model": "small U-Net", "seed": 0, "test_miou": 9.0}]
    [line] = regime.baseline_lines(references, [{"arm": first.arm.label, "accuracy": 11.5}])
    assert line == "small U-Net: 9.0% test mIoU on the same training images; 0 of 1 arms below it"


def test_a_references_job_trains_the_tuned_baselines_on_its_notebooks_split_and_the_view_shows_them(tmp_path,
                                                                                                     monkeypatch):
    monkeypatch.setattr(provenance, "code_identity", lambda: {"code_fingerprint": provenance.code_fingerprint(),
                                                             "commit": "b" * 40, "verified": True})
    p = replace(planned(), job=Job("01_imagenet_comparison", converge.REFERENCES_KEY, 0), family="images")
    assert p.label == converge.REFERENCES and converge.run_ids(p)[0].startswith("references-images-supervised-")
    rec = converge.train_job(p, None, tmp_path / "runs")
    models = {r["model"] for r in rec.row["references"]}
    assert {"logistic regression", "small CNN"} <= models and rec.stages == [] and rec.flops is None
    assert "hipcore/experiments/baselines.py" in rec.code_files                 # its code stales it too
    converge.write_record(rec, p.job.path(tmp_path))
    [state] = converge.states([p], tmp_path)
    assert state.state == "done"
    arm = planned()
    converge.write_record(record(arm), arm.job.path(tmp_path))
    text = converge.references_text(converge.states([arm], tmp_path), rec.row["references"])
    assert text.startswith("\n\nReference baselines at the same split, tuned on its validation set (seeds [0]): ")
    assert "logistic regression: " in text and "arms below it" in text


def test_the_plan_holds_references_per_notebook_at_the_controls_seeds():
    jobs = [p for p in converge.plan() if p.job.key == converge.REFERENCES_KEY]
    families = {p.job.notebook: p.family for p in jobs}
    assert families == {"01_imagenet_comparison": "images", "02_flattening_ablation": "images",
                        "03_mae_positional_embeddings": "images", "04_point_clouds": "points",
                        "07_dense_decoding": "dense"}
    assert {p.job.seed for p in jobs} == {0, 1, 2}


def test_every_queued_stage_validates_on_enough_examples_for_the_rule_to_stop_a_flat_curve():
    from hipcore.data.parts3d import CLASS_NAMES
    from hipcore.train import plateau

    for p in converge.plan():
        if p.family:
            continue
        for cfg in (c for c in converge.configs(p) if c is not None):
            drawn = {"fashion_mnist": 60000, "parts3d": len(CLASS_NAMES) * cfg.data_options.get("train_per_class", 0),
                     "collages": cfg.data_options.get("train_canvases", 0)}
            assert drawn[cfg.dataset] - cfg.limit_train >= cfg.val_size, f"{p.job.title}: too few spare examples"
            rule = plateau.Rule.of(cfg)
            flat = [0.01 if cfg.task == "pretrain" else 0.5] * max(rule.window, rule.min_epochs)
            mode = "loss" if cfg.task == "pretrain" else "accuracy"        # top-1 or mIoU: a rising score
            assert plateau.reached(flat, mode, cfg.val_size, rule), f"{p.job.title} {cfg.task}: flat, never stopped"


def test_a_job_whose_estimate_exceeds_what_is_left_of_the_box_is_not_started(tmp_path, monkeypatch):
    monkeypatch.setattr(converge, "STOP_MARGIN_S", 0.0)
    monkeypatch.setattr(converge, "estimate_minutes", lambda p, per_epoch, done: 30.0 if p.job.seed == 0 else 0.0)
    long, short = planned(seed=0), planned(seed=1)
    started, lines = [], []

    def start(p, steps, runs, path):
        started.append(p.job.seed)
        return _writes(p, steps, runs, path)

    done = converge.run(1, root=tmp_path, runs=tmp_path / "runs", jobs=[long, short], start=start, log=lines.append)
    assert started == [1] and done == [short.job.title]
    assert any("about 30 min, more than the 1 left in this box; not started" in line for line in lines)


def test_a_job_sharing_its_runs_with_a_longer_one_costs_that_ones_minutes_in_the_box(tmp_path, monkeypatch):
    """03's hip_mae trains 01's runs: it adds nothing to the total, but started alone it trains
    for as long as 01's would, so a box too short for 01's job does not start it either."""
    monkeypatch.setattr(converge, "STOP_MARGIN_S", 0.0)
    monkeypatch.setattr(converge, "estimate_minutes", lambda p, per_epoch, done: 30.0)
    first = planned()
    twin = Planned(Job("03_mae_positional_embeddings", "hip_classification", 0), SMOKE, HIP_CLASSIFICATION)
    found = converge.survey(tmp_path, [first, twin])
    assert [s.minutes for s in found] == [30.0, 0.0] and found[1].train_minutes == 30.0
    assert converge.listing(found)[1] == f"{twin.job.title}: to run (same runs as {first.job.title})"
    started, lines = [], []
    done = converge.run(1, root=tmp_path, runs=tmp_path / "runs", jobs=[first, twin],
                        start=lambda *a: started.append(a), log=lines.append)
    assert started == [] and done == []
    assert sum("about 30 min, more than the 1 left in this box; not started" in line for line in lines) == 2


def test_a_record_taken_from_another_notebooks_job_is_committed_naming_that_job(tmp_path, monkeypatch):
    first = planned()
    twin = Planned(Job("03_mae_positional_embeddings", "hip_classification", 0), SMOKE, HIP_CLASSIFICATION)
    converge.write_record(record(first), first.job.path(tmp_path))
    commits = []
    monkeypatch.setattr(converge, "commit_folder", lambda folder, rec, env=None, taken_from=None:
                        commits.append((folder, rec.job["notebook"], taken_from)))
    converge.run(1, root=tmp_path, runs=tmp_path / "runs", jobs=[first, twin], commit=True, log=lambda s: None)
    assert commits == [(tmp_path / "03_mae_positional_embeddings" / "converged", "03_mae_positional_embeddings",
                        first.job)]
    assert [s.state for s in converge.states([first, twin], tmp_path)] == ["done", "done"]


def test_prior_epoch_seconds_scale_with_a_jobs_threads_and_measured_ones_are_per_thread_count():
    prior = converge.PRIOR_EPOCH_SECONDS[("fashion_mnist", "supervised")]
    assert converge.epoch_seconds([], "cpu", threads=1)[("fashion_mnist", "supervised")] == 2 * prior
    p = planned()
    one = record(p, machine={"cpu": "cpu", "torch_threads": 1})
    assert converge.epoch_seconds([one], "cpu", threads=1)[("fashion_mnist", "supervised")] == 10.0   # 30 s / 3
    assert converge.epoch_seconds([one], "cpu", threads=2)[("fashion_mnist", "supervised")] == prior


def test_a_stage_not_measured_here_is_priced_at_its_prior_times_this_machines_measured_speed():
    """Supervised epochs here took 10 s at one thread against a prior of 2 x 11: an MAE epoch,
    never measured here, is priced at its prior scaled by the same 10 / 22."""
    one = record(planned(), machine={"cpu": "cpu", "torch_threads": 1})
    per_epoch = converge.epoch_seconds([one], "cpu", threads=1)
    sup, pre = converge.PRIOR_EPOCH_SECONDS[("fashion_mnist", "supervised")], \
        converge.PRIOR_EPOCH_SECONDS[("fashion_mnist", "pretrain")]
    assert per_epoch[("fashion_mnist", "pretrain")] == pytest.approx(2 * pre * 10.0 / (2 * sup))
    assert per_epoch[("collages", "segment")] == pytest.approx(2 * converge.PRIOR_EPOCH_SECONDS[
        ("collages", "segment")] * 10.0 / (2 * sup))


def test_listing_and_the_status_estimate_at_the_threads_a_queue_job_runs_with(tmp_path, monkeypatch):
    """Without OMP_NUM_THREADS (--list, the summary) jobs are estimated at the queue's JOB_THREADS,
    as the queue runs them and writes jobs.json: a finished one-thread job's epochs price the rest,
    not the two-thread prior. CPU-hours are a job's minutes times its threads."""
    from hipcore import device

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert converge.job_threads() == converge.JOB_THREADS == 1
    p, rest = planned(seed=0), planned(seed=1)
    one = record(p, machine={"cpu": "cpu", "torch_threads": 1})       # 3 epochs in 30 s at one thread
    per_epoch = converge.epoch_seconds([one], "cpu")
    assert per_epoch[("fashion_mnist", "supervised")] == 10.0
    epochs = min(3, converge.configs(rest)[1].epochs)                  # the arm's finished epochs, under its cap
    assert converge.estimate_minutes(rest, per_epoch, [one]) == epochs * 10.0 / 60
    monkeypatch.setenv("OMP_NUM_THREADS", "2")                        # a queue of one worker on 2 cores
    assert converge.job_threads() == 2 and converge.cpu_hours(60.0, 2) == 2.0
    found = [converge.State(rest, "to run", minutes=90.0)]
    monkeypatch.setattr(device, "cpu_name", lambda: "cpu")
    converge.write_notebook(rest.job.notebook, found, tmp_path)
    status = json.loads((tmp_path / rest.job.notebook / converge.PROFILE / converge.JOBS).read_text())
    assert status["threads_per_job"] == 2 and status["jobs"][0]["minutes_left"] == 90.0
    assert f"| {rest.job.notebook[:2]} | 0 of 1 | 0 | 0 | 1 | 3.0 |" in converge.status_block(tmp_path)
    assert converge.listing(found)[-1].endswith("about 3.0 CPU-hours here (minutes are a job's wall time at "
                                                "2 threads)")


def test_a_run_in_a_cache_outside_the_checkout_is_recorded_as_runs_folder_not_a_machine_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPCORE_RUNS", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "supervised-0123abcd-95120dd77541"
    assert common.run_path(folder) == "runs/supervised-0123abcd-95120dd77541"
    assert common.run_path(folder / "last.pt") == "runs/supervised-0123abcd-95120dd77541/last.pt"
    assert common.run_path(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")   # neither: as given
