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


def test_a_notebook_runs_on_the_datasets_its_registry_rows_allow(tmp_path):
    from hipcore.notebook import check_data

    assert check_data("01_imagenet_comparison", "fashion_mnist", None) is None
    assert check_data("04_point_clouds", "modelnet40", str(tmp_path)) == tmp_path
    with pytest.raises(ParameterError, match="dataset='parts3d' is not allowed; choose one of 'fashion_mnist', "
                                             "'imagefolder'"):
        check_data("01_imagenet_comparison", "parts3d", None)
    with pytest.raises(ParameterError, match="dataset='imagefolder' needs data_dir"):
        check_data("03_mae_positional_embeddings", "imagefolder", None)
    with pytest.raises(ParameterError, match="is not a folder"):
        check_data("00_tour", "imagefolder", str(tmp_path / "nothing"))


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


# ---- reading committed results: figures and verdicts in seconds, nothing trained or written ----

def test_setup_reads_a_finished_results_folder_unless_asked_to_train(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.delenv("HIPCORE_PROFILE", raising=False)
    monkeypatch.delenv("HIPCORE_TRAIN", raising=False)
    table = {p: {"epochs": 2, "seeds": (0, 1)} for p in PROFILES}
    out = tmp_path / "99_test" / "quick"
    out.mkdir(parents=True)
    (out / "comparisons.csv").write_text("kept\n")
    assert not setup("99_test", profile="quick", table=table, results_dir=tmp_path, train=False).reading
    assert not (out / "comparisons.csv").exists()                   # no finished run there: it trains afresh
    (out / "comparisons.csv").write_text("kept\n")
    (out / "provenance.json").write_text(json.dumps({"commit": "abc1234def", "wall_seconds": 600,
                                                     "machine": {"cpu": "Some CPU", "cores": 2, "precision": "bf16"}}))
    s = setup("99_test", profile="quick", table=table, results_dir=tmp_path, train=False)
    assert s.reading and (out / "comparisons.csv").read_text() == "kept\n"
    assert "reading the committed results of profile 'quick'" in capsys.readouterr().out
    same = setup("99_test", profile="quick", table=table, results_dir=tmp_path, train=False,
                 seeds=[0, 1], overrides={"epochs": 2})               # the profile's own values: still read
    assert same.reading
    for kwargs in ({"train": True}, {"seeds": [3]}, {"overrides": {"epochs": 5}}, {"default_data": False}):
        trained = setup("99_test", profile="quick", table={**table}, results_dir=tmp_path,
                        **{"train": False, **kwargs})
        assert not trained.reading, kwargs
    assert "epochs set, unlike the committed results: training" in capsys.readouterr().out
    (out / "provenance.json").write_text(json.dumps({"commit": "abc1234def"}))
    monkeypatch.setenv("HIPCORE_TRAIN", "1")
    assert not setup("99_test", profile="quick", table=table, results_dir=tmp_path, train=False).reading
    with pytest.raises(ParameterError, match="train='yes' is not allowed"):
        setup("99_test", profile="quick", table=table, results_dir=tmp_path, train="yes")


READERS = [p for p in NOTEBOOKS if p.stem != "00_tour"]      # the tour trains nothing


def run_at_default(path, tmp_path, monkeypatch):
    """Execute `path` at the quick profile as a reader would (no HIPCORE_TRAIN, an empty run
    cache): (its output text, its PNG images, whether its committed folder is byte-identical after)."""
    import hashlib

    import papermill

    monkeypatch.delenv("HIPCORE_PROFILE", raising=False)
    monkeypatch.delenv("HIPCORE_TRAIN", raising=False)
    monkeypatch.setenv("HIPCORE_RUNS", str(tmp_path / "runs"))
    folder = path.parent.parent / "results" / path.stem / "quick"
    if not (folder / "provenance.json").is_file():
        pytest.fail(f"{folder} holds no committed quick results to read")

    def digests():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    before = digests()
    executed = papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(path.parent),
                                          parameters={"profile": "quick"}, progress_bar=False)
    text = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    images = sum("image/png" in o.get("data", {}) for c in executed["cells"] for o in c.get("outputs", []))
    return text, images, digests() == before


@pytest.mark.parametrize("path", READERS, ids=[p.stem for p in READERS])
def test_a_notebook_at_its_default_reads_the_committed_quick_results(path, tmp_path, monkeypatch):
    text, images, unchanged = run_at_default(path, tmp_path, monkeypatch)
    assert "reading the committed results of profile 'quick'" in text and "nothing is trained" in text
    assert images >= 1
    assert unchanged                                                  # nothing rewritten
    assert not (tmp_path / "runs").exists()                           # nothing trained


def test_the_tour_at_its_default_draws_afresh_and_keeps_the_committed_folder(tmp_path, monkeypatch):
    path = next(p for p in NOTEBOOKS if p.stem == "00_tour")
    text, images, unchanged = run_at_default(path, tmp_path, monkeypatch)
    assert "the committed results of profile 'quick' (00_tour/quick) are kept" in text
    assert images >= 2
    assert unchanged                                                  # nothing rewritten
