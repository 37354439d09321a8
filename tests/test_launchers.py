"""The notebooks' badges and Colab cell come from pyproject.toml's one repository address, and
the Colab cell installs, fetches the data and reports the GPU (run here with stand-ins)."""

import json
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from hipcore import launchers

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
URL = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def cells(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]


def test_the_address_is_declared_once():
    assert launchers.repository_url(ROOT / "pyproject.toml") == URL
    assert (ROOT / "pyproject.toml").read_text().count(launchers.github_path(URL)) == 1
    with pytest.raises(ValueError, match="not https://github.com"):
        launchers.github_path("https://gitlab.com/a/b")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_badges_and_first_cell_match_pyproject(path):
    intro, first = cells(path)[:2]
    assert intro.startswith(launchers.badges(URL, path.stem))
    assert first == launchers.first_cell(URL, path.stem)
    assert not launchers.sync(path, URL, write=False)
    # every GitHub address in the notebook is the declared one's
    named = re.findall(r"(?:github(?:\.com)?|/gh)/([\w.-]+/[\w.-]+)", "".join(cells(path)))
    assert len(named) == 3 and set(named) == {launchers.github_path(URL)}


def test_sync_rewrites_an_outdated_notebook(tmp_path):
    copy = tmp_path / NOTEBOOKS[0].name
    copy.write_text(NOTEBOOKS[0].read_text().replace(launchers.github_path(URL), "old/place"))
    assert launchers.sync(copy, URL) and not launchers.sync(copy, URL, write=False)
    assert copy.read_text() == NOTEBOOKS[0].read_text()


def run_first_cell(path, monkeypatch, tmp_path, *, colab: bool, gpu: bool = False):
    """Execute the notebook's first cell with a stand-in google.colab, a fake subprocess.run
    (nothing is cloned or installed) and a fake CUDA; returns the commands it ran."""
    commands = []

    def fake_run(args, check=False, **kwargs):
        commands.append(list(args))
        if args[:2] == ["git", "clone"]:
            (Path(args[-1]) / "notebooks").mkdir(parents=True)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", fake_run)
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Stand-in GPU")
    exec(compile(cells(path)[1], f"{path.name}[1]", "exec"), {})
    return commands


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_cell_installs_fetches_and_reports_the_gpu(path, monkeypatch, tmp_path, capsys):
    commands = run_first_cell(path, monkeypatch, tmp_path, colab=True, gpu=True)
    clone = tmp_path / "hipcore"
    extras = "notebooks,bench" if path.stem == "05_efficiency" else "notebooks"
    assert commands == [["git", "clone", "-q", "--depth", "1", URL, str(clone)],
                        [sys.executable, "-m", "pip", "install", "-q", f"{clone}[{extras}]"],
                        [sys.executable, "-m", "hipcore", "data", "fetch", "fashion-mnist"]]
    assert Path.cwd() == clone / "notebooks"          # runs and results land in the clone
    assert "training on the GPU (Stand-in GPU)" in capsys.readouterr().out
    # a second run (the clone is there) installs again but does not clone again
    monkeypatch.chdir(tmp_path)
    again = run_first_cell(path, monkeypatch, tmp_path, colab=True, gpu=False)
    assert [c[:2] for c in again] == [[sys.executable, "-m"]] * 2
    assert "no GPU" in capsys.readouterr().out


def test_first_cell_does_nothing_off_colab(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert run_first_cell(NOTEBOOKS[0], monkeypatch, tmp_path, colab=False) == []
    assert Path.cwd() == tmp_path


def test_the_python_floor_is_the_same_in_pyproject_and_the_readme():
    root = Path(__file__).resolve().parent.parent
    floor = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    version = re.fullmatch(r">=(\d+\.\d+)", floor).group(1)
    assert f"Python {version}+" in (root / "README.md").read_text()
    assert tuple(map(int, version.split("."))) >= (3, 11)          # tomllib is imported by the package


def test_the_readme_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^- `(\d\d_[a-z_0-9]+)`:", readme, flags=re.M))
    assert listed == {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
