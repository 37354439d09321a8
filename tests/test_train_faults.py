"""Faults a run must survive or refuse clearly: corrupt, tampered, legacy and lost checkpoints,
two writers, run directories spelled, moved, empty or unusable, transfers across inputs,
changed data, and command-line values that must not reach the loop."""

import json
import multiprocessing
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import torch
from test_train_engine import TINY, Toy, config, run

from hipcore import ModalitySpec
from hipcore.cli import main as hipcore_main
from hipcore.config import modalities_to_dict
from hipcore.train import ConfigMismatchError, engine, read_metrics, rundir, train
from hipcore.train import checkpoint as ckpt
from hipcore.train.transfer import TransferMismatchError, transfer

EXCEPTION_NAME = re.compile(r"\b\w+(Error|Exception)\b|Traceback")


class Stop(Exception):
    """Stands for a kill: the loop stops between steps, leaving what it last checkpointed."""


class Killable(Toy):
    """Toy data that stops the run at its `stop_at`-th training batch, with a fingerprint."""

    def __init__(self, n, seed=0, stop_at=None, fingerprint="toy-v1", **kw):
        super().__init__(n, seed, **kw)
        self.stop_at, self.fingerprint = stop_at, fingerprint

    def get_batch(self, indices, *, train=False, generator=None):
        if train and self.stop_at is not None and self.train_batches + 1 >= self.stop_at:
            raise Stop
        return super().get_batch(indices, train=train, generator=generator)


class DiesWhenTested(Killable):
    """Toy test data whose evaluation is killed: the run stops in its final test evaluation."""

    def get_batch(self, indices, *, train=False, generator=None):
        raise Stop


def run_until(cfg, stop_at=None, fingerprint="toy-v1", **kw):
    data = dict(train_data=Killable(64, 0, stop_at, fingerprint, **kw),
                test_data=Killable(32, 1, None, fingerprint, **kw))
    if stop_at is None:
        return train(cfg, **data)
    with pytest.raises(Stop):
        train(cfg, **data)


def files(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file() and p.name != rundir.LOCK_NAME}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run (8 steps; best.pt and last.pt) to copy and damage."""
    tmp = tmp_path_factory.mktemp("finished")
    result = run(config(tmp, "run"))
    return tmp / "run", result


def copy_run(finished, tmp_path, name="run"):
    target = tmp_path / name
    shutil.copytree(finished[0], target)
    return target


def flip_tensor_byte(path):
    """Flip one byte inside the first tensor's data: the archive itself stays readable."""
    blob = bytearray(path.read_bytes())
    entry = next(i for i in zipfile.ZipFile(path).infolist() if "/data/" in i.filename)
    name_len, extra_len = struct.unpack("<HH", blob[entry.header_offset + 26:entry.header_offset + 30])
    blob[entry.header_offset + 30 + name_len + extra_len + 4] ^= 0xFF
    path.write_bytes(bytes(blob))


# ---- checkpoints ----

@pytest.mark.parametrize("damage", ["garbage", "random", "empty", "truncated", "flipped"])
def test_a_damaged_last_checkpoint_is_named_and_the_run_continues_from_best(finished, tmp_path, damage):
    run_dir = copy_run(finished, tmp_path)
    last = run_dir / "last.pt"
    good = last.read_bytes()
    if damage == "flipped":
        flip_tensor_byte(last)
    else:
        last.write_bytes({"garbage": b"garbage\n", "random": os.urandom(4096), "empty": b"",
                          "truncated": good[:len(good) // 2]}[damage])
    before = files(run_dir)
    with pytest.raises(ckpt.CheckpointError) as error:
        run(config(tmp_path, "run"))
    message = str(error.value)
    assert str(last) in message and "weights_only" not in message
    assert ("digest" if damage == "flipped" else "empty" if damage == "empty" else "unreadable") in message
    assert files(run_dir) == before                                  # nothing touched
    command = re.search(r"\n  (mv .*)\n", message).group(1)            # the exact way on
    subprocess.run(command, shell=True, check=True)
    resumed = run(config(tmp_path, "run"))
    assert resumed.metrics == finished[1].metrics and resumed.steps == 8
    assert (run_dir / "metrics.csv").read_bytes() == (finished[0] / "metrics.csv").read_bytes()


def test_a_foreign_file_or_folder_as_init_from_is_refused_naming_it(finished, tmp_path):
    for source in (finished[0] / "metrics.csv", finished[0]):
        with pytest.raises(ckpt.CheckpointError, match=re.escape(str(source)) + r".*\n--init-from needs an intact"):
            run(config(tmp_path, "ft", init_from=str(source), max_steps=1))
    with pytest.raises(ValueError, match="is a supervised checkpoint, not an MAE pretraining's"):
        run(config(tmp_path, "ft", init_from=str(finished[0] / "last.pt"), max_steps=1))   # at b709275: taken
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a hipcore training checkpoint"):
        run(config(tmp_path, "ft", init_from=str(tmp_path / "other.pt"), max_steps=1))
    assert not (tmp_path / "ft" / "last.pt").exists()


def test_a_checkpoint_without_a_digest_resumes_bit_exactly_once_upgraded_explicitly(tmp_path, capsys):
    reference = run_until(config(tmp_path, "reference"))
    run_until(config(tmp_path, "legacy"), stop_at=6)                # last.pt at the end of epoch 1
    last = tmp_path / "legacy" / "last.pt"
    state = torch.load(last, weights_only=True)
    old = {k: v for k, v in state.items() if k not in ("digest", "data", "source", "run_id")}
    torch.save({**old, "format": ckpt.LEGACY_FORMAT}, last)         # as commit c1ee28c wrote them
    (tmp_path / "legacy" / "run.json").unlink()
    with pytest.raises(ckpt.CheckpointError, match="no digest: it was written before digests existed.*"
                                                   "checkpoint-upgrade"):
        ckpt.load(last, training=True)                              # never silently
    assert hipcore_main(["checkpoint-upgrade", str(last)]) == 0
    assert "checked and saved again with its digest" in capsys.readouterr().out
    assert ckpt.load(last, training=True)["step"] == 4
    resumed = run_until(config(tmp_path, "legacy"))
    assert resumed.metrics == reference.metrics
    assert (tmp_path / "legacy" / "metrics.csv").read_text() == (tmp_path / "reference" / "metrics.csv").read_text()


def test_a_checkpoint_whose_digest_was_deleted_is_refused_as_modified(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    last = run_dir / "last.pt"
    state = torch.load(last, weights_only=True)
    del state["digest"]                                             # at b709275: loaded as "legacy"
    torch.save(state, last)
    with pytest.raises(ckpt.CheckpointError, match="was modified: its digest is missing"):
        ckpt.load(last, training=True)
    with pytest.raises(ckpt.CheckpointError, match="modified"):
        run(config(tmp_path, "ft", init_from=str(last), max_steps=1))
    with pytest.raises(ckpt.CheckpointError, match="was modified, not written before digests"):
        ckpt.upgrade_legacy(last)


def test_a_lost_last_checkpoint_is_said_and_metrics_are_kept(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    (run_dir / "last.pt").unlink()
    before = files(run_dir)
    with pytest.raises(rundir.RunDirError, match=r"last.pt is missing.*\n.*best.pt \(step \d\) is intact") as error:
        run(config(tmp_path, "run"))
    assert files(run_dir) == before
    subprocess.run(re.search(r"\n  (cp .*)\n", str(error.value)).group(1), shell=True, check=True)
    assert run(config(tmp_path, "run")).metrics == finished[1].metrics
    hostile = copy_run(finished, tmp_path, "run'; touch PWNED; echo '")      # a name that smuggles a command
    (hostile / "last.pt").write_bytes(b"garbage")
    advice = ckpt.remedy(hostile / "last.pt")
    subprocess.run(re.search(r"\n  (mv .*)\n", advice).group(1), shell=True, check=True, cwd=tmp_path)
    assert not (tmp_path / "PWNED").exists() and ckpt.intact(hostile / "last.pt")         # pasted safely
    folder = copy_run(finished, tmp_path, "folder")
    (folder / "last.pt").unlink()
    (folder / "last.pt").mkdir()                                    # at b709275: reported as "missing"
    with pytest.raises(rundir.RunDirError, match=r"last.pt is a folder, not a checkpoint"):
        run(config(tmp_path, "folder"))
    early = config(tmp_path, "early", epochs=1, log_every=1)        # killed before any checkpoint:
    run_until(early, stop_at=3)                                     # starting over loses nothing
    assert not (tmp_path / "early" / "last.pt").exists()
    assert run_until(early).steps == 4


def test_a_run_killed_before_or_during_its_final_test_evaluation_completes_it_on_resume(tmp_path, monkeypatch):
    """Killed after its last step (every epoch checkpointed) but before the test evaluation
    was recorded: the resumed run evaluates the test set once and ends bit-exactly."""
    real_save = engine.save

    def dies_after_logging_the_test(run, *paths):          # between the test row and last.pt
        if run.state.test:
            raise Stop
        real_save(run, *paths)
    for val in (0.0, 0.25):
        reference = run_until(config(tmp_path, f"reference{val}", val_fraction=val))
        for how in ("during", "after"):
            cfg = config(tmp_path, f"{how}{val}", val_fraction=val)
            data = dict(train_data=Killable(64, 0), test_data=(DiesWhenTested if how == "during" else Killable)(32, 1))
            monkeypatch.setattr(engine, "save", dies_after_logging_the_test if how == "after" else real_save)
            with pytest.raises(Stop):
                train(cfg, **data)
            monkeypatch.setattr(engine, "save", real_save)
            state = ckpt.load(tmp_path / f"{how}{val}" / "last.pt")
            assert state["step"] == reference.steps and state["run"]["test"] == {}    # trained, not tested
            resumed = run_until(cfg)
            assert resumed.metrics == reference.metrics and resumed.best == reference.best
            assert ((tmp_path / f"{how}{val}" / "metrics.csv").read_bytes()
                    == (tmp_path / f"reference{val}" / "metrics.csv").read_bytes())      # one test row
            timing = read_metrics(tmp_path / f"{how}{val}" / "timing.csv")
            assert sum(r["split"] == "test" for r in timing) == 1
            again, final = ckpt.load(resumed.last_checkpoint), ckpt.load(reference.last_checkpoint)
            assert all(torch.equal(again["model"][k], final["model"][k]) for k in final["model"])


# ---- one writer ----

def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_never_blocks(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    before = files(run_dir)
    with rundir.claim(run_dir):
        with pytest.raises(rundir.RunDirError, match=rf"in use by another run \(pid {os.getpid()} on host "):
            run(config(tmp_path, "run", lr=1e-2))
    assert files(run_dir) == before
    ready, held = multiprocessing.get_context("fork").Pipe()
    holder = multiprocessing.get_context("fork").Process(target=hold, args=(run_dir, held))
    holder.start()                                  # another process, killed while it holds the lock
    try:
        assert ready.recv() == "held"
        with pytest.raises(rundir.RunDirError, match=rf"pid {holder.pid} on host .* started "):
            run(config(tmp_path, "run"))
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    assert run(config(tmp_path, "run")).metrics == finished[1].metrics    # the dead holder's lock is gone


def test_a_link_planted_at_the_lock_file_is_refused_and_its_target_left_alone(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / rundir.LOCK_NAME).symlink_to(victim)
    with pytest.raises(rundir.RunDirError, match=r"is a symbolic link, not this run's lock file"):
        with rundir.claim(run_dir):
            pass
    assert victim.read_text() == "keep me\n"
    (run_dir / rundir.LOCK_NAME).unlink()
    (run_dir / rundir.LOCK_NAME).symlink_to(tmp_path / "nothing-there")         # dangling: not created
    with pytest.raises(rundir.RunDirError, match="symbolic link"):
        with rundir.claim(run_dir):
            pass
    assert not (tmp_path / "nothing-there").exists()


def hold(run_dir, conn):
    with rundir.claim(run_dir):
        conn.send("held")
        time.sleep(120)


# ---- what a run directory is ----

def test_spellings_of_a_run_directory_are_one_run_and_a_moved_run_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reference = run_until(config(tmp_path, "reference"))
    run_until(config(tmp_path, "x").replace(run_dir="r"), stop_at=6)
    for spelling in ("./r", "r/", str(tmp_path / "r"), "r/../r"):    # each resumes (no mismatch)
        run_until(config(tmp_path, "x").replace(run_dir=spelling), stop_at=2)
    (tmp_path / "elsewhere").mkdir()
    os.rename(tmp_path / "r", tmp_path / "elsewhere" / "moved")
    resumed = run_until(config(tmp_path, "x").replace(run_dir="elsewhere/moved"))
    assert resumed.metrics == reference.metrics
    assert [r for r in read_metrics("elsewhere/moved")] == read_metrics(tmp_path / "reference")


def test_a_moved_fine_tuning_run_resumes_and_another_pretraining_is_refused(tmp_path):
    def configs(root):
        mae = config(root, "mae", task="pretrain", max_steps=2)
        return mae, config(root, "ft", init_from=str(root / "mae" / "last.pt"), transfer="positions")

    mae, ft = configs(tmp_path / "a")
    run_until(mae)
    reference = run_until(ft.replace(run_dir=str(tmp_path / "a" / "reference")))
    run_until(ft, stop_at=6)
    os.rename(tmp_path / "a", tmp_path / "b")
    mae, ft = configs(tmp_path / "b")
    assert ft.run_id == configs(tmp_path / "a")[1].run_id          # the notebooks' cache key too
    assert run_until(ft).metrics == reference.metrics
    other = config(tmp_path / "c", "mae", task="pretrain", max_steps=2, seed=5)
    run_until(other)
    with pytest.raises(ConfigMismatchError, match=r"init_from: run pretrain-\w+ step 2 digest \w+ .* -> run pretrain"):
        run_until(ft.replace(init_from=str(tmp_path / "c" / "mae" / "last.pt")))


def test_empty_file_or_unwritable_run_directories_are_refused_and_nothing_else_is_touched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = {".notes.tmp1": "keep", "metrics.csv": "someone's table", ".x.tmp": "keep"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    for empty in ("", "  "):
        with pytest.raises(rundir.RunDirError, match="run_dir is empty"):
            run(config(tmp_path, "x").replace(run_dir=empty))
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(rundir.RunDirError, match="afile is a file, not a folder"):
        run(config(tmp_path, "afile"))
    assert {n: (tmp_path / n).read_text() for n in mine} == mine and (tmp_path / "afile").read_text() == "not a folder"

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(rundir.RunDirError, match="cannot write to run_dir .*ro .Permission denied.: make it writable"):
        run(config(tmp_path, "ro"))


def test_cleanup_removes_only_the_loops_own_temporary_files(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    theirs = [run_dir / ".notes.tmp7", run_dir / ".data.tmp", run_dir / "x.hipcore-tmp"]
    ours = [run_dir / f".last.pt.{os.getpid() + 1}.hipcore-tmp", run_dir / ".last.pt.tmp123"]
    for p in theirs + ours:
        p.write_text("x")
    run(config(tmp_path, "run"))
    assert all(p.exists() for p in theirs) and not any(p.exists() for p in ours)


# ---- transfers ----

def _model(modalities, **kw):
    from hipcore import HiP
    from hipcore.train.engine import model_config
    return HiP(model_config(config(Path("."), model={**TINY, **kw}), 4), modalities)


def test_a_transfer_across_orderings_grids_or_modalities_names_both_sides():
    raster = {"image": ModalitySpec(64, 1, (8, 8))}

    def state(model):
        return {"model": model.state_dict(), "model_config": model.config.to_dict(),
                "modalities": modalities_to_dict(model.modalities)}

    mae = state(_model(raster))
    shuffled = {"image": ModalitySpec(64, 1, (8, 8), torch.randperm(64, generator=torch.Generator().manual_seed(0)))}
    for modalities, message in ((shuffled, r"image element order raster \(identity\) in the checkpoint, \[\d+, "),
                                ({"image": ModalitySpec(64, 1, (4, 16))},
                                 r"image grid \(8, 8\) in the checkpoint, \(4, 16\) here"),
                                ({"image": ModalitySpec(64, 3, (8, 8))}, r"image channels 1 in the checkpoint, 3 here"),
                                ({"pixels": ModalitySpec(64, 1, (8, 8))},
                                 r"modalities \['image'\] in the checkpoint, \['pixels'\] here")):
        for mode in ("all", "positions"):
            with pytest.raises(TransferMismatchError, match=message):
                transfer(_model(modalities), mae, mode, name="mae/last.pt")
    assert transfer(_model({"image": ModalitySpec(64, 1, (8, 8), torch.arange(64))}), mae, "positions")


# ---- changed data ----

def test_resuming_on_changed_data_is_refused_showing_both_fingerprints(tmp_path):
    cfg = config(tmp_path, "run")
    run_until(cfg, stop_at=6, fingerprint="aaaa")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data"] == {"train": "aaaa", "test": "aaaa"}
    before = files(tmp_path / "run")
    with pytest.raises(ConfigMismatchError, match="train data fingerprint: aaaa -> bbbb"):
        run_until(cfg, fingerprint="bbbb")
    assert files(tmp_path / "run") == before
    assert run_until(cfg, fingerprint="aaaa").steps == 8


# ---- the command line ----

def test_the_command_line_names_a_corrupt_checkpoint_without_a_traceback(tmp_path, capsys):
    variant = tmp_path / "tiny.json"
    variant.write_text(json.dumps(TINY))
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "last.pt").write_text("garbage\n")
    argv = ["train", "--dataset", "shapes3d", "--data-option", "num_points=16", "--data-option", "train_per_class=2",
            "--data-option", "test_per_class=1", "--variant", str(variant), "--batch-size", "4", "--quiet",
            "--max-steps", "1"]
    assert hipcore_main(argv + ["--run-dir", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert f"error: checkpoint {tmp_path / 'g' / 'last.pt'} is unreadable" in err
    assert "weights_only" not in err and not EXCEPTION_NAME.search(err), err
    assert hipcore_main(argv + ["--run-dir", str(tmp_path / "ft"), "--init-from", str(tmp_path / "g" / "last.pt")]) == 2
    assert "--init-from needs an intact MAE checkpoint" in capsys.readouterr().err


# ---- a full disk ----

@pytest.mark.parametrize("how", ["errno", "torch writer"])
def test_a_full_disk_during_a_checkpoint_is_one_line_naming_the_folder_and_keeps_the_old_one(finished, tmp_path,
                                                                                          monkeypatch, how):
    import errno

    from hipcore import files as hfiles
    from hipcore.errors import DiskFullError

    target = copy_run(finished, tmp_path) / "last.pt"
    before = target.read_bytes()
    state = torch.load(target, weights_only=True)

    def failing_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        if how == "errno":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    if how == "torch writer":                                # torch says nothing of space: the folder does
        monkeypatch.setattr(hfiles.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(DiskFullError, match=f"no space left on {re.escape(str(target.parent))} "
                                            r"\(writing last.pt\); nothing was left half-written"):
        ckpt.save_atomic(state, target)
    assert target.read_bytes() == before
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".hipcore-tmp")]


def test_a_writer_failing_for_another_reason_keeps_its_own_error(tmp_path, monkeypatch):
    from hipcore import files as hfiles

    def broken(tmp):
        raise RuntimeError("the serialiser broke")

    monkeypatch.setattr(hfiles.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 0, 10**9))
    with pytest.raises(RuntimeError, match="the serialiser broke"):
        hfiles.write_atomic(tmp_path / "x", broken)
    assert list(tmp_path.iterdir()) == []


def test_results_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import errno

    from hipcore import notebook
    from hipcore.errors import DiskFullError

    path = notebook.write_metrics(tmp_path / "metrics.csv", [{"run_id": "a", "metric": "m", "value": 1}])
    old = path.read_text()
    real = Path.write_text

    def full(self, *a, **k):
        real(self, "run_id,se")                                     # part of the new file, then no space
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskFullError, match="no space left on .* \\(writing metrics.csv\\)"):
        notebook.write_metrics(path, [{"run_id": "b", "metric": "m", "value": 2}])
    monkeypatch.undo()
    assert path.read_text() == old and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


# ---- two runs wanting one run directory ----

def test_a_second_claim_waits_for_the_holder_then_takes_the_directory(tmp_path, capsys):
    import contextlib
    import threading

    run_dir = tmp_path / "shared"
    holder = contextlib.ExitStack()
    holder.enter_context(rundir.claim(run_dir))
    threading.Timer(1.0, holder.close).start()                 # the first run finishes a second later
    start = time.monotonic()
    with rundir.claim(run_dir, wait_s=30) as path:
        assert path == run_dir.resolve() and time.monotonic() - start >= 0.9
    assert "waiting up to 30 s for run_dir" in capsys.readouterr().err
    with rundir.claim(run_dir):
        with pytest.raises(rundir.RunDirError, match=r"in use by another run \(pid \d+ .*\) \(waited 1 s\)"):
            with rundir.claim(run_dir, wait_s=1.0):
                pass
        with pytest.raises(rundir.RunDirError, match="in use by another run"):     # the CLI's: at once
            with rundir.claim(run_dir):
                pass
