"""Shipped weights: hipcore.pretrained loads them verified, `python -m hipcore weights` exports
them from the notebooks' run cache with provenance, and every bad case is named."""

import re
import shutil
from pathlib import Path

import pytest
import torch

import hipcore
from hipcore import cli, notebook
from hipcore.data import load_dataset
from hipcore.experiments import common, tour
from hipcore.experiments import mae_positions as mp
from hipcore.experiments.export import export, written_names
from hipcore.experiments.image_arms import HIP_MAE
from hipcore.model import check_fits
from hipcore.pretrained import (
    KINDS,
    RunsNotFound,
    UnknownWeights,
    WeightsNameError,
    describe,
    entry,
    pair,
    read_manifest,
)
from hipcore.train import CheckpointError
from hipcore.train.checkpoint import save_atomic

# A tiny version of the image notebooks' smoke settings: two MAE and two fine-tuning steps.
TINY = {**common.IMAGE_TABLE["smoke"], "limit_train": 64, "limit_test": 64, "batch_size": 32}


def strings(x):
    """Every string inside a JSON value."""
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield k
            yield from strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from strings(v)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Notebook 01's HiP + MAE arm trained at TINY in a fresh run cache, then exported."""
    root = tmp_path_factory.mktemp("weights")
    row = common.run_arm(HIP_MAE, 0, TINY, dataset="fashion_mnist", runs_dir=root / "runs")
    paths = export("smoke", settings=TINY, runs_dir=root / "runs", out=root / "out")
    return root, row, paths


def test_the_package_ships_an_mae_model_and_its_classifier():
    names = hipcore.pretrained_names()
    shipped = pair(dataset="fashion_mnist")
    assert sorted([shipped.mae, shipped.classifier]) == names
    manifest = read_manifest()
    for name in names:
        e = entry(name)
        assert e["kind"] in KINDS and e["profile"] == "quick" and e["seed"] == 0 and e["arm"] == HIP_MAE.label
        assert e["source"]["code_fingerprint"] == e["exported"]["code_fingerprint"]
        assert e["source"]["run_folder"].startswith(e["source"]["run_id"] + "-" + e["source"]["code_fingerprint"])
        assert e["exported"]["commit"] and 1e6 < e["bytes"] < 2e7       # a few MB of weights, no optimiser state
    assert not [s for s in strings(manifest) if s.startswith(("/", "~")) or ":\\" in s]   # no machine paths
    assert entry(shipped.classifier)["metric"]["unit"] == "%" and "MAE loss" in entry(shipped.mae)["metric"]["name"]


def test_the_shipped_classifier_classifies_and_the_mae_model_reconstructs():
    shipped = pair(dataset="fashion_mnist")
    mae, classifier = shipped.models()
    assert not classifier.training and classifier.config.num_classes == 10 and mae.config.num_classes == 0
    test = load_dataset("fashion_mnist", "test", ordering="raster")
    check_fits(classifier, test.modalities)
    inputs, labels = test.get_batch(torch.arange(200))
    with torch.no_grad():
        top1 = (classifier(inputs, reconstruct=False).logits.argmax(-1) == labels).float().mean().item()
        shape = mae({"image": inputs["image"][:4]}).reconstruction["image"].shape
    recorded = entry(shipped.classifier)["metric"]["value"]      # top-1 % on its 2,000 test images
    assert top1 > 0.45 and abs(100 * top1 - recorded) < 10        # chance is 10%; 200 images: sd ~3.3
    assert shape == (4, 784, 1)
    assert f"test top-1 {recorded:.2f}%" in describe(shipped.classifier)


def test_pretrained_stays_the_function_beside_its_module():
    from hipcore.pretrained import pretrained_names  # the submodule, imported again
    assert callable(hipcore.pretrained) and hipcore.pretrained_names is pretrained_names


def test_unknown_name_lists_the_names():
    with pytest.raises(UnknownWeights, match="no shipped weights named 'small9'; the names are: small3_"):
        hipcore.pretrained("small9")
    with pytest.raises(UnknownWeights, match="shipped pairs: small3 on fashion_mnist"):
        pair(dataset="fashion_mnist", variant="small5")


def test_export_round_trip(exported):
    root, row, paths = exported
    out = root / "out"
    assert [p.name.split(".")[0] for p in paths] == ["small3_fashion_mnist_smoke_mae",
                                                     "small3_fashion_mnist_smoke_classifier", "manifest"]
    assert [p.name for p in paths[:2]] == [entry(p.name.split(".")[0], out)["file"] for p in paths[:2]]
    pre, sup = common.train_configs(HIP_MAE, 0, TINY, dataset="fashion_mnist", runs_dir=root / "runs")
    for kind, cfg in (("mae", pre), ("classifier", sup)):
        name = f"small3_fashion_mnist_smoke_{kind}"
        model = hipcore.pretrained(name, folder=out)
        saved = torch.load(Path(cfg.run_dir) / "last.pt", weights_only=True)
        assert model.state_dict().keys() == saved["model"].keys()
        assert all(torch.equal(v, saved["model"][k]) for k, v in model.state_dict().items())
        e = entry(name, out)
        assert e["source"]["run_id"] == cfg.run_id and e["source"]["run_folder"] == Path(cfg.run_dir).name
        assert "run_dir" not in e["source"]["training"] and e["data"]["limit_test"] == 64
    assert entry("small3_fashion_mnist_smoke_classifier", out)["metric"]["value"] == pytest.approx(row["test_accuracy"])
    assert entry("small3_fashion_mnist_smoke_mae", out)["metric"]["value"] == pytest.approx(row["pretrain_test_loss"])
    assert (entry("small3_fashion_mnist_smoke_classifier", out)["source"]["training"]["init_from"]
            == f"{Path(pre.run_dir).name}/last.pt")
    text = (out / "manifest.json").read_text()
    assert str(root) not in text and str(Path.home()) not in text
    again = export("smoke", settings=TINY, runs_dir=root / "runs", out=root / "again")
    assert [p.read_bytes() for p in again[:2]] == [p.read_bytes() for p in paths[:2]]   # equal runs, equal files
    assert pair(dataset="fashion_mnist", folder=out).mask_ratio == HIP_MAE.mask_ratio


def test_an_export_killed_before_its_manifest_leaves_the_old_set_and_a_seed_keeps_its_own(exported, tmp_path,
                                                                                            monkeypatch):
    from hipcore.experiments import export as exporting

    root, _, _ = exported
    out = tmp_path / "w"
    shutil.copytree(root / "out", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = {**TINY, "lr": TINY.get("lr", 1e-3) * 2}                 # other runs: other weights
    common.run_arm(HIP_MAE, 0, other, dataset="fashion_mnist", runs_dir=root / "runs-other")

    def killed(path, text):
        raise KeyboardInterrupt("killed before the manifest")
    monkeypatch.setattr(exporting, "write_text_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        export("smoke", settings=other, runs_dir=root / "runs-other", out=out)
    monkeypatch.undo()
    for name in ("small3_fashion_mnist_smoke_mae", "small3_fashion_mnist_smoke_classifier"):
        hipcore.pretrained(name, folder=out)                            # the old set still verifies
    assert all((out / n).read_bytes() == b for n, b in before.items())  # at b709275: .pt replaced first
    common.run_arm(HIP_MAE, 1, TINY, dataset="fashion_mnist", runs_dir=root / "runs")
    export("smoke", settings=TINY, seed=1, runs_dir=root / "runs", out=out)
    names = sorted(read_manifest(out)["weights"])
    assert "small3_fashion_mnist_smoke_seed1_classifier" in names and "small3_fashion_mnist_smoke_classifier" in names
    assert entry("small3_fashion_mnist_smoke_classifier", out)["seed"] == 0      # seed 1 did not replace it
    export("smoke", settings=other, runs_dir=root / "runs-other", out=out)    # the killed export, done
    files = {e["file"] for e in read_manifest(out)["weights"].values()}
    assert {p.name for p in out.glob("*.pt")} == files                      # no file of the old set left


@pytest.mark.parametrize("name", ["../small3_fashion_mnist_smoke_mae", "a/b", "a\\b", "", "x..y"])
def test_a_weights_name_with_a_folder_part_is_refused_at_load(exported, name):
    root, _, _ = exported
    with pytest.raises(WeightsNameError, match=r"^weights name .* (holds|is not a name)"):   # at 66d0af7: looked up
        hipcore.pretrained(name, folder=root / "out")


@pytest.mark.parametrize("profile", ["a/b", "a\\b", "..", "../up"])
def test_a_weights_name_with_a_folder_part_is_refused_at_export_before_anything_is_written(exported, tmp_path,
                                                                                           profile):
    root, _, _ = exported
    named = repr(f"small3_fashion_mnist_{profile}_")[:-1]                # as the message quotes it
    with pytest.raises(WeightsNameError, match=rf"^weights name {re.escape(named)}"):
        export(profile, settings=TINY, runs_dir=root / "runs", out=tmp_path / "w")   # at 66d0af7: written
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_weights_file_is_named(exported, tmp_path):
    root, _, _ = exported
    out = tmp_path / "w"
    shutil.copytree(root / "out", out)
    name = "small3_fashion_mnist_smoke_mae"
    path = out / entry(name, out)["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                                   # one flipped byte, same size
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{name}.*pt of '{name}' does not match its SHA-256"):
        hipcore.pretrained(name, folder=out)
    path.write_bytes(bytes(data[:1000]))
    with pytest.raises(CheckpointError, match="holds 1,000 bytes where the manifest says .* truncated"):
        hipcore.pretrained(name, folder=out)
    path.unlink()
    with pytest.raises(CheckpointError, match=f"{name}.*pt of '{name}' is missing"):
        hipcore.pretrained(name, folder=out)


def test_missing_or_unfinished_runs_say_to_run_notebook_01(exported, tmp_path):
    root, _, _ = exported
    with pytest.raises(RunsNotFound, match="does not exist. Run notebook 01_imagenet_comparison at profile smoke"):
        export("smoke", settings=TINY, runs_dir=tmp_path / "empty", out=tmp_path / "w")
    assert not (tmp_path / "w").exists()
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs", runs)
    pre, _ = common.train_configs(HIP_MAE, 0, TINY, dataset="fashion_mnist", runs_dir=runs)
    last = Path(pre.run_dir) / "last.pt"
    state = torch.load(last, weights_only=True)
    state["step"] -= 1                                             # as a run stopped one step short
    save_atomic({k: v for k, v in state.items() if k != "digest"}, last)
    with pytest.raises(RunsNotFound, match=f"stopped at step {state['step']} of {state['step'] + 1}. Run notebook 01"):
        export("smoke", settings=TINY, runs_dir=runs, out=tmp_path / "w")


def test_the_command_describes_each_file_it_wrote_by_its_manifest_name(exported):
    root, _, paths = exported
    names = written_names(paths)
    assert names == ["small3_fashion_mnist_smoke_mae", "small3_fashion_mnist_smoke_classifier"]
    assert all(path.stem != name for path, name in zip(paths, names))     # the files carry their hash
    assert "MAE loss" in describe(names[0], root / "out")


def test_the_command(exported, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["weights", "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert all(option in help_text for option in ("--profile", "--seed", "--runs-dir", "--out"))
    code = cli.main(["weights", "--profile", "smoke", "--runs-dir", str(tmp_path / "none"), "--out",
                     str(tmp_path / "w")])
    assert code == 2 and "error: no finished run of notebook 01's arm" in capsys.readouterr().err


def test_notebook_parameter_is_checked_and_takes_the_shipped_variant_and_seed(tmp_path, monkeypatch):
    monkeypatch.delenv("HIPCORE_PROFILE", raising=False)
    assert notebook.shipped_weights(False, dataset="fashion_mnist") is None
    for bad in (1, "yes", None):
        with pytest.raises(notebook.ParameterError, match="choose True or False"):
            notebook.shipped_weights(bad, dataset="fashion_mnist")
    with pytest.raises(notebook.ParameterError, match="pretrained=True: no shipped weights for imagefolder"):
        notebook.shipped_weights(True, dataset="imagefolder")
    shipped = notebook.shipped_weights(True, dataset="fashion_mnist")
    S = notebook.setup("03_x", profile="full", table=mp.TABLE, results_dir=tmp_path, shipped=shipped,
                       overrides={"variant": None, "precision": None})
    assert S["variant"] == shipped.variant == "small3" and S.seeds == (0,) and S.out == tmp_path / "03_x" / "pretrained"
    with pytest.raises(notebook.ParameterError, match="precision set, but pretrained=True trains nothing"):
        notebook.setup("03_x", profile="smoke", table=mp.TABLE, results_dir=tmp_path, shipped=shipped,
                       overrides={"precision": "bf16"})
    with pytest.raises(notebook.ParameterError, match="the shipped weights are seed 0's"):
        notebook.setup("03_x", profile="smoke", table=mp.TABLE, results_dir=tmp_path, shipped=shipped, seeds=[1, 2])
    with pytest.raises(notebook.ParameterError, match="shipped MAE was trained at 0.85"):
        mp.check_mask_ratios(0.75, 0.85, shipped)


def test_the_tour_refuses_data_in_another_order():
    shipped = pair(dataset="fashion_mnist")
    hilbert = load_dataset("fashion_mnist", "test", ordering="hilbert")
    with pytest.raises(ValueError, match="flattened in another order"):
        tour.models("small3", hilbert, shipped)
    classifier, mae = tour.models("small3", load_dataset("fashion_mnist", "test", ordering="raster"), shipped)
    assert classifier.config.num_classes == 10 and mae.config.num_classes == 0


@pytest.mark.parametrize("edit, what", [
    (lambda e: e.update(bytes="12"), "bytes (a whole number)"),
    (lambda e: e.update(seed=True), "seed (a whole number)"),
    (lambda e: e["model"].update(overrides=[1]), "model.overrides (a table)"),
    (lambda e: e.update(file="../../etc/passwd"), "file (a file name in the weights folder"),
    (lambda e: e.update(file="/abs/x.pt"), "file (a file name in the weights folder"),
])
def test_an_edited_manifest_entry_is_named_never_used(exported, tmp_path, edit, what):
    import json

    root, _, _ = exported
    out = tmp_path / "w"
    shutil.copytree(root / "out", out)
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest["weights"]["small3_fashion_mnist_smoke_mae"])
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=re.escape(what)):          # at b709275: TypeError or followed
        hipcore.pretrained("small3_fashion_mnist_smoke_mae", folder=out)
