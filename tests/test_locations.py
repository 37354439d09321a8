"""Notebooks, runs and results are found from the checkout or HIPCORE_HOME, never from the
installed package's own folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hipcore
from hipcore import locations
from hipcore.experiments import common

ROOT = Path(__file__).resolve().parent.parent


def make_checkout(folder: Path) -> Path:
    (folder / "notebooks").mkdir(parents=True)
    (folder / "pyproject.toml").write_text('[project]\nname = "hipcore"\n')
    return folder


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No HIPCORE_HOME, the current directory outside any checkout, the package 'installed'
    in a site-packages folder."""
    monkeypatch.delenv(locations.HOME_ENV, raising=False)
    monkeypatch.delenv(locations.RUNS_ENV, raising=False)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(locations, "PACKAGE_DIR", tmp_path / "site-packages" / "hipcore")
    return tmp_path


def test_home_is_the_checkout_around_the_current_directory(nowhere, monkeypatch):
    with pytest.raises(locations.HomeNotFound, match="HIPCORE_HOME"):
        locations.home()
    checkout = make_checkout(nowhere / "clone")
    (checkout / "notebooks" / "deep").mkdir()
    monkeypatch.chdir(checkout / "notebooks" / "deep")
    assert locations.home() == checkout.resolve()
    assert locations.runs_dir() == checkout.resolve() / "runs"
    assert locations.results_dir() == checkout.resolve() / "results"


def test_a_project_of_another_name_is_not_a_checkout(nowhere, monkeypatch):
    other = make_checkout(nowhere / "other")
    (other / "pyproject.toml").write_text('[project]\nname = "hipcore-fork"\n')
    monkeypatch.chdir(other)
    with pytest.raises(locations.HomeNotFound):
        locations.home()


def test_environment_names_the_home_and_the_runs(nowhere, monkeypatch):
    monkeypatch.setenv(locations.HOME_ENV, str(nowhere / "missing"))
    with pytest.raises(locations.HomeNotFound, match="holds no notebooks"):
        locations.home()
    home = make_checkout(nowhere / "elsewhere")
    monkeypatch.setenv(locations.HOME_ENV, str(home))
    assert locations.notebooks_dir() == home.resolve() / "notebooks"
    monkeypatch.setenv(locations.RUNS_ENV, str(nowhere / "cache"))
    assert locations.runs_dir() == (nowhere / "cache").resolve()


def test_run_folders_go_to_the_home(nowhere, monkeypatch):
    home = make_checkout(nowhere / "clone")
    monkeypatch.setenv(locations.HOME_ENV, str(home))
    settings = dict(common.IMAGE_TABLE["smoke"])
    pre, sup = common.train_configs(common.Arm("x", mae=True), 0, settings, dataset="shapes3d")
    for config in (pre, sup):
        assert Path(config.run_dir).parent == home.resolve() / "runs"


def test_non_editable_install_runs_a_notebook_from_a_checkout(tmp_path):
    """pip-install the package (not -e) into a folder, then run notebook 00 at smoke through
    `python -m hipcore sweep` from a checkout that holds no package code. The build uses the
    environment's setuptools (>= 77, as the Makefile installs), so it needs no network."""
    source = tmp_path / "source"                         # built away from the worktree: no build/ left there
    shutil.copytree(ROOT / "hipcore", source / "hipcore", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, capture_output=True)
    checkout = tmp_path / "checkout"
    (checkout / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "00_tour.ipynb", checkout / "notebooks")
    shutil.copy(ROOT / "pyproject.toml", checkout)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIPCORE_") and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    where = subprocess.run([sys.executable, "-c", "import hipcore; print(hipcore.__file__)"], cwd=checkout,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site)               # the installed copy, not the worktree
    shipped = subprocess.run([sys.executable, "-c", "import hipcore; names = hipcore.pretrained_names(); "
                              "[hipcore.pretrained(n) for n in names]; print(' '.join(names))"],
                             cwd=checkout, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert shipped and shipped == hipcore.pretrained_names()    # the weights are package data, and verify
    done = subprocess.run([sys.executable, "-m", "hipcore", "sweep", "00", "--profile", "smoke"],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    executed = list((checkout / "results" / "sweeps").glob("*.ipynb"))
    assert len(executed) == 1
    outputs = json.dumps([c.get("outputs", []) for c in json.loads(executed[0].read_text())["cells"]])
    assert "profile smoke" in outputs and "figures from a model with random weights" in outputs
    assert "IProgress" not in outputs
    left_in_site = {p.name for p in site.iterdir()} - {"hipcore", "bin"}
    assert all(name.startswith("hipcore-") and name.endswith(".dist-info") for name in left_in_site), left_in_site
    assert not (site / "runs").exists() and not (site / "results").exists()


def test_a_relative_results_dir_is_read_from_the_notebooks_folder_wherever_the_run_starts(tmp_path, monkeypatch):
    from hipcore import locations, notebook

    monkeypatch.chdir(tmp_path)                                   # papermill started elsewhere
    assert notebook.results_folder("../results") == (locations.home() / "results").resolve()
    assert notebook.results_folder(tmp_path / "mine") == tmp_path / "mine"
