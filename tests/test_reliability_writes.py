"""Probes of issue 35's severe group: writes that stay in their folder (the weights export,
SUMMARY.md, a sweep's CSV) and committed results that check themselves (SHA256SUMS, and each
file's shape whatever its digest). Each probe is a case a careless or careful user made, and
asserts the one line the package now answers with, or the correct result."""

import errno
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from test_pretrained import TINY, exported  # noqa: F401  (the module fixture: a tiny run, exported)

import hipcore
from hipcore import cli, digests, files, gpu_reproduce, notebook, provenance, report, results, summary
from hipcore.errors import DiskFullError
from hipcore.experiments import baselines, common, regime
from hipcore.experiments import export as exporting
from hipcore.experiments.image_arms import HIP_MAE
from hipcore.locations import results_dir as committed_results
from hipcore.pretrained import read_manifest

MAE = "small3_fashion_mnist_smoke_mae"
CLASSIFIER = "small3_fashion_mnist_smoke_classifier"
NOTEBOOK = "01_imagenet_comparison"


def one_line(capsys, argv):
    """(exit code, stderr) of the command line; stderr must be one line."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") <= 1, err
    return code, err


# ---- the weights export: deletes and replaces only what it wrote, one at a time ----

@pytest.fixture
def weights(exported, tmp_path):  # noqa: F811
    """A copy of the exported folder to change, the run cache it came from, its files' bytes."""
    root, _, _ = exported
    out = tmp_path / "w"
    shutil.copytree(root / "out", out)
    return out, root / "runs", {p.name: p.read_bytes() for p in out.iterdir()}


def point_entry(out, name, file):
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["weights"][name]["file"] = file
    (out / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("file", ["../victim.pt", "ABSOLUTE", "link.pt"])
def test_a_manifest_entry_leading_out_of_the_folder_is_refused_and_nothing_is_deleted(weights, tmp_path, file):
    out, runs, _ = weights
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"the user's own file")
    if file == "ABSOLUTE":
        file = str(victim)
    if file == "link.pt":
        (out / file).symlink_to(victim)
    point_entry(out, MAE, file)
    before = {p.name: p.read_bytes() for p in out.iterdir() if not p.is_symlink()}
    with pytest.raises(exporting.ExportRefused, match=r"manifest.json: the manifest.json entry of "
                                                      rf"'{MAE}' was edited: file \(a file name in the weights "
                                                      r"folder; .* leads out of it\) must be .*; nothing was written"):
        exporting.export("smoke", settings=TINY, runs_dir=runs, out=out)      # at 8e232d4: victim.pt deleted
    assert victim.read_bytes() == b"the user's own file"
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.is_symlink()} == before


def test_the_command_names_the_refused_file_in_one_line(weights, tmp_path, capsys, monkeypatch):
    out, runs, _ = weights
    monkeypatch.setitem(common.IMAGE_TABLE, "smoke", TINY)             # the runs the fixture trained
    point_entry(out, CLASSIFIER, "../victim.pt")
    (tmp_path / "victim.pt").write_bytes(b"mine")
    code, err = one_line(capsys, ["weights", "--profile", "smoke", "--runs-dir", str(runs), "--out", str(out)])
    assert code == 2 and "'../victim.pt' leads out of it" in err
    assert (tmp_path / "victim.pt").read_bytes() == b"mine"


def test_a_users_own_files_named_like_the_weights_survive_a_re_export(weights):
    out, runs, before = weights
    mine = {f"{MAE}.backup.pt": b"a copy I keep", f"{MAE}.0123456789ab.pt": b"not what its name says",
            f"{MAE}.pt": b"mine too", f"{CLASSIFIER}.old.pt": b"and this"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    leftover = out / f"{MAE}.{'a' * 12}.pt"                          # a killed export's file: its name is its hash
    data = b"weights of a killed export"
    import hashlib
    leftover = out / f"{MAE}.{hashlib.sha256(data).hexdigest()[:12]}.pt"
    leftover.write_bytes(data)
    exporting.export("smoke", settings=TINY, runs_dir=runs, out=out)     # at 8e232d4: all five deleted
    assert all((out / name).read_bytes() == data for name, data in mine.items())
    assert not leftover.exists()                                          # hipcore's own leftover is cleaned
    assert all((out / name).read_bytes() == b for name, b in before.items())


def test_a_replaced_entrys_file_holding_other_bytes_is_refused_not_deleted(weights):
    out, runs, _ = weights
    other = {**TINY, "lr": TINY["lr"] * 2}                            # other runs: new files, the old set stale
    common.run_arm(HIP_MAE, 0, other, dataset="fashion_mnist", runs_dir=runs.parent / "runs-other")
    path = out / read_manifest(out)["weights"][MAE]["file"]
    path.write_bytes(b"the user put something else here")
    with pytest.raises(exporting.ExportRefused, match=rf"^{path} is not the file manifest.json's entry '{MAE}' "
                                                      r"records \(its SHA-256 differs\)"):
        exporting.export("smoke", settings=other, runs_dir=runs.parent / "runs-other", out=out)
    assert path.read_bytes() == b"the user put something else here"


def test_a_second_export_into_a_busy_folder_waits_then_is_refused_in_one_line(weights, monkeypatch, capsys):
    out, runs, _ = weights
    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.5)
    with files.folder_lock(out, "weights export"):
        with pytest.raises(files.FolderBusy, match=rf"^{out.resolve()} is being written by another weights export "
                                                   r"\(waited 0 s\): run again when it has finished$"):
            exporting.export("smoke", settings=TINY, runs_dir=runs, out=out)
    assert "waiting up to 0 s for another weights export" in capsys.readouterr().err


def test_two_exports_at_once_keep_both_entries(weights):
    out, runs, _ = weights
    common.run_arm(HIP_MAE, 1, TINY, dataset="fashion_mnist", runs_dir=runs)
    errors = []

    def export(seed):
        try:
            exporting.export("smoke", settings=TINY, seed=seed, runs_dir=runs, out=out)
        except Exception as error:          # noqa: BLE001 - reported below
            errors.append(error)

    with files.folder_lock(out, "test"):                # both start while the folder is held, then race
        threads = [threading.Thread(target=export, args=(seed,)) for seed in (0, 1)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        assert all(thread.is_alive() for thread in threads)                  # waiting, not writing
    for thread in threads:
        thread.join(120)
    assert errors == []
    names = set(read_manifest(out)["weights"])          # at 8e232d4: the second manifest lost the first's entries
    assert {MAE, CLASSIFIER, "small3_fashion_mnist_smoke_seed1_mae", "small3_fashion_mnist_smoke_seed1_classifier"} \
        <= names
    assert {p.name for p in out.glob("*.pt")} == {e["file"] for e in read_manifest(out)["weights"].values()}


def fill_disk_after(monkeypatch, what, fraction=0.5):
    """Make Path.<what> write part of its data and then fail with ENOSPC, as on a full disk."""
    original = getattr(Path, what)

    def full(self, data, *args, **kwargs):
        original(self, data[: int(len(data) * fraction)], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, what, full)


def test_a_full_disk_during_an_export_leaves_the_old_set_whole(weights, monkeypatch):
    out, runs, before = weights
    other = {**TINY, "lr": TINY["lr"] * 3}
    common.run_arm(HIP_MAE, 0, other, dataset="fashion_mnist", runs_dir=runs.parent / "runs-3")
    fill_disk_after(monkeypatch, "write_bytes")
    with pytest.raises(DiskFullError, match=rf"^no space left on {out} \(writing {MAE}\.[0-9a-f]{{12}}\.pt\)"):
        exporting.export("smoke", settings=other, runs_dir=runs.parent / "runs-3", out=out)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before        # no temporary, no half file
    hipcore.pretrained(MAE, folder=out)


# ---- SUMMARY.md and a sweep's CSV: whole or not at all ----

@pytest.fixture
def notebook01(tmp_path):
    """A copy of notebook 01's committed quick results in a results folder of its own."""
    folder = tmp_path / "results" / NOTEBOOK / "quick"
    shutil.copytree(committed_results() / NOTEBOOK / "quick", folder)
    return folder


def test_summary_on_a_full_disk_keeps_the_old_file(notebook01, monkeypatch, capsys):
    root = notebook01.parent.parent
    target = root / "SUMMARY.md"
    target.write_text("the previous summary\n")
    fill_disk_after(monkeypatch, "write_text")
    code, err = one_line(capsys, ["summary", "--results-dir", str(root), "--readme", ""])
    monkeypatch.undo()
    assert code == 2 and err.startswith(f"error: no space left on {root} (writing SUMMARY.md)")
    assert target.read_text() == "the previous summary\n"                    # at 8e232d4: 0 bytes
    assert sorted(p.name for p in root.iterdir()) == [NOTEBOOK, "SUMMARY.md"]


def test_a_sweeps_csv_on_a_full_disk_is_not_left_half_written(tmp_path, monkeypatch):
    from hipcore import sweep

    def run_notebook(nb, output, parameters, **kwargs):
        folder = Path(parameters["results_dir"]) / nb.stem / "smoke"
        folder.mkdir(parents=True)
        with open(folder / "metrics.csv", "w") as f:
            f.write("run_id,seed,split,metric,value\narm,0,test,test_accuracy,50\n")
        return 0.0
    monkeypatch.setattr(sweep, "run_notebook", run_notebook)
    fill_disk_after(monkeypatch, "write_text")
    with pytest.raises(DiskFullError, match="writing sweep_metrics.csv"):
        sweep.sweep("01", {}, [0], tmp_path / "out", profile="smoke")
    monkeypatch.undo()
    assert not (tmp_path / "out" / "sweep_metrics.csv").exists()             # at 8e232d4: a 0-byte file
    assert not list((tmp_path / "out").glob(".*"))


# ---- committed results check themselves: SHA256SUMS ----

def test_a_changed_committed_file_is_refused_naming_it_by_every_loader(notebook01, capsys):
    path = notebook01 / "comparisons.csv"
    path.write_text(path.read_text().replace("70.95", "70.96"))
    changed = rf"^{path}: changed since its folder was signed .* results sign {notebook01}$"
    with pytest.raises(digests.ResultsChanged, match=changed):
        report.read_comparisons(path)
    with pytest.raises(digests.ResultsChanged, match=changed):
        results.load_comparisons("quick", notebook01.parent.parent)
    runs = notebook01 / "runs.json"
    runs.write_text(runs.read_text().replace('"test_accuracy": 69.5', '"test_accuracy": 69.6'))
    for read in (common.read_runs, regime.read):
        with pytest.raises(digests.ResultsChanged, match=rf"^{runs}: changed since"):
            read(notebook01)
    code, err = one_line(capsys, ["summary", "--results-dir", str(notebook01.parent.parent), "--out",
                                  str(notebook01 / ".." / "S.md")])
    assert code == 2 and f"{path}: changed since its folder was signed" in err or f"{runs}: changed" in err


def test_a_changed_reproduce_record_is_refused_by_every_reader(tmp_path):
    """The record of the executed notebooks (which notebooks a reproduce in parts still has to
    rerun, and each one's time) is read checked, as a results folder's files are."""
    executed = summary.executed_path(tmp_path, "quick")
    shutil.copytree(summary.executed_path(committed_results(), "quick"), executed)
    assert summary.executed_record(tmp_path, "quick") == provenance.read(executed)
    record = json.loads((executed / "provenance.json").read_text())
    (executed / "provenance.json").write_text(json.dumps({**record, "missing": []}))
    changed = rf"^{executed / 'provenance.json'}: changed since its folder was signed"
    for read in (summary.still_to_rerun, summary.reproduce_times, summary.readme_times, summary.summary_lines):
        with pytest.raises(digests.ResultsChanged, match=changed):
            read(tmp_path, "quick")


@pytest.mark.parametrize("name", ["baselines.csv", "curves.csv", "provenance.json", "metrics.csv", "arms.csv"])
def test_each_file_a_loader_reads_is_verified(notebook01, name):
    path = notebook01 / name
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(digests.ResultsChanged, match=rf"^{path}: changed since its folder was signed"):
        results.load("quick", notebook01.parent.parent) if name != "baselines.csv" and name != "curves.csv" \
            else regime.read(notebook01)


def test_a_file_added_after_signing_and_a_broken_sums_file_are_named(notebook01):
    extra = notebook01 / "loops.csv"
    extra.write_text("task,precision,examples_per_s\nsupervised,bf16,1.0\n")
    with pytest.raises(digests.ResultsChanged, match=rf"^{extra}: not among the files SHA256SUMS of its folder "
                                                     "signs"):
        results.load("quick", notebook01.parent.parent)
    extra.unlink()
    (notebook01 / "SHA256SUMS").write_text("not a digest  ../../etc/passwd\n")
    with pytest.raises(digests.ResultsChanged, match=r"SHA256SUMS: line 1 is not '<sha256>  <file name>'"):
        common.read_runs(notebook01)


def test_results_sign_re_signs_a_change_made_on_purpose_and_verify_checks(notebook01, capsys):
    path = notebook01 / "summary.json"
    path.write_text(path.read_text().replace('"regime"', '"regime"', 1) + " ")
    code, err = one_line(capsys, ["results", "verify", str(notebook01.parent.parent)])
    assert code == 2 and f"{path}: changed since its folder was signed" in err
    assert cli.main(["results", "sign", str(notebook01)]) == 0
    assert f"signed {notebook01}: 12 files" in capsys.readouterr().out
    assert cli.main(["results", "verify", str(notebook01.parent.parent)]) == 0
    assert results.load("quick", notebook01.parent.parent).notebook.eq(NOTEBOOK).all()
    code, err = one_line(capsys, ["results", "sign", str(notebook01 / "nothing")])
    assert code == 2 and "is not a folder" in err


def test_a_notebook_rewriting_its_folder_unsigns_it_and_its_provenance_signs_it(tmp_path, monkeypatch):
    monkeypatch.delenv("HIPCORE_PROFILE", raising=False)
    table = {p: {"seeds": (0,)} for p in notebook.PROFILES}
    out = tmp_path / "99_test" / "quick"
    out.mkdir(parents=True)
    (out / "comparisons.csv").write_text("old\n")
    digests.sign(out)
    s = notebook.setup("99_test", profile="quick", table=table, results_dir=tmp_path, train=True)
    assert not (out / digests.SUMS).exists()            # rewritten from here: a stale signature would refuse it
    (out / "metrics.csv").write_text("run_id,seed,metric,value\na,0,test_accuracy,50\n")
    provenance.write(out, {}, seeds=[0])
    assert digests.verify(out) == 2 and s.out == out


# ---- committed results check themselves: each file's shape, whatever its digest ----

def tamper(folder, name, change):
    """Change a file with `change(text) -> text`, then re-sign the folder as a user would: the
    shape checks must hold without the digests."""
    path = folder / name
    path.write_text(change(path.read_text()))
    digests.sign(folder)
    return path


def test_a_duplicated_comparison_row_is_not_a_fourth_seed(notebook01):
    path = tamper(notebook01, "comparisons.csv", lambda t: t + t.splitlines()[3] + "\n")
    with pytest.raises(results.ResultsError, match=rf"^{path}: row 13 repeats row 3 \(finding 'HiP \(MAE-learned\) "
                                                   r"vs Perceiver IO \(Fourier\)', seed '2'\): each appears once$"):
        report.read_comparisons(path)                                    # at 8e232d4: 4 seeds
    shutil.copy(committed_results() / NOTEBOOK / "quick" / "comparisons.csv", path)
    tamper(notebook01, "comparisons.csv", lambda t: t + t.splitlines()[3].replace(",2,69.1,70.95,", ",3,69.1,70.95,")
           + "\n")                                                     # the copy made a fourth seed
    with pytest.raises(results.ResultsError, match=r"row \d+: baseline 69.1 of .*, seed 3, is no run's top-1 at "
                                                   r"seed 3 in runs.json"):
        report.read_comparisons(path)


def test_a_truncated_number_is_caught_against_the_runs(notebook01):
    path = tamper(notebook01, "comparisons.csv", lambda t: t.replace(",69.1,70.95,", ",69.1,6,"))
    with pytest.raises(results.ResultsError, match=rf"^{path}: row 3: treatment 6 of 'HiP \(MAE-learned\) vs "
                                                   r"Perceiver IO \(Fourier\)', seed 2, is no run's top-1 at seed 2 "
                                                   r"in runs.json \(a changed number, or a row added by hand\)$"):
        report.read_comparisons(path)                                     # at 8e232d4: read as 6
    with pytest.raises(results.ResultsError, match="row 3: treatment 6 of"):
        results.load_comparisons("quick", notebook01.parent.parent)
    tamper(notebook01, "comparisons.csv", lambda t: t.replace(",69.1,6,", ",69.1,70.95,"))
    metrics = tamper(notebook01, "metrics.csv", lambda t: t.replace(",test_accuracy,69.5\n", ",test_accuracy,7\n"))
    with pytest.raises(results.ResultsError, match=rf"^{metrics}: row 1: test_accuracy 7 of arm 'HiP, MAE-learned "
                                                   r"positions', seed 0, is not the 69.5 its runs.json records"):
        results.load("quick", notebook01.parent.parent)


def test_a_number_outside_its_range_is_named(notebook01):
    path = tamper(notebook01, "comparisons.csv", lambda t: t.replace(",69.1,70.95,", ",69.1,662,"))
    with pytest.raises(results.ResultsError, match=rf"^{path}: row 3: treatment 662 of .* is outside \[0, 100\] "
                                                   r"\(top-1 %\)$"):
        report.read_comparisons(path)
    tamper(notebook01, "comparisons.csv", lambda t: t.replace(",69.1,662,", ",69.1,70.95,"))
    runs = tamper(notebook01, "runs.json", lambda t: t.replace('"test_accuracy": 69.5', '"test_accuracy": 712', 1))
    with pytest.raises(results.ResultsError, match=rf"^{runs}: row 1: test_accuracy 712 is outside \[0, 100\]"):
        common.read_runs(notebook01)


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_a_nan_in_runs_json_is_refused_not_dropped(notebook01, value):
    runs = tamper(notebook01, "runs.json",
                  lambda t: t.replace('"test_accuracy": 69.95', f'"test_accuracy": {value}', 1))
    with pytest.raises(results.ResultsError, match=rf"^{runs}: row 2: test_accuracy is (nan|inf), not a finite "
                                                   r"number \(arm 'HiP, MAE-learned positions', seed 1\)$"):
        regime.read(notebook01)                                           # at 8e232d4: the seed dropped
    with pytest.raises(results.ResultsError, match="row 2: test_accuracy is"):
        report.read_comparisons(notebook01 / "comparisons.csv")


def test_a_duplicated_run_an_unknown_arm_and_an_undeclared_seed_are_named(notebook01):
    def add(run):
        return lambda t: json.dumps(json.loads(t) + [run], indent=1)

    first = json.loads((notebook01 / "runs.json").read_text())[0]
    runs = tamper(notebook01, "runs.json", add(first))
    with pytest.raises(results.ResultsError, match=rf"^{runs}: row 19 repeats row 1 \(arm 'HiP, MAE-learned "
                                                   r"positions', seed 0\): each run appears once$"):
        common.read_runs(notebook01)                                      # at 8e232d4: counted twice
    shutil.copy(committed_results() / NOTEBOOK / "quick" / "runs.json", runs)
    tamper(notebook01, "runs.json", add({**first, "arm": "an arm nobody ran"}))
    with pytest.raises(results.ResultsError, match=r"row 19: arm 'an arm nobody ran' is not one of the 6 arms in "
                                                   r"arms.csv"):
        common.read_runs(notebook01)
    shutil.copy(committed_results() / NOTEBOOK / "quick" / "runs.json", runs)
    tamper(notebook01, "runs.json", add({**first, "seed": 5}))
    with pytest.raises(results.ResultsError, match=r"row 19: seed 5 is not one of the seeds its run declared "
                                                   r"\(\[0, 1, 2\], provenance.json\)"):
        common.read_runs(notebook01)


def test_a_duplicated_or_nan_baseline_is_refused_by_the_readers_and_summary(notebook01, capsys):
    path = tamper(notebook01, "baselines.csv", lambda t: t + t.splitlines()[1] + "\n")
    with pytest.raises(results.ResultsError, match=rf"^{path}: row 10 repeats row 1 \(model 'logistic regression', "
                                                   r"seed '0'\): each appears once$"):
        baselines.read_baselines(notebook01)                              # at 8e232d4: counted twice
    shutil.copy(committed_results() / NOTEBOOK / "quick" / "baselines.csv", path)
    tamper(notebook01, "baselines.csv", lambda t: t.replace("small CNN,0,,30,87.75,99.81666666666666,87.9,",
                                                           "small CNN,0,,30,87.75,99.81666666666666,nan,"))
    with pytest.raises(results.ResultsError, match=rf"^{path}: row 3: test_accuracy 'nan' is not a finite number$"):
        regime.read(notebook01)
    code, err = one_line(capsys, ["summary", "--results-dir", str(notebook01.parent.parent), "--readme", ""])
    assert code == 2 and f"{path}: row 3: test_accuracy 'nan' is not a finite number" in err   # was "small CNN nan"
    tamper(notebook01, "baselines.csv", lambda t: t.replace("small CNN,0,,30,87.75,99.81666666666666,nan,",
                                                           "a model of mine,0,,30,87.75,99.81666666666666,87.9,"))
    with pytest.raises(results.ResultsError, match="row 3: model 'a model of mine' is not one of the 6 models"):
        baselines.read_baselines(path)


def test_a_duplicated_curve_row_is_refused(notebook01):
    path = tamper(notebook01, "curves.csv", lambda t: t + t.splitlines()[1] + "\n")
    with pytest.raises(results.ResultsError, match=rf"^{path}: row \d+ repeats row 1 "):
        regime.read(notebook01)


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not a provenance record"),
    ("[]", "not a provenance record"),
    ('{"machine": "a string"}', "not a provenance record"),
])
def test_a_tampered_provenance_record_is_named_by_every_reader(notebook01, capsys, text, problem):
    path = tamper(notebook01, "provenance.json", lambda t: text)
    with pytest.raises(ValueError, match=rf"^{path}: {problem}"):
        results.load("quick", notebook01.parent.parent)
    code, err = one_line(capsys, ["summary", "--results-dir", str(notebook01.parent.parent), "--readme", ""])
    assert code == 2 and f"{path}: {problem}" in err


@pytest.mark.parametrize("text", ["{}", "[]", '{"arm": "x", "seed": -1}', "{half",
                                  '{"arm": "x", "seed": 0, "test_accuracy": NaN}'])
def test_a_bad_row_of_reproduce_gpu_is_named_not_a_key_error(tmp_path, text):
    rows = tmp_path / "rows"
    rows.mkdir()
    for arm in gpu_reproduce.ARMS:
        (rows / f"{gpu_reproduce.Job(arm, 0).name}.json").write_text(text)
    first = rows / f"{gpu_reproduce.Job(next(iter(gpu_reproduce.ARMS)), 0).name}.json"
    with pytest.raises(ValueError, match=rf"^{first}: (not a readable row|a row lacks|test_accuracy is nan)"):
        gpu_reproduce.write_results(tmp_path, "quick", {}, (0,), rows)     # at 8e232d4: KeyError 'arm'


# ---- summary never drops a notebook ----

def test_summary_refuses_a_notebook_whose_comparisons_are_missing(notebook01, capsys):
    root = notebook01.parent.parent
    (notebook01 / "comparisons.csv").unlink()
    code, err = one_line(capsys, ["summary", "--results-dir", str(root), "--readme", ""])
    assert code == 2 and f"{notebook01 / 'comparisons.csv'}: signed in SHA256SUMS but missing" in err
    digests.unsign(notebook01)                                            # unsigned: the summary.json says so
    code, err = one_line(capsys, ["summary", "--results-dir", str(root), "--readme", ""])
    assert code == 2 and (f"{notebook01 / 'comparisons.csv'} is missing, while summary.json records 4 findings "
                          "from it") in err                                # at 8e232d4: exit 0, its rows gone
    assert not (root / "SUMMARY.md").exists()


def test_summary_of_intact_results_is_unchanged(notebook01):
    written = summary.write_summary(notebook01.parent.parent, "quick")
    assert "HiP (MAE-learned) vs Perceiver IO (Fourier)" in written.read_text()


def test_an_added_finding_or_an_undeclared_seed_in_a_finished_folder_is_named(notebook01):
    path = notebook01 / "comparisons.csv"
    first = path.read_text().splitlines()[1]
    tamper(notebook01, "comparisons.csv", lambda t: t + first.replace("HiP (MAE-learned) vs Perceiver IO (Fourier)",
                                                                      "a finding of my own") + "\n")
    with pytest.raises(results.ResultsError, match=rf"^{path}: row 13: finding 'a finding of my own' is not one of "
                                                   r"the 4 findings in summary.json$"):
        report.read_comparisons(path)                                  # at 8e232d4: a fifth finding, one seed
    digests.unsign(notebook01)                      # being rewritten: what the old run declared is not held to it
    assert len(report.read_comparisons(path)) == 13


def test_a_curve_of_an_unknown_arm_is_named(notebook01):
    path = tamper(notebook01, "curves.csv", lambda t: t.replace('"HiP, MAE-learned positions",0,MAE,1,val',
                                                                "nobody,0,MAE,1,val", 1))
    with pytest.raises(results.ResultsError, match=rf"^{path}: row 1: arm 'nobody' is not one of the 6 arms in "
                                                   r"arms.csv$"):
        regime.read(notebook01)


def test_a_reading_notebook_names_a_tampered_provenance_record(notebook01, monkeypatch):
    monkeypatch.delenv("HIPCORE_PROFILE", raising=False)
    monkeypatch.delenv("HIPCORE_TRAIN", raising=False)
    table = {p: {"seeds": (0, 1, 2)} for p in notebook.PROFILES}
    path = tamper(notebook01, "provenance.json", lambda t: "[]")
    with pytest.raises(ValueError, match=rf"^{path}: not a provenance record \(a JSON list"):
        notebook.setup(NOTEBOOK, profile="quick", table=table, results_dir=notebook01.parent.parent, train=False)
    path.write_text("{}")                                                  # changed, not re-signed
    with pytest.raises(digests.ResultsChanged, match=rf"^{path}: changed since its folder was signed"):
        notebook.setup(NOTEBOOK, profile="quick", table=table, results_dir=notebook01.parent.parent, train=False)


def test_an_export_to_a_file_is_refused_in_one_line(weights, tmp_path, capsys, monkeypatch):
    _, runs, _ = weights
    monkeypatch.setitem(common.IMAGE_TABLE, "smoke", TINY)
    target = tmp_path / "a file"
    target.write_text("mine")
    code, err = one_line(capsys, ["weights", "--profile", "smoke", "--runs-dir", str(runs), "--out", str(target)])
    assert code == 2 and err == f"error: --out {target} is a file, not a folder\n" and target.read_text() == "mine"


def test_an_extra_metrics_row_for_an_unknown_arm_is_named(notebook01):
    path = tamper(notebook01, "metrics.csv", lambda t: t + "an arm nobody ran,0,,,test,test_accuracy,99.0\n")
    with pytest.raises(results.ResultsError, match=rf"^{path}: row 85: arm 'an arm nobody ran' is not one of the "
                                                   r"\d+ arms in runs.json or summary.json's shortcuts$"):
        results.load("quick", notebook01.parent.parent)               # at 8e232d4: a sixth arm, no settings


def test_a_killed_exports_temporary_file_is_cleaned_and_a_users_hidden_file_kept(weights):
    out, runs, before = weights
    dead = out / f".{MAE}.abc.pt.{2 ** 22 + 12345}{files.TEMP_SUFFIX}"     # no such process
    dead.write_bytes(b"half a file")
    mine = out / ".my notes"
    mine.write_text("kept")
    exporting.export("smoke", settings=TINY, runs_dir=runs, out=out)
    assert not dead.exists() and mine.read_text() == "kept"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p != mine} == before


def test_a_removed_comparison_row_is_named_against_the_count_the_run_recorded(notebook01):
    path = tamper(notebook01, "comparisons.csv", lambda t: "\n".join(t.splitlines()[:3] + t.splitlines()[4:]) + "\n")
    with pytest.raises(results.ResultsError, match=rf"^{path}: finding 'HiP \(MAE-learned\) vs Perceiver IO "
                                                   r"\(Fourier\)' has 2 rows where summary.json records 3 \(a row "
                                                   r"removed or added\)$"):
        report.read_comparisons(path)                                  # at 8e232d4: read as 2 seeds
