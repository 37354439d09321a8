"""Every input is checked before work starts, and what a run leaves is whole: probes of the
command line, TrainConfig, reproduce-gpu, provenance variables, a run's lock after its parent
is killed, checkpoint-upgrade and metrics.csv on a full disk. Each bad input ends in one line
naming the option or file (exit code 2 from the command line), never a traceback."""

import errno
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from PIL import Image

from hipcore import cli, gpu_reproduce, provenance
from hipcore.data import load_dataset
from hipcore.errors import DiskFullError
from hipcore.experiments import common
from hipcore.train import metrics as metrics_module
from hipcore.train.config import TrainConfig
from hipcore.train.rundir import RunDirError, claim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_line_error(capsys, argv) -> str:
    """Run the command line in this process; it must exit 2 with one `error:` line."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ---- train: --set and --data-option ----

@pytest.mark.parametrize("argv, message", [
    (["--set", "blocks=5"], "model option blocks must be a list of blocks"),
    (["--set", 'blocks=[{"groups": 1}]'], "model option blocks[0] {'groups': 1}: missing latents, channels"),
    (["--set", "blocks=[1]"], "model option blocks[0] must be a dict of BlockConfig fields"),
    (["--set", "blocks=[]"], "model option blocks must be a list of blocks"),
    (["--set", 'blocks=[{"groups": 1, "latents": 4, "channels": 8, "self_attends": 1, "heads": 2, "x": 1}]'],
     "unknown field(s) x"),
    (["--set", 'blocks=[{"groups": 2, "latents": 4, "channels": 8, "self_attends": 1, "heads": 2}]'],
     "the processor (block 0) must have 1 group"),
    (["--set", "embed_channels=true"], "embed_channels must be a positive int, got True"),
    (["--set", "dropout=NaN"], "dropout must be a number in [0, 1)"),
    (["--set", "regroup=[1]"], "regroup must be one of"),
    (["--set", "widht=3"], "unknown model option(s) ['widht']"),
    (["--device", "tpu"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got 'tpu'"),
    (["--variant", "small9"], "--variant 'small9': unknown; choose one of"),
    (["--variant", "no/such/file.json"], "--variant no/such/file.json: no such file"),
    (["--lr", "0.001", "--min-lr", "0.01"], "min_lr must be in [0, 0.001], got 0.01"),
    (["--plateau"], "plateau stops on the validation set: set val_fraction > 0 with it"),
    (["--data-option", "workers=4"], "fashion_mnist has no option 'workers'"),
    (["--data-option", "hflip=1"], "option hflip must be true or false"),
])
def test_train_refuses_bad_settings_before_any_work(tmp_path, capsys, argv, message):
    err = one_line_error(capsys, ["train", *argv, "--max-steps", "1", "--run-dir", str(tmp_path / "run")])
    assert message in err, err
    assert not (tmp_path / "run").exists()                        # no run folder: nothing started


def test_a_cuda_device_this_machine_lacks_is_refused(tmp_path, capsys):
    err = one_line_error(capsys, ["train", "--device", f"cuda:{torch.cuda.device_count()}", "--max-steps", "1",
                                  "--run-dir", str(tmp_path / "run")])
    assert "asked for, but torch sees" in err and not (tmp_path / "run").exists()


def write_images(root):
    for split in ("train", "val"):
        for i, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (12, 12), (100 * i, 0, 0)).save(root / split / name / "a.png")
    return root


def test_imagefolder_workers_stay_within_the_machines_cores(tmp_path, capsys):
    root = write_images(tmp_path / "images")
    cores = os.cpu_count()
    for workers in (100_000, cores + 1, -1, True, 2.0, "4"):
        with pytest.raises(ValueError, match=f"workers must be a whole number from 0 to {cores}"):
            load_dataset("imagefolder", "train", data_dir=str(root), resolution=8, workers=workers,
                         cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))
    data = load_dataset("imagefolder", "train", data_dir=str(root), resolution=8, workers=cores,
                        cache_dir=str(tmp_path / "cache"))
    assert len(data) == 2
    err = one_line_error(capsys, ["train", "--dataset", "imagefolder", "--data-dir", str(root),
                                  "--data-option", "resolution=8", "--data-option", "workers=100000",
                                  "--max-steps", "1", "--run-dir", str(tmp_path / "run")])
    assert f"workers must be a whole number from 0 to {cores}" in err and not (tmp_path / "run").exists()


# ---- TrainConfig: booleans are not numbers, NaN and infinities no value ----

@pytest.mark.parametrize("field, value, message", [
    ("epochs", True, "epochs must be a positive int, got True (at most 100000)"),
    ("epochs", 1.0, "epochs must be a positive int, got 1.0"),
    ("epochs", 10**6, "epochs must be a positive int, got 1000000 (at most 100000)"),
    ("plateau_window", True, "plateau_window must be an int >= 3, got True (at most 100000)"),
    ("val_size", True, "val_size must be a positive int, got True"),
    ("min_epochs", False, "min_epochs must be"),
    ("batch_size", True, "batch_size must be a positive int, got True"),
    ("max_steps", True, "max_steps must be a positive int or None"),
    ("limit_train", 0, "limit_train must be a positive int or None"),
    ("checkpoint_every", True, "checkpoint_every must be an int >= 0"),
    ("warmup_steps", -1, "warmup_steps must be an int >= 0 or None"),
    ("seed", True, "seed must be a whole number in [0, 2**63)"),
    ("seed", 2**64, "seed must be a whole number in [0, 2**63)"),
    ("lr", math.nan, "lr must be a finite number above 0, got nan"),
    ("lr", math.inf, "lr must be a finite number above 0, got inf"),
    ("lr", True, "lr must be a finite number above 0, got True"),
    ("weight_decay", -math.inf, "weight_decay must be a finite number at least 0"),
    ("clip_grad", math.inf, "clip_grad must be a finite number above 0 or None"),
    ("label_smoothing", math.nan, "label_smoothing must be a finite number in [0, 1)"),
    ("mask_ratio", True, "mask_ratio must be a finite number in (0, 1)"),
    ("val_fraction", math.nan, "val_fraction must be a finite number in [0, 1)"),
    ("plateau_slope", math.inf, "plateau_slope must be a finite number in [0, 100]"),
    ("plateau_loss_slope", True, "plateau_loss_slope must be a finite number in [0, 1]"),
    ("plateau_confidence", 1.0, "plateau_confidence must be in [0.5, 1), got 1.0"),
    ("warmup_epochs", math.nan, "warmup_epochs must be a number of epochs in [0, 100000]"),
    ("betas", (math.nan, 0.9), "betas[0] must be a finite number in [0, 1)"),
    ("betas", 0.9, "betas must be two numbers in [0, 1)"),
    ("augment", 1, "augment must be True or False, got 1"),
    ("plateau", "yes", "plateau must be True or False"),
    ("quiet", None, "quiet must be True or False"),
    ("device", "cuda0", "device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>'"),
    ("precision", ["fp32"], "precision must be one of"),
    ("data_options", [("workers", 1)], "data_options must be a mapping"),
    ("model", "fourier", "model must be a mapping"),
    ("variant", "", "variant must be a name"),
    ("run_dir", 3, "run_dir must be text or None"),
])
def test_train_config_checks_every_fields_type_and_range(field, value, message):
    with pytest.raises(ValueError) as caught:
        TrainConfig(**{field: value})
    assert message in str(caught.value), str(caught.value)


def test_whole_numbers_and_their_neighbours_are_accepted():
    cfg = TrainConfig(epochs=1, plateau_window=3, lr=1, min_lr=0, seed=2**63 - 1, clip_grad=None,
                      model={"blocks": [{"groups": 1, "latents": 4, "channels": 8, "self_attends": 1, "heads": 2}]})
    assert cfg.epochs == 1 and cfg.seed == 2**63 - 1
    assert TrainConfig(epochs=1).run_id != TrainConfig(epochs=2).run_id


def test_a_profile_row_holding_a_boolean_count_is_refused():
    row = {**common.IMAGE_TABLE["smoke"], "epochs": True}
    with pytest.raises(ValueError, match="epochs must be a positive int, got True"):
        common.train_configs(gpu_reproduce.ARMS["hip_classification"], 0, row, dataset="fashion_mnist")


# ---- reproduce-gpu: every option before any job ----

@pytest.mark.parametrize("argv, message", [
    (["--budget-seconds", "nan"], "--budget-seconds must be a finite number of seconds above the 20 s"),
    (["--budget-seconds", "inf"], "--budget-seconds must be a finite number of seconds"),
    (["--budget-seconds", "10"], "--budget-seconds must be a finite number of seconds above the 20 s"),
    (["--budget-seconds", "60", "--device", "tpu"], "--device must be cpu, cuda or cuda:<index>, got 'tpu'"),
    (["--budget-seconds", "60", "--device", "auto"], "--device must be cpu, cuda or cuda:<index>"),
    (["--budget-seconds", "60", "--seeds", "99999999999999999999"], "--seeds must be whole numbers in [0, 2**63)"),
    (["--budget-seconds", "60", "--seeds", "1", "1"], "each once"),
])
def test_reproduce_gpu_refuses_bad_options_before_any_job(tmp_path, capsys, argv, message):
    err = one_line_error(capsys, ["reproduce-gpu", "--profile", "smoke", "--out", str(tmp_path / "out"),
                                  "--device", "cpu", *argv])
    assert message in err, err
    assert not (tmp_path / "out").exists()                         # no folder, no job


def test_reproduce_gpu_refuses_a_missing_cuda_device_and_a_bad_commit_before_any_job(tmp_path, capsys, monkeypatch):
    device = f"cuda:{torch.cuda.device_count()}"
    err = one_line_error(capsys, ["reproduce-gpu", "--profile", "smoke", "--out", str(tmp_path / "out"),
                                  "--device", device, "--budget-seconds", "60"])
    assert "asked for, but torch sees" in err and not (tmp_path / "out").exists()
    monkeypatch.setenv(provenance.COMMIT_ENV, "HEAD")
    err = one_line_error(capsys, ["reproduce-gpu", "--profile", "smoke", "--out", str(tmp_path / "out"),
                                  "--device", "cpu", "--budget-seconds", "60"])
    assert "$HIPCORE_COMMIT must be a full commit id" in err and not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize("text, message", [
    ("{}", "a row lacks arm, seed"),
    ("[1, 2]", "a row lacks arm, seed"),
    ("{not json", "not a readable row"),
])
def test_a_damaged_row_is_refused_naming_its_file(tmp_path, text, message):
    job = gpu_reproduce.Job("hip_mae", 0)
    path = tmp_path / f"{job.name}.json"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        gpu_reproduce.read_row(path, job)
    assert message in str(caught.value) and str(path) in str(caught.value)


# ---- provenance variables ----

def head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("commit, message", [
    ("HEAD", "$HIPCORE_COMMIT must be a full commit id (40 hex digits"),
    ("abc123", "$HIPCORE_COMMIT must be a full commit id"),
    ("a" * 40 + "\n## Injected heading\n", "$HIPCORE_COMMIT must be a full commit id"),
    ("A" * 40, "$HIPCORE_COMMIT must be a full commit id"),
])
def test_a_named_commit_must_be_a_full_commit_id(commit, message):
    environ = {provenance.COMMIT_ENV: commit, provenance.FINGERPRINT_ENV: provenance.result_fingerprint()}
    with pytest.raises(provenance.ProvenanceError) as caught:
        provenance.code_identity(environ=environ)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_fingerprint_variable_is_refused():
    environ = {provenance.COMMIT_ENV: "f" * 40, provenance.FINGERPRINT_ENV: "x\n## heading"}
    with pytest.raises(provenance.ProvenanceError, match=r"\$HIPCORE_CODE_FINGERPRINT must be a code fingerprint"):
        provenance.code_identity(environ=environ)


def test_a_commit_git_holds_is_verified_only_on_the_history():
    commit = head()
    assert provenance.on_history(commit) is True                 # the tests run in a checkout
    tree = subprocess.run(["git", "rev-parse", "HEAD^{tree}"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert provenance.on_history(tree) is None                   # a tree is no commit
    identity = provenance.code_identity(environ={provenance.COMMIT_ENV: tree})
    assert identity["verified"] is False and "no $HIPCORE_CODE_FINGERPRINT was given" in identity["unverified"]


def test_an_unknown_full_commit_with_the_right_fingerprint_is_verified():
    named = "0123456789abcdef" * 2 + "01234567"
    identity = provenance.code_identity(environ={provenance.COMMIT_ENV: named,
                                                 provenance.FINGERPRINT_ENV: provenance.result_fingerprint()})
    assert identity["verified"] is True and identity["commit"] == named


def test_reading_the_git_state_takes_no_index_lock(tmp_path):
    """git status refreshes (rewrites) the index when a file's stat changed; with optional locks
    off it leaves the checkout's index, and its lock, alone."""
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})
    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-qm", "a")
    index = tmp_path / ".git" / "index"
    time.sleep(1.1)
    os.utime(tmp_path / "a.py")                                  # same bytes, a new stat
    before = index.stat().st_mtime_ns
    state = provenance.git_state(tmp_path)
    assert state["dirty"] is False and index.stat().st_mtime_ns == before


# ---- a run's lock after its parent is killed ----

def run_parent(tmp_path, body: str) -> tuple[subprocess.Popen, int]:
    """A parent process that claims tmp_path/run, starts a child with `body` and prints the
    child's pid; returns (parent, child pid)."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(body))
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run")], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    line = parent.stdout.readline()
    assert line.startswith("child "), line
    return parent, int(line.split()[1])


def gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def kill_the_parent(tmp_path, parent: subprocess.Popen, child: int, within_s: float) -> bool:
    """SIGKILL the parent holding tmp_path/run, check its run is free again, and return whether
    the child ended within `within_s`; both are killed in the end."""
    try:
        with pytest.raises(RunDirError, match="in use by another run"):
            with claim(tmp_path / "run"):
                pass
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        with claim(tmp_path / "run", wait_s=5):              # the run's lock went with the parent
            pass
        return gone(child, within_s)
    finally:
        parent.kill()
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc")
def test_a_forked_child_never_holds_its_parents_run_lock(tmp_path):
    parent, child = run_parent(tmp_path, """
        import multiprocessing, sys, time
        from hipcore.train.rundir import claim
        with claim(sys.argv[1]):
            child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
            child.start()
            print("child", child.pid, flush=True)
            time.sleep(60)
    """)
    assert not kill_the_parent(tmp_path, parent, child, 0.5)   # the orphan lives on, without the run's lock


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl")
def test_a_job_dies_with_the_command_that_started_it(tmp_path):
    parent, child = run_parent(tmp_path, """
        import os, subprocess, sys, time
        code = ("import os, sys, time; from hipcore.processes import die_with_parent; "
                "from hipcore.train.rundir import claim; "
                f"die_with_parent({os.getpid()}); "
                "c = claim(sys.argv[1]); c.__enter__(); print('locked', flush=True); time.sleep(60)")
        child = subprocess.Popen([sys.executable, "-c", code, sys.argv[1]], stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        print("child", child.pid, flush=True)
        time.sleep(60)
    """)
    assert kill_the_parent(tmp_path, parent, child, 10)        # the job ended with its command


# ---- checkpoint-upgrade, metrics.csv ----

@pytest.mark.parametrize("model", [[1, 2], {"w": [1.0]}, "weights", {3: torch.zeros(1)}])
def test_checkpoint_upgrade_refuses_a_model_that_is_not_named_tensors(tmp_path, capsys, model):
    path = tmp_path / "last.pt"
    torch.save({"format": 1, "model": model, "step": 3}, path)
    err = one_line_error(capsys, ["checkpoint-upgrade", str(path)])
    assert str(path) in err and "not a dict of named weight tensors" in err


def test_a_full_disk_while_appending_metrics_leaves_no_half_row(tmp_path, monkeypatch):
    logger = metrics_module.MetricsLogger(tmp_path / "metrics.csv", "run", 0)
    logger.start()
    logger.log(1, 10, "train", loss=0.5)
    whole = (tmp_path / "metrics.csv").read_text()
    real_write, calls = os.write, []

    def half_then_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[: len(data) // 2])       # the first bytes land ...
        raise OSError(errno.ENOSPC, "No space left on device")   # ... then the disk is full

    monkeypatch.setattr(metrics_module.os, "write", half_then_full)
    with pytest.raises(DiskFullError) as caught:
        logger.log(2, 20, "test", loss=0.25, accuracy=0.75)
    message = str(caught.value)
    assert "metrics.csv" in message and "disk full" in message and "Errno" not in message
    assert (tmp_path / "metrics.csv").read_text() == whole and len(calls) == 2
    monkeypatch.setattr(metrics_module.os, "write", real_write)
    logger.log(2, 20, "test", loss=0.25)                         # once there is space, rows go on whole
    logger.close()
    rows = metrics_module.read_metrics(tmp_path / "metrics.csv")
    assert [(r["step"], r["metric"], r["value"]) for r in rows] == [(10, "loss", 0.5), (20, "loss", 0.25)]


@pytest.mark.parametrize("change, message", [
    ({"epochs": True}, "profile 'smoke': epochs must be a positive int, got True"),
    ({"plateau_window": True}, "profile 'smoke': plateau_window must be an int >= 3, got True"),
    ({"lr": math.inf}, "profile 'smoke': lr must be a finite number above 0, got inf"),
    ({"pretrain_epochs": 2.5}, "profile 'smoke': epochs must be a positive int, got 2.5"),
    ({"pretrain_lr": math.nan}, "profile 'smoke': lr must be a finite number above 0, got nan"),
    ({"seeds": [0, 0]}, "profile 'smoke': seeds must be whole numbers in [0, 2**63), each once"),
    ({"seeds": [2**64]}, "profile 'smoke': seeds must be whole numbers in [0, 2**63)"),
])
def test_profile_rows_are_checked_value_by_value(change, message):
    with pytest.raises(ValueError) as caught:
        common.check_profiles({"smoke": {**common.IMAGE_PROFILES["smoke"], **change}})
    assert message in str(caught.value), str(caught.value)
    common.check_profiles({"smoke": common.IMAGE_PROFILES["smoke"]})        # the shipped row passes


def test_imagefolder_resolution_is_a_whole_number_not_a_boolean(tmp_path):
    root = write_images(tmp_path / "images")
    for resolution in (True, 8.0, 0):
        with pytest.raises(ValueError, match="resolution must be a positive int"):
            load_dataset("imagefolder", "train", data_dir=str(root), resolution=resolution,
                         cache_dir=str(tmp_path / "cache"))


def test_sweep_refuses_a_bad_commit_variable_before_any_kernel(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(provenance.COMMIT_ENV, "main")
    err = one_line_error(capsys, ["sweep", "00", "-p", "ordering", "raster", "--out", str(tmp_path / "out")])
    assert "$HIPCORE_COMMIT must be a full commit id" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [
    ('{"blocks": 3}', "model option blocks must be a list of blocks"),
    ("nope", "is not JSON"),
    ("[1]", "must hold a dict of HiPConfig fields, got list"),
    ('{"blocks": [{"groups": 1}]}', "blocks[0] {'groups': 1}: missing latents"),
    ('{"blocks": [{"groups": 1, "latents": 4, "channels": 8, "self_attends": 1, "heads": 2}], "widht": 1}',
     "unknown field(s) ['widht']"),
])
def test_a_variant_file_is_checked_naming_it(tmp_path, capsys, text, message):
    path = tmp_path / "variant.json"
    path.write_text(text)
    err = one_line_error(capsys, ["train", "--variant", str(path), "--max-steps", "1",
                                  "--run-dir", str(tmp_path / "r")])
    assert f"variant file {path}" in err and message in err, err
    assert not (tmp_path / "r").exists()
