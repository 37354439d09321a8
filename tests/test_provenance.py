"""Provenance: what every results folder records, the code fingerprint of the run cache, and
the times the README and SUMMARY show, generated from the records."""

import json
import re
import shutil
import subprocess

import pytest

from hipcore import notebook, provenance, summary
from hipcore.device import resolve
from hipcore.experiments import common, image_arms
from hipcore.experiments import imagenet_comparison as ic


def test_a_record_names_the_commit_packages_machine_and_precision(tmp_path):
    path = provenance.write(tmp_path, {"precision": "fp32"}, wall_seconds=12.5, notebook="01_x")
    record = json.loads(path.read_text())
    assert path.name == "provenance.json" and record["wall_seconds"] == 12.5
    assert set(record) >= {"commit", "dirty", "code_fingerprint", "packages", "machine"}
    assert record["commit"] is None or len(record["commit"]) == 40
    assert record["dirty"] in (True, False, None)
    assert record["packages"]["torch"] and record["packages"]["python"]
    m = record["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["torch_threads"] >= 1 and m["precision"] == "fp32"
    assert provenance.machine({})["precision"] == resolve("auto", "cpu")  # none named: auto, resolved
    assert str(provenance.REPO) not in path.read_text()               # no machine paths


def test_the_fingerprint_follows_the_training_code(tmp_path):
    for part in provenance.TRAINING_CODE:
        src = provenance.REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / part)
    before = provenance.code_fingerprint(tmp_path)
    assert before == provenance.code_fingerprint(tmp_path) and len(before) == 12
    (tmp_path / "hipcore/model/layers.py").write_text((tmp_path / "hipcore/model/layers.py").read_text() + "\n# x\n")
    assert provenance.code_fingerprint(tmp_path) != before
    with pytest.raises(FileNotFoundError, match="training code"):
        provenance.code_fingerprint(tmp_path / "nowhere")


def test_run_folders_are_keyed_by_config_and_code(tmp_path, monkeypatch):
    settings = ic.TABLE["smoke"]
    pre, sup = common.train_configs(image_arms.HIP_MAE, 0, settings, dataset="fashion_mnist", runs_dir=tmp_path)
    code = provenance.code_fingerprint()
    assert f"/{pre.run_id}-{code}-data" in pre.run_dir and f"/{sup.run_id}-{code}-data" in sup.run_dir
    monkeypatch.setattr(common, "code_fingerprint", lambda: "othercode123")
    _, other = common.train_configs(image_arms.HIP_MAE, 0, settings, dataset="fashion_mnist", runs_dir=tmp_path)
    assert other.run_dir != sup.run_dir                                # other code: another run


NB01 = "01_imagenet_comparison"      # a notebook hipcore.summary finds (summary.notebook_modules)


def test_notebook_times_come_from_the_records(tmp_path):
    S = notebook.setup(NB01, profile="smoke", table={p: {} for p in notebook.PROFILES}, results_dir=tmp_path)
    S.record_provenance()
    record = json.loads((S.out / "provenance.json").read_text())
    assert record["notebook"] == NB01 and record["profile"] == "smoke" and record["wall_seconds"] >= 0
    assert summary.notebook_times(tmp_path, "smoke") == {NB01: record["wall_seconds"]}
    provenance.reproduce_record(tmp_path / "executed" / "smoke", {NB01: 600.0, "00_y": 5.0}, "smoke",
                                parts=[{"notebooks": ["00_y", NB01], "cached_runs_at_start": 0}], missing=[])
    assert summary.notebook_times(tmp_path, "smoke") == {NB01: 600.0, "00_y": 5.0}   # the run's own measure
    lines = "\n".join(summary.summary_lines(tmp_path, "smoke"))
    assert "00 5 s, 01 10 min; 10 min in all" in lines and "intervals are what to compare" in lines
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{summary.README_START}\nold typed times\n{summary.README_END}\nb\n")
    assert summary.update_readme(readme, tmp_path, "smoke")
    text = readme.read_text()
    assert "old typed times" not in text and "took 10 min" in text and text.startswith("a\n") and text.endswith("b\n")
    assert not summary.update_readme(tmp_path / "no README.md", tmp_path, "smoke")
    # a notebook run on its own after the reproduce run is named apart, with its own commit and machine
    later = notebook.setup("07_dense_decoding", profile="smoke", table={p: {} for p in notebook.PROFILES},
                           results_dir=tmp_path)
    later.record_provenance()
    own = json.loads((later.out / "provenance.json").read_text())
    said = summary.readme_times(tmp_path, "smoke")
    assert "took 10 min" in said and f"not part of that run: 07 {summary._duration(own['wall_seconds'])} (" in said
    assert own["machine"]["cpu"] in said.split("not part of that run")[1]


def test_training_times_count_the_runs_each_notebook_reports(tmp_path):
    folder = tmp_path / NB01 / "smoke"
    folder.mkdir(parents=True)
    rows = [{"run_id": arm, "seed": seed, "epoch": "", "step": "", "split": "test", "metric": metric, "value": value}
            for arm, seed, metric, value in [("a", 0, "total_seconds", 250.0), ("a", 1, "total_seconds", 350.0),
                                             ("a", 0, "test_accuracy", 60.0)]]
    notebook.write_metrics(folder / "metrics.csv", rows)
    assert summary.training_times(tmp_path, "smoke") == {NB01: 600.0}
    provenance.reproduce_record(tmp_path / "executed" / "smoke", {NB01: 12.0}, "smoke",
                                parts=[{"notebooks": [NB01], "cached_runs_at_start": 5}], missing=[])
    assert "found 5 finished runs in the run cache, so its 12 s of notebook time (01 12 s) is not what a fresh " \
           "clone takes" in summary.readme_times(tmp_path, "smoke")
    assert "as if run alone on an empty cache: 01 10 min" in summary.readme_times(tmp_path, "smoke")
    assert "01 10 min" in "\n".join(summary.summary_lines(tmp_path, "smoke"))


def test_paths_are_relative_to_the_repository():
    assert provenance.relative(provenance.REPO / "runs" / "x") == "runs/x"
    assert provenance.relative("/elsewhere/x") == "/elsewhere/x"


def test_committed_results_hold_no_machine_paths():
    """Every committed file under results/ names files relative to the repository."""
    machine_path = re.compile(r"(?<![\w.])/(home|root|work|tmp|Users|opt|usr)/")
    tracked = subprocess.run(["git", "-C", str(provenance.REPO), "ls-files", "results"],
                             capture_output=True, text=True, check=True).stdout.split()
    found = [f"{name}: {m.group(0)}" for name in tracked
             if (path := provenance.REPO / name).suffix in (".json", ".csv", ".md", ".ipynb")
             for m in [machine_path.search(path.read_text(errors="replace"))] if m]
    assert not found, "absolute machine paths in committed results:\n" + "\n".join(found)


def test_what_runs_write_does_not_make_the_code_dirty(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    for name in ("code.py", "README.md", "results/x.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    (tmp_path / "README.md").write_text("b\n")
    (tmp_path / "results" / "x.csv").write_text("b\n")
    assert provenance.git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("b\n")
    assert provenance.git_state(tmp_path)["dirty"] is True


def test_command_names_the_options_given_and_leaves_out_the_rest():
    line = provenance.command("scaling", profile="quick", sides=[28, 56], seeds=None, merge=None,
                              maps=True, against=False, runs_dir=())
    assert line == "python -m hipcore scaling --profile quick --sides 28 56 --maps"


def _repo(path):
    """A tiny checkout holding every part the fingerprints read, committed."""
    for part in (*provenance.TRAINING_CODE, "notebooks/01_x.ipynb"):
        target = path / part
        if part.endswith((".py", ".ipynb")):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"# {part}\n")
        else:
            target.mkdir(parents=True, exist_ok=True)
            (target / "a.py").write_text(f"# {part}\n")
    git = ["git", "-C", str(path), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    return subprocess.run(git[:3] + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_a_result_is_verified_only_when_the_code_that_ran_is_its_commits(tmp_path):
    head = _repo(tmp_path / "repo")
    repo = tmp_path / "repo"
    clean = provenance.code_identity(repo, {})
    assert clean["verified"] and clean["verified_by"] == "git status" and clean["commit"] == head
    named = provenance.code_identity(repo, {provenance.COMMIT_ENV: head})
    assert named["verified"] and named["verified_by"] == "git objects" and named["dirty"] is False
    expected = provenance.commit_fingerprint(head, repo)
    assert expected == provenance.result_fingerprint(repo)

    (repo / "hipcore/model/a.py").write_text("# edited\n")                    # the tree is not its commit
    dirty = provenance.code_identity(repo, {})
    assert not dirty["verified"] and "dirty" in dirty["unverified"]
    edited = provenance.code_identity(repo, {provenance.COMMIT_ENV: head})
    assert not edited["verified"] and f"not {head}'s" in edited["unverified"]

    copy = tmp_path / "copy"                                                  # copied without git
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    (copy / "hipcore/model/a.py").write_text("# hipcore/model\n")
    given = {provenance.COMMIT_ENV: head, provenance.FINGERPRINT_ENV: expected}
    ok = provenance.code_identity(copy, given)
    assert ok["verified"] and ok["verified_by"] == "given fingerprint" and ok["commit"] == head
    assert not provenance.code_identity(copy, {provenance.COMMIT_ENV: head})["verified"]        # nothing to check
    wrong = provenance.code_identity(copy, {**given, provenance.FINGERPRINT_ENV: "0" * 12})
    assert not wrong["verified"] and "is not" in wrong["unverified"]
    bare = provenance.code_identity(copy, {})
    assert not bare["verified"] and "not a git checkout" in bare["unverified"]


def test_summary_names_an_unverified_result(tmp_path):
    folder = tmp_path / NB01 / "full"
    folder.mkdir(parents=True)
    machine = {"cpu": "c", "cores": 2, "torch_threads": 2, "precision": "bf16"}
    (folder / "provenance.json").write_text(json.dumps({
        "commit": "abc1234", "dirty": None, "verified": False, "unverified": "the code that ran is not abc1234's",
        "code_fingerprint": "f" * 12, "machine": machine, "packages": {"torch": "2.11"}}))
    lines = "\n".join(summary.summary_lines(tmp_path, "full"))
    assert "commit abc1234 (unverified: the code that ran is not abc1234's)" in lines
