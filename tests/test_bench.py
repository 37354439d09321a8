"""The efficiency benchmark runs end to end at tiny sizes and writes its documented files.

Nothing here is timed: the figures themselves come from `python -m hipcore bench` and the
notebook 05_efficiency.
"""

import argparse
import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from hipcore import device as precision
from hipcore import notebook
from hipcore.bench import MODEL_NAMES, PROFILES, check_settings, count_flops, loops, make_model, results, suite, timing
from hipcore.bench.cli import add_commands
from hipcore.bench.models import PERCEIVER_PYTORCH, grid_fourier_features
from hipcore.bench.timing import OOM, Trainee, measure
from hipcore.device import resolve
from hipcore.notebook import ParameterError

ROOT = Path(__file__).resolve().parent.parent

TINY = dict(PROFILES["smoke"], models=("hip_small",), sides=(8,), repeats=2, peak_sizes=(128,))


@pytest.fixture(scope="module")
def tiny_run():
    return suite.run(TINY, log=lambda _: None)


def test_every_notebook_profile_has_settings():
    assert set(PROFILES) == set(notebook.PROFILES)
    for settings in PROFILES.values():
        check_settings(dict(settings))


def test_run_writes_the_documented_files(tiny_run, tmp_path):
    paths = results.save(tiny_run, tmp_path)
    assert {p.name for p in paths} == {"metrics.csv", "steps.csv", "summary.json", "speed.png", "speed.svg"}
    with open(tmp_path / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == suite.COLUMNS
        rows = list(reader)
    assert [(r["model"], r["side"], r["status"]) for r in rows] == [("hip_small", "8", "ok")]
    row = rows[0]
    assert float(row["steps_per_s"]) > 0 and float(row["flops_per_step"]) > 0
    assert float(row["inputs_per_s"]) == pytest.approx(float(row["steps_per_s"]) * 64)
    achieved = float(row["achieved_gflops"])
    assert 0 < float(row["fraction_of_peak"]) == pytest.approx(achieved / float(row["peak_gflops"]))
    with open(tmp_path / "steps.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == TINY["repeats"]
    assert row["precision"] == resolve("auto", "cpu")
    assert float(row["fraction_of_best_peak"]) == pytest.approx(achieved / float(row["best_peak_gflops"]))
    assert float(row["best_peak_gflops"]) >= float(row["peak_gflops"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"machine", "load_start", "peak_gflops", "targets", "settings", "precision", "peaks_gflops"} <= set(summary)
    assert "fp32" in summary["peaks_gflops"]
    again = results.read(tmp_path)
    assert again.rows[0]["steps_per_s"] == pytest.approx(tiny_run.rows[0]["steps_per_s"])


def test_models_run_alone_then_side_by_side(monkeypatch):
    calls = []

    def fake_measure(job, timeout):
        calls.append((job["models"], job["repeats"]))
        if job["models"] == ["perceiver_small"] and job["side"] == 16:
            return {"failed": OOM}
        return {"peak_memory_gb": 0.5, "results": {n: {"status": "ok", "times": [0.1] * job["repeats"]}
                                                   for n in job["models"]}}

    monkeypatch.setattr(suite, "measure", fake_measure)
    run = suite.run(dict(TINY, models=("hip_small", "perceiver_small"), sides=(8, 16, 32)), log=lambda _: None)
    status = {(r["model"], r["side"]): r["status"] for r in run.rows}
    assert status == {("hip_small", 8): "ok", ("perceiver_small", 8): "ok", ("hip_small", 16): "ok",
                      ("perceiver_small", 16): OOM, ("hip_small", 32): "ok", ("perceiver_small", 32): OOM}
    # side 8: each alone (no timed steps), then together; 16: both alone; 32: one model, one process
    assert calls == [(["hip_small"], 0), (["perceiver_small"], 0), (["hip_small", "perceiver_small"], 2),
                     (["hip_small"], 0), (["perceiver_small"], 0), (["hip_small"], 2), (["hip_small"], 2)]
    assert run.row("hip_small", 8)["steps_per_s"] == pytest.approx(10.0)


def test_a_model_past_the_memory_limit_is_reported_as_oom():
    job = {"models": ["hip_small"], "side": 64, "batch": 64, "warmup": 1, "repeats": 0, "threads": 1,
           "memory_limit_gb": 0.02, "max_step_s": 30, "options_by_model": {}}
    out = measure(job, timeout=60)
    assert out["results"]["hip_small"]["status"] == OOM


def test_flops_include_attention(monkeypatch):
    # FlopCounterMode does not see the CPU flash-attention kernel (forced here: small blocks
    # would run as plain matmuls); counted on the meta device, attention runs as matrix
    # products it does see: at least q k^T and a v of the one cross-attention (64 latents x
    # 64 inputs x 261 channels), forward and backward.
    from torch.utils.flop_counter import FlopCounterMode

    from hipcore.model import layers

    flops, _ = count_flops("perceiver_matched", 8, 1)
    monkeypatch.setattr(layers, "MATMUL_SCORES", 0)
    model = make_model("perceiver_matched", 8)
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 64, 3)).sum().backward()
    assert flops >= counter.get_total_flops() + 3 * 2 * 2 * 64 * 64 * 261


def test_matched_perceivers_have_the_same_size():
    import perceiver_pytorch  # noqa: F401  (installed by the dev extra)
    ours = sum(p.numel() for p in make_model("perceiver_matched", 16, 10).parameters())
    theirs = sum(p.numel() for p in make_model("perceiver_pytorch", 16, 10).parameters())
    assert abs(ours - theirs) / theirs < 0.25
    assert make_model("perceiver_pytorch", 16, 10)(torch.rand(2, 256, 3)).shape == (2, 10)


def test_grid_fourier_features_concatenate_row_and_column_features():
    f = grid_fourier_features(4, PERCEIVER_PYTORCH["bands"])
    assert f.shape == (16, 2 * (2 * 64 + 1))
    torch.testing.assert_close(f[5, :129], f[4, :129])          # same row
    torch.testing.assert_close(f[5, 129:], f[1, 129:])          # same column


def test_targets_are_computed_from_the_rows():
    def row(model, side, steps, memory=1.0):
        r = suite._row(model, side, 2, "ok", steps_per_s=steps, peak_memory_gb=memory,
                       fraction_of_peak=0.6, peak_gflops=100.0)
        return r
    rows = [row("hip16", 224, 4.0), row("perceiver_io", 224, 1.0), row("hip16", 384, 3.0),
            row("perceiver_io", 384, 0.5), row("hip256", 1024, 1.0, 2.0), row("hip256", 2048, 0.3, 6.0),
            row("perceiver_matched", 224, 3.0), row("perceiver_pytorch", 224, 1.0)]
    found = {t["target"]: t for t in results.targets(suite.Results(rows, [], {}))}
    assert found["HiP-16 / Perceiver IO steps/s at 224 >= 3.7"]["met"] == "yes"
    assert found["that ratio grows with resolution"]["met"] == "yes"
    assert found["HiP-256 peak memory grows no faster than linearly in inputs"]["met"] == "yes"
    assert found["hipcore flat Perceiver >= 2x perceiver-pytorch (same configuration)"]["met"] == "yes"
    assert "| target | paper | ours | met? |" in results.markdown_targets(list(found.values()))


def test_bad_settings_say_what_is_allowed():
    with pytest.raises(notebook.ParameterError, match="hip16"):
        check_settings(dict(PROFILES["smoke"], models=("hip17",)))
    with pytest.raises(notebook.ParameterError, match="positive ints"):
        check_settings(dict(PROFILES["smoke"], sides=(0,)))
    with pytest.raises(ValueError, match="unknown benchmark model"):
        make_model("resnet", 32)


def test_cli_registers_bench():
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--profile", "smoke", "--models", "hip_small", "--sides", "8"])
    assert args.func.__name__ == "run_bench" and args.sides == [8] and args.models == ["hip_small"]
    assert set(MODEL_NAMES) >= {"hip16", "hip256", "hip16_fourier", "perceiver_io", "perceiver_pytorch"}


def test_a_precision_this_cpu_cannot_compute_is_refused_before_anything_runs(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    with pytest.raises(ParameterError, match="'bf16' is not available on cpu"):
        check_settings(dict(PROFILES["smoke"], precision="bf16"))
    with pytest.raises(ParameterError, match="must be one of"):
        check_settings(dict(PROFILES["smoke"], precision="half"))


def test_a_low_precision_step_trains_float32_weights_under_autocast():
    t = Trainee.build("hip_small", 8, 2, precision="bf16", classes=10)   # emulated where not native
    before = [p.detach().clone() for p in t.model.parameters()]
    assert t.step() > 0
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, t.model.parameters()))
    assert timing.matmul_peak((64,), repeats=1, precision="bf16") > 0


def bench_trees_tool():
    """tools/bench_trees.py, a developer's tool outside the package, as a module."""
    spec = importlib.util.spec_from_file_location("bench_trees", ROOT / "tools" / "bench_trees.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trees_are_exported_from_git_and_compared_by_medians(tmp_path):
    trees = bench_trees_tool()
    tree = trees.export("HEAD", tmp_path / "head")
    assert (tree / "hipcore" / "__init__.py").is_file() and not (tree / ".git").exists()
    with pytest.raises(trees.TreeError, match="cannot export"):
        trees.export("no-such-revision", tmp_path / "none")
    rows = [{"task": "supervised", "tree": t, "round": r, "examples_per_s": v}
            for t, r, v in (("base", 0, 100.0), ("head", 0, 150.0), ("base", 1, 110.0), ("head", 1, 160.0))]
    found = trees.ratios(rows)["supervised"]
    assert found["base"] == 105.0 and found["head"] == 155.0 and found["ratio"] == pytest.approx(155 / 105)
    with pytest.raises(SystemExit):
        trees.main(["--against", "HEAD", "--repeats", "0"])


def test_loops_table_and_a_failed_loop_is_named(tmp_path):
    table = loops.markdown_loops([{"task": "pretrain", "precision": "fp32", "examples_per_s": 80.04}])
    assert table.splitlines()[-1] == "| MAE pretraining | fp32 | 80.0 |"
    with pytest.raises(loops.LoopError, match="failed"):
        loops.run_once(loops.IMPORT_ROOT, "supervised", tmp_path / "run", limit_train=8, threads=1,
                       extra=["--no-such-option"])


def test_the_gpu_check_stops_at_once_without_a_gpu(monkeypatch, capsys):
    from hipcore.bench import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main() == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_the_bench_command_writes_its_provenance(tmp_path, capsys):
    from hipcore import cli

    code = cli.main(["bench", "--profile", "smoke", "--models", "hip_small", "--sides", "8", "--repeats", "1",
                     "--threads", "1", "--precision", "fp32", "--results-dir", str(tmp_path)])
    assert code == 0
    record = json.loads((tmp_path / "05_efficiency" / "smoke" / "provenance.json").read_text())
    assert "bench --profile smoke --models hip_small --sides 8" in record["command"]
    assert record["machine"]["precision"] == "fp32" and "verified" in record


def test_an_epochs_breakdown_splits_its_wall_time_into_steps_loading_validation_and_the_rest():
    from hipcore.bench.epochs import breakdown

    cumulative = {1: {"elapsed_seconds": 30.0, "train_seconds": 20.0, "load_seconds": 1.0, "eval_seconds": 5.0},
                  2: {"elapsed_seconds": 52.0, "train_seconds": 36.0, "load_seconds": 1.5, "eval_seconds": 4.0}}
    parts = breakdown(cumulative)
    assert parts["wall_s"] == 22.0 and parts["loading_s"] == 0.5 and parts["steps_s"] == 15.5
    assert parts["validation_s"] == 4.0 and parts["other_s"] == pytest.approx(2.0)
    assert parts["overhead"] == pytest.approx(22.0 / 19.5 - 1)


def test_a_cpu_folder_name_tells_apart_cpus_of_one_model_name(tmp_path, monkeypatch):
    from hipcore.bench import epochs

    monkeypatch.setattr(epochs, "cpu_name", lambda: "AMD EPYC")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n")
    assert epochs.cpu_slug(str(info)) == "amd-epyc-f25-m17"
    info.write_text("processor\t: 0\ncpu family\t: 23\nmodel\t\t: 1\n")
    assert epochs.cpu_slug(str(info)) == "amd-epyc-f23-m1"


def test_the_readme_epoch_text_reads_a_signed_cpu_folder_and_refuses_a_changed_one(tmp_path):
    from hipcore.bench import epochs
    from hipcore.digests import ResultsChanged, sign

    row = {"variant": "small3", "precision": "bf16", "threads": 2, "batch": 128, "train_images": 6000,
           "validation_images": 6000, "steps_per_epoch": 46, "wall_s": 17.0, "steps_s": 12.0, "loading_s": 0.05,
           "validation_s": 4.8, "other_s": 0.15, "overhead": 0.0119, "examples_per_s": 346.4}
    epochs.write_csv([row, {**row, "precision": "fp32", "overhead": 0.004}], tmp_path / "epochs.csv",
                     epochs.EPOCH_COLUMNS)
    queue = [{"variant": "small3", "precision": "bf16", "arrangement": a, "jobs": 2, "threads_per_job": t,
              "images_per_job": 6000, "epochs": 2, "wall_s": w, "examples_per_s": 1.0}
             for a, t, w in (("one", 2, 80.0), ("two", 1, 64.0))]
    epochs.write_csv(queue, tmp_path / "queue.csv", epochs.QUEUE_COLUMNS)
    sign(tmp_path)
    text = epochs.epochs_text(tmp_path, "a test CPU")
    assert "within 0.4-1.2%" in text and "steps 12.0 s, validation 4.8 s" in text
    assert "small3 bf16 1.25x sooner" in text
    (tmp_path / "queue.csv").write_text((tmp_path / "queue.csv").read_text().replace("80.0", "90.0"))
    with pytest.raises(ResultsChanged, match="queue.csv"):
        epochs.epochs_text(tmp_path, "a test CPU")


def test_a_model_that_never_steps_keeps_the_precision_and_threads_it_was_tried_in():
    run = suite._Run(check_settings(dict(PROFILES["smoke"])), 1, {}, log=lambda line: None)
    run.fail("hip_small", 64, OOM)
    [row] = run.rows
    assert (row["status"], row["precision"], row["threads"]) == (OOM, resolve("auto", "cpu"), 1)
