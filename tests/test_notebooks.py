"""Notebooks are stored clean, parameterised by papermill's tagged cell, and refuse bad input."""

import ast
import json
from pathlib import Path

import pytest

from hipcore.notebook import PROFILES, ParameterError, choose, profile_choice, setup

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert dirty == [], f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_badges_and_one_literal_parameters_cell(path):
    cells = json.loads(path.read_text())["cells"]
    assert "mybinder.org" in "".join(cells[0]["source"]) and "colab" in "".join(cells[0]["source"]).lower()
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    tree = ast.parse("".join(tagged[0]["source"]))
    names = []
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign), f"{path.name}: parameters cell holds only assignments"
        ast.literal_eval(stmt.value)                      # literals only
        names += [t.id for t in stmt.targets]
    assert {"profile", "results_dir"} <= set(names)


def test_profile_comes_from_the_environment_and_is_checked(monkeypatch):
    monkeypatch.setenv("HIPCORE_PROFILE", "smoke")
    assert profile_choice("quick")[0] == "smoke"
    monkeypatch.setenv("HIPCORE_PROFILE", "")
    assert profile_choice("full")[0] == "full"
    with pytest.raises(ParameterError, match="choose one of 'auto', 'smoke', 'binder', 'quick', 'full', 'paper'"):
        profile_choice("fast")[0]
    with pytest.raises(ParameterError, match="ordering='spiral' is not allowed"):
        choose("ordering", "spiral", ("raster", "hilbert"))


def test_setup_takes_the_profile_row_and_checks_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("HIPCORE_PROFILE", raising=False)
    table = {p: {"epochs": i, "seeds": (0, 1)} for i, p in enumerate(PROFILES)}
    s = setup("99_test", profile="full", table=table, results_dir=tmp_path, overrides={"epochs": None})
    assert s["epochs"] == PROFILES.index("full") and s.seeds == (0, 1) and s.out == tmp_path / "99_test" / "full"
    with pytest.raises(ParameterError, match="unknown setting 'epoch'"):
        setup("99_test", profile="full", table=table, results_dir=tmp_path, overrides={"epoch": 3})
    with pytest.raises(ParameterError, match="seeds"):
        setup("99_test", profile="full", table=table, results_dir=tmp_path, seeds=[-1])


def test_bad_parameters_stop_a_notebook_in_its_first_cells(tmp_path, monkeypatch):
    import papermill

    monkeypatch.delenv("HIPCORE_PROFILE", raising=False)
    path = NOTEBOOKS[0]
    with pytest.raises(papermill.PapermillExecutionError, match="ordering='spiral' is not allowed"):
        papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(path.parent),
                                   parameters={"profile": "smoke", "ordering": "spiral",
                                               "results_dir": str(tmp_path)}, progress_bar=False)


@pytest.mark.parametrize("stem, figures", [("00_tour", ("attention", "reconstructions")),
                                           ("03_mae_positional_embeddings", ("position_tables", "reconstructions"))])
def test_pretrained_draws_the_figures_from_the_shipped_weights_without_training(stem, figures, tmp_path, monkeypatch):
    import papermill

    monkeypatch.setenv("HIPCORE_PROFILE", "smoke")
    monkeypatch.setenv("HIPCORE_RUNS", str(tmp_path / "runs"))
    path = next(p for p in NOTEBOOKS if p.stem == stem)
    executed = papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(path.parent),
                                          parameters={"pretrained": True, "results_dir": str(tmp_path)},
                                          progress_bar=False)
    first = next("".join("".join(o.get("text", "")) for o in c["outputs"]) for c in executed["cells"]
                 if c.get("outputs"))                                # the first cell that prints
    assert "figures from the shipped weights" in first and "small3_fashion_mnist_quick_mae" in first
    out = tmp_path / stem / "pretrained"
    assert all((out / f"{name}.png").is_file() for name in figures)
    assert not (tmp_path / stem / "smoke").exists() and not (out / "comparisons.csv").exists()
    assert not (tmp_path / "runs").exists()                          # nothing trained
