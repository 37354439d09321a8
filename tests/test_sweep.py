"""A papermill sweep runs one notebook per grid point and aggregates the metrics; nothing runs
that the notebook cannot take."""

import csv
import os
import re
import shlex
import tempfile

import nbformat
import pytest

from hipcore import sweep as sweep_module
from hipcore.cli import main
from hipcore.errors import HipcoreError
from hipcore.sweep import (
    SWEEP_EXAMPLE,
    find_notebook,
    notebook_parameters,
    parse_value,
    point_name,
    point_names,
    read_sweep,
)


def test_values_parse_as_literals_or_strings():
    assert parse_value("3") == 3 and parse_value("0.75") == 0.75
    assert parse_value("[0, 1]") == [0, 1] and parse_value("hilbert") == "hilbert"
    assert point_name({"ordering": "raster", "seed": 1}) == "ordering-raster_seed-1"


def test_point_names_differ_where_the_points_do():
    points = [{"data_dir": "data/a,b"}, {"data_dir": "data/a;b"}, {"data_dir": "other"}]
    names = point_names(points)
    assert len(set(names)) == 3 and names[2] == "data_dir-other"
    assert names[0].startswith("data_dir-dataab-") and names[1].startswith("data_dir-dataab-")
    assert point_names(points) == names                       # the same points, the same names


def test_unknown_notebook_lists_the_ones_there_are():
    with pytest.raises(FileNotFoundError, match="00_tour"):
        find_notebook("99")


@pytest.fixture
def stand_in_runs(monkeypatch):
    """run_notebook replaced by one that records the parameters and writes a metrics.csv."""
    seen = []

    def run(nb, output, parameters, **_):
        seen.append(dict(parameters))
        metrics = sweep_module.Path(parameters["results_dir"]) / nb.stem / "smoke" / "metrics.csv"
        metrics.parent.mkdir(parents=True)
        metrics.write_text("run_id,seed,metric,value\narm,0,test_accuracy,50.0\n")
        return 1.0

    monkeypatch.setattr(sweep_module, "run_notebook", run)
    return seen


@pytest.mark.parametrize("argv, message", [
    (["-p", "orderingg", "hilbert"], "00_tour has no parameter 'orderingg'; its parameters: profile, seed, dataset"),
    (["-p", "results_dir", "x"], "-p results_dir: the sweep sets it"),
    (["-p", "seed", "1", "--seeds", "2"], "'seed' is given both by -p and by --seeds"),
    (["-p", "ordering", "raster", "raster"], "each value once"),
    (["-p", "ordering", "raster", "-p", "ordering", "hilbert"], "-p ordering is given twice"),
    (["-p", "seed", "zero"], "-p seed 'zero': 00_tour takes a seed, a whole number in [0, 2**63) there"),
    (["-p", "pretrained", "1"], "-p pretrained 1: 00_tour takes True or False there (its default is False)"),
    (["-p", "resolution", "2.5"], "-p resolution 2.5: 00_tour takes a positive int there (its default is 224)"),
    (["-p", "ordering", "7"], "-p ordering 7: 00_tour takes an ordering there (its default is 'raster')"),
    (["-p", "variant", '{1: "a", "b": 2}'], "-p variant {1: 'a', 'b': 2}: a parameter takes None, True/False"),
    (["-p", "variant", '["small3", "tiny"]'], "00_tour takes a variant name there"),
    (["-p", "variant", "no_such_variant"], "00_tour takes a variant name there"),
    (["-p", "resolution", "1e999"], "-p resolution inf: a parameter takes"),
    (["-p", "resolution", "0"], "-p resolution 0: 00_tour takes a positive int"),
    (["-p", "seed", str(2**64)], "takes a seed, a whole number in [0, 2**63)"),
    (["--seeds", str(2**64)], f"--seeds {2**64}: a seed is a whole number in [0, 2**63)"),
    (["-p", "dataset", "imagenet"], "00_tour takes a dataset name there"),
    (["-p", "pretrained", "[True]"], "00_tour takes True or False there"),
])
def test_a_sweep_that_cannot_apply_its_settings_stops_before_any_kernel(tmp_path, capsys, stand_in_runs, argv, message):
    assert main(["sweep", "00", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and not stand_in_runs and not list(tmp_path.iterdir()), err


def test_seeds_go_to_the_notebooks_own_seed_parameter(tmp_path, capsys, stand_in_runs):
    assert main(["sweep", "00", "--seeds", "1", "2", "--out", str(tmp_path / "a")]) == 0
    assert [p["seed"] for p in stand_in_runs] == [1, 2] and all("seeds" not in p for p in stand_in_runs)
    stand_in_runs.clear()
    assert main(["sweep", "02", "-p", "data_dir", "None", "--seeds", "1", "--out", str(tmp_path / "b")]) == 0
    assert [p["seeds"] for p in stand_in_runs] == [[1]] and "seed" not in stand_in_runs[0]
    out = capsys.readouterr().out
    assert "[1/2] 00_tour seed=1" in out and "[1/1] 02_flattening_ablation data_dir=None seed=1" in out
    with open(tmp_path / "b" / "sweep_metrics.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["notebook"] == "02_flattening_ablation" and row["param_data_dir"] == "" and row["param_seed"] == "1"
    assert row["arm"] == "arm" and "run_id" not in row                      # the arm, named as such
    assert stand_in_runs[0]["train"] is True                                 # a point trains, never reads
    typed = read_sweep(tmp_path / "b" / "sweep_metrics.csv")
    assert str(typed["seed"].dtype) == "Int64" and str(typed["param_seed"].dtype) == "Int64"
    assert typed["value"].dtype == float and typed["param_data_dir"].tolist() == [""]


def write_notebook(path, parameters, *cells):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
               *(nbformat.v4.new_code_cell(c) for c in cells)],
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    nbformat.write(nb, path)
    return path


def test_a_notebook_without_the_parameters_a_sweep_sets_is_refused(tmp_path, capsys, stand_in_runs):
    path = write_notebook(tmp_path / "x.ipynb", "width = 3")
    assert notebook_parameters(path) == ["width"]
    assert main(["sweep", str(path), "-p", "width", "4", "--out", str(tmp_path / "out")]) == 2
    assert "x takes no results_dir parameter" in capsys.readouterr().err
    path = write_notebook(tmp_path / "x.ipynb", "width = 3\nresults_dir = 'results'")
    assert main(["sweep", str(path), "-p", "width", "4", "--seeds", "0", "--out", str(tmp_path / "out")]) == 2
    assert "x takes no seed parameter" in capsys.readouterr().err and not stand_in_runs


def test_a_notebook_that_stops_is_reported_in_one_plain_line(tmp_path, capfd):
    path = write_notebook(tmp_path / "x.ipynb", "width = 3\nseed = 0\nresults_dir = 'results'",
                          "if width > 3:\n    raise ValueError(f'width={width} is too wide')")
    assert main(["sweep", str(path), "-p", "width", "4", "--seeds", "0", "--out", str(tmp_path / "out")]) == 2
    out, err = capfd.readouterr()
    assert "[1/1] x width=4 seed=0" in out and "x stopped in cell 3: width=4 is too wide" in err
    assert not re.search(r"\w+(Error|Exception|Warning)\b|Traceback|encryption", out + err), out + err


def test_the_help_example_uses_parameters_the_notebook_has():
    words = shlex.split(SWEEP_EXAMPLE)
    names = [words[i + 1] for i, w in enumerate(words) if w == "-p"]
    have = notebook_parameters(find_notebook(words[words.index("sweep") + 1]))
    assert names and set(names) <= set(have), (names, have)


def test_sweep_runs_each_point_and_aggregates(tmp_path, capfd):
    rc = main(["sweep", "00", "-p", "ordering", "raster", "hilbert", "--seeds", "0",
               "--profile", "smoke", "--out", str(tmp_path)])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == \
        ["ordering-hilbert_seed-0.ipynb", "ordering-raster_seed-0.ipynb"]
    with open(tmp_path / "sweep_metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["param_ordering"] for r in rows} == {"raster", "hilbert"}       # plain values, not JSON
    assert {"notebook", "point", "metric", "value", "param_seed"} <= set(rows[0])
    out, err = capfd.readouterr()                                              # the kernels' own output too
    assert "[1/2] 00_tour ordering='raster' seed=0" in out and "[2/2] 00_tour done in" in out
    assert "encryption" not in out + err and "Warning" not in out + err, err


def _stand_in_notebooks(tmp_path, monkeypatch, fail_on: str | None = None):
    """Two numbered notebooks run by a stand-in for papermill that records a comparison and
    takes 3 s (raising on state['fail_on'], as a sitting that ends would); (results, readme,
    seen, state)."""
    import nbformat

    from hipcore import report

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name, cell in (("01_imagenet_comparison", 'profile = "auto"\ntrain = False'),
                       ("02_flattening_ablation", 'profile = "auto"')):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(cell, metadata={"tags": ["parameters"]})]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, notebooks / f"{name}.ipynb")
    results = tmp_path / "results"
    (results / "SUMMARY.md").parent.mkdir()
    (results / "SUMMARY.md").write_text("quick summary\n")
    seen, state = [], {"fail_on": fail_on}

    def run(nb, output, parameters, **_):
        if nb.stem == state["fail_on"]:
            raise KeyboardInterrupt("the sitting ended")
        seen.append({**parameters, "env": os.environ.get("HIPCORE_TRAIN"), "notebook": nb.stem})
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("{}")
        report.append_comparison(results / nb.stem / parameters["profile"] / "comparisons.csv", finding=f"x {nb.stem}",
                                 claim="higher", paper_key="", metric="top-1 %", seed=0, baseline=1.0, treatment=2.0)
        return 3.0

    monkeypatch.setattr(sweep_module, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(sweep_module, "run_notebook", run)
    monkeypatch.setenv("HIPCORE_RUNS", str(tmp_path / "runs"))          # an empty run cache
    readme = tmp_path / "README.md"
    readme.write_text("unchanged\n")
    return results, readme, seen, state


def test_reproduce_writes_only_its_profiles_files_with_times_and_provenance(tmp_path, monkeypatch):
    """reproduce at 'smoke' (the notebooks replaced by a stand-in that records a comparison)."""
    import json

    results, readme, seen, _ = _stand_in_notebooks(tmp_path, monkeypatch)
    monkeypatch.setenv("HIPCORE_TRAIN", "kept")                          # restored afterwards
    out = sweep_module.reproduce("smoke", results_dir=results, readme=readme)
    assert out == results / "SUMMARY_smoke.md" and "x 01_imagenet_comparison" in out.read_text()
    assert (results / "SUMMARY.md").read_text() == "quick summary\n" and readme.read_text() == "unchanged\n"
    assert sorted(p.name for p in (results / "executed" / "smoke").glob("*.ipynb")) == ["01_imagenet_comparison.ipynb",
                                                                               "02_flattening_ablation.ipynb"]
    record = json.loads((results / "executed" / "smoke" / "provenance.json").read_text())
    assert record["notebook_seconds"] == {"01_imagenet_comparison": 3.0, "02_flattening_ablation": 3.0}
    assert record["total_seconds"] == 6.0 and record["missing"] == []
    assert record["cached_runs_at_start"] == 0                        # an empty run cache: a true reproduce time
    assert [p["notebooks"] for p in record["parts"]] == [["01_imagenet_comparison", "02_flattening_ablation"]]
    assert all(not p["results_dir"].startswith("/") for p in seen)   # relative: no machine path recorded
    assert [p.get("train") for p in seen] == [True, None]            # it trains where a notebook could read
    assert [p["env"] for p in seen] == ["1", "1"] and os.environ.get("HIPCORE_TRAIN") == "kept"   # and writes


def test_a_reproduce_stopped_midway_resumes_from_its_record_and_nothing_else(tmp_path, monkeypatch):
    """A part stopped in its second notebook records the first and what is missing; --resume
    runs only the rest, and the README says the run took two parts. A record that other code
    wrote, or that changed since it was signed, is refused by name, never resumed."""
    import json

    from hipcore import provenance, summary
    from hipcore.digests import ResultsChanged

    results, _, seen, state = _stand_in_notebooks(tmp_path, monkeypatch, fail_on="02_flattening_ablation")
    clean = {"commit": "f" * 40, "dirty": False}
    monkeypatch.setattr(provenance, "git_state", lambda root=provenance.REPO: clean)
    with pytest.raises(KeyboardInterrupt):
        sweep_module.reproduce("quick", results_dir=results, readme=None)
    executed = results / "executed" / "quick"
    record = json.loads((executed / "provenance.json").read_text())
    assert record["notebook_seconds"] == {"01_imagenet_comparison": 3.0}
    assert record["missing"] == ["02_flattening_ablation"]
    sentence = summary.readme_times(results)
    assert "is running in parts" in sentence and "Still to run: 02_flattening_ablation" in sentence
    assert "done so far, from an empty run cache at each part's start: 01 3 s." in sentence and "took" not in sentence

    state["fail_on"] = None                                           # the next part goes to the end
    sweep_module.reproduce("quick", results_dir=results, readme=None, resume=True)
    record = json.loads((executed / "provenance.json").read_text())
    assert record["notebook_seconds"] == {"01_imagenet_comparison": 3.0, "02_flattening_ablation": 3.0}
    assert record["missing"] == [] and record["cached_runs_at_start"] == 0
    assert [p["notebooks"] for p in record["parts"]] == [["01_imagenet_comparison"], ["02_flattening_ablation"]]
    assert [p["notebook"] for p in seen] == ["01_imagenet_comparison", "02_flattening_ablation"]   # 01 kept
    sentence = summary.readme_times(results)
    assert "took 6 s" in sentence and "in 2 parts" in sentence and "01 3 s, 02 3 s" in sentence

    with monkeypatch.context() as m:                                  # other code than the record's
        m.setattr(provenance, "result_fingerprint", lambda root=provenance.REPO: "0123456789ab")
        with pytest.raises(HipcoreError, match="provenance.json: its notebooks ran the code of commit ffffff.* "
                                               "resume in a checkout of the commit that holds this record"):
            sweep_module.reproduce("quick", results_dir=results, readme=None, resume=True)
    with pytest.raises(HipcoreError, match="recorded profile 'quick', not 'smoke'"):
        sweep_module.resumable(executed, "smoke", ["01_imagenet_comparison", "02_flattening_ablation"])
    path = executed / "provenance.json"
    path.write_text(path.read_text().replace('"missing": []', '"missing": [ ]'))
    with pytest.raises(ResultsChanged, match="provenance.json: changed since its folder was signed"):
        sweep_module.reproduce("quick", results_dir=results, readme=None, resume=True)

    dirty = tmp_path / "dirty"                                        # a part from an uncommitted tree
    state["fail_on"] = "02_flattening_ablation"
    clean["dirty"] = True
    with pytest.raises(KeyboardInterrupt):
        sweep_module.reproduce("quick", results_dir=dirty, readme=None)
    clean["dirty"] = False
    with pytest.raises(HipcoreError, match="provenance.json: not made by a clean commit"):
        sweep_module.reproduce("quick", results_dir=dirty, readme=None, resume=True)


def test_executed_notebooks_name_their_paths_relative_to_the_checkout(tmp_path):
    import nbformat

    from hipcore import provenance

    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"input_path": str(provenance.REPO / "notebooks" / "00_tour.ipynb"),
                                "output_path": "/elsewhere/out.ipynb"}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    sweep_module.relative_paths(path)
    meta = nbformat.read(path, as_version=4).metadata["papermill"]
    assert meta["input_path"] == "notebooks/00_tour.ipynb" and meta["output_path"] == "/elsewhere/out.ipynb"
    sweep_module.relative_paths(tmp_path / "missing.ipynb")                 # a notebook that never got written


def test_kernels_are_asked_to_shut_down_without_an_interrupt(monkeypatch):
    """jupyter_client interrupts a kernel before shutting it down, and a kernel still handling a
    message logs 'KeyboardInterrupt caught in kernel': the sweep's manager sends no interrupt then."""
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    sent = []

    async def interrupt(self):
        sent.append(self.shutting_down)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", interrupt)
    manager = sweep_module.quiet_kernel_manager()()
    manager.shutting_down = False
    asyncio.run(manager._async_interrupt_kernel())                 # an interrupt asked for while running
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())                 # the one shutdown_kernel sends
    assert sent == [False]


def test_run_notebook_uses_the_quiet_kernel_manager(tmp_path, monkeypatch):
    import papermill

    seen = {}
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **kw: seen.update(kw))
    path = write_notebook(tmp_path / "x.ipynb", "width = 3")
    sweep_module.run_notebook(path, tmp_path / "out.ipynb", {"width": 4})
    assert issubclass(seen["kernel_manager_class"], sweep_module.quiet_kernel_manager().__mro__[1])
    assert seen["kernel_manager_class"].__name__ == "QuietShutdown"


def test_kernel_sockets_live_outside_the_notebooks_folder(tmp_path):
    """The kernel's IPC sockets are made in a temporary folder of their own, never in the
    folder the notebook runs in, and that folder is gone afterwards."""
    path = write_notebook(tmp_path / "x.ipynb", "width = 3",
                          "import os\nhere = [n for n in os.listdir('.') if 'ipc' in n or n.startswith('kernel')]\n"
                          "assert not here, here")
    temp = tempfile.gettempdir()
    before = set(os.listdir(temp))
    sweep_module.run_notebook(path, tmp_path / "out" / "x.ipynb", {"width": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "x.ipynb"]
    left = {n for n in set(os.listdir(temp)) - before if n.startswith("hipcore-kernel-")}
    assert not left, left


def test_reproduce_commit_commits_each_notebook_as_it_ends(tmp_path, monkeypatch):
    """--commit: one commit per notebook, results/ and the README, the message naming what is left."""
    import subprocess

    from hipcore import provenance

    results, readme, _, _ = _stand_in_notebooks(tmp_path, monkeypatch)
    for name, value in (("GIT_AUTHOR_NAME", "t"), ("GIT_AUTHOR_EMAIL", "t@t"), ("GIT_COMMITTER_NAME", "t"),
                        ("GIT_COMMITTER_EMAIL", "t@t")):
        monkeypatch.setenv(name, value)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "-m", "start"], check=True)
    with monkeypatch.context() as m:
        m.setattr(provenance, "git_state", lambda root=provenance.REPO: {"commit": "f" * 40, "dirty": True})
        with pytest.raises(HipcoreError, match="--commit needs a clean checkout"):
            sweep_module.reproduce("smoke", results_dir=results, readme=readme, commit=True)
    monkeypatch.setattr(provenance, "git_state", lambda root=provenance.REPO: {"commit": "f" * 40, "dirty": False})
    sweep_module.reproduce("smoke", results_dir=results, readme=readme, commit=True)
    log = subprocess.run(["git", "-C", str(tmp_path), "log", "--format=%s"], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert log[0].startswith("02_flattening_ablation at smoke from reproduce, part 1")
    assert log[0].endswith("every notebook done")
    assert log[1].startswith("01_imagenet_comparison at smoke") and log[1].endswith("still to run: 02")
    assert subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain"], capture_output=True,
                          text=True).stdout == ""                     # nothing the run wrote is left out


def test_a_part_runs_only_the_notebooks_it_names(tmp_path, monkeypatch):
    """--notebooks 02: 01 stays to run (recorded missing), and the next part resumes with it."""
    import json

    from hipcore import provenance

    results, _, seen, _ = _stand_in_notebooks(tmp_path, monkeypatch)
    monkeypatch.setattr(provenance, "git_state", lambda root=provenance.REPO: {"commit": "f" * 40, "dirty": False})
    with pytest.raises(HipcoreError, match="--notebooks: 09: not among the numbered notebooks \\(01, 02\\)"):
        sweep_module.reproduce("quick", results_dir=results, readme=None, only=["09"])
    sweep_module.reproduce("quick", results_dir=results, readme=None, only=["02"])
    record = json.loads((results / "executed" / "quick" / "provenance.json").read_text())
    assert record["notebook_seconds"] == {"02_flattening_ablation": 3.0}
    assert record["missing"] == ["01_imagenet_comparison"]
    sweep_module.reproduce("quick", results_dir=results, readme=None, resume=True, only=["01"])
    record = json.loads((results / "executed" / "quick" / "provenance.json").read_text())
    assert record["missing"] == [] and [p["notebooks"] for p in record["parts"]] == [["02_flattening_ablation"],
                                                                                    ["01_imagenet_comparison"]]
    assert [p["notebook"] for p in seen] == ["02_flattening_ablation", "01_imagenet_comparison"]


def _runs(results, notebook: str, *names: str, pretrain: str | None = None) -> None:
    """results/<notebook>/quick/runs.json naming runs `names` (seed 0, 1, ...), each with `pretrain`."""
    from hipcore.experiments.common import write_runs

    folder = results / notebook / "quick"
    folder.mkdir(parents=True, exist_ok=True)
    write_runs(folder, [{"arm": "HiP", "seed": seed, "run_dir": f"runs/{name}",
                         **({"pretrain_run_dir": f"runs/{pretrain}"} if pretrain else {})}
                        for seed, name in enumerate(names)])


def test_notebooks_share_runs_through_each_other(tmp_path):
    """03 shares a run with 01 and another with 06, so 01 and 06 share runs through 03; a shared
    MAE pretraining counts as a shared run; a notebook without runs.json shares nothing."""
    _runs(tmp_path, "01_a", "supervised-1", "supervised-2")
    _runs(tmp_path, "03_c", "supervised-2", "supervised-3")
    _runs(tmp_path, "06_f", "supervised-3")
    _runs(tmp_path, "04_d", "supervised-4", pretrain="pretrain-9")
    _runs(tmp_path, "07_g", "supervised-5", pretrain="pretrain-9")
    shared = sweep_module.shared_runs(tmp_path, "quick", ["00_t", "01_a", "03_c", "04_d", "06_f", "07_g"])
    assert shared["01_a"] == {"03_c": "supervised-2", "06_f": "supervised-3"}
    assert shared["06_f"] == {"03_c": "supervised-3", "01_a": "supervised-2"}
    assert shared["04_d"] == {"07_g": "pretrain-9"} and shared["00_t"] == {}
    sweep_module.check_part(["01_a", "03_c", "06_f"], shared)
    sweep_module.check_part(["00_t", "04_d", "07_g"], shared)
    with pytest.raises(HipcoreError, match=r"reproduce: 01, 03, 06 share runs \(such as supervised-3\) and this "
                                           r"part runs 01, 03 without 06: .*name them all with --notebooks"):
        sweep_module.check_part(["01_a", "03_c"], shared)


def test_a_part_that_splits_shared_runs_is_refused(tmp_path, monkeypatch):
    """01 and 02 trained a run in common: a part of 02 alone is refused before anything runs, and
    a part of both runs."""
    from hipcore import provenance
    from hipcore.experiments.common import write_runs

    results, _, seen, _ = _stand_in_notebooks(tmp_path, monkeypatch)
    monkeypatch.setattr(provenance, "git_state", lambda root=provenance.REPO: {"commit": "f" * 40, "dirty": False})
    for notebook, runs in (("01_imagenet_comparison", ("supervised-a", "supervised-b")),
                           ("02_flattening_ablation", ("supervised-b", "supervised-c"))):
        folder = results / notebook / "quick"
        folder.mkdir(parents=True)
        write_runs(folder, [{"arm": arm, "seed": 0, "run_dir": f"runs/{run}", "test_accuracy": top1}   # the
                            for arm, run, top1 in zip(("base", "treated"), runs, (1.0, 2.0))])   # stand-in's pair
    with pytest.raises(HipcoreError, match="reproduce: 01, 02 share runs \\(such as supervised-b\\) and this part "
                                           "runs 02 without 01"):
        sweep_module.reproduce("quick", results_dir=results, readme=None, only=["02"])
    assert seen == [] and not (results / "executed").exists()
    sweep_module.reproduce("quick", results_dir=results, readme=None, only=["01", "02"])
    assert [p["notebook"] for p in seen] == ["01_imagenet_comparison", "02_flattening_ablation"]
