"""hipcore.results: every notebook's results folder as one long DataFrame, one unit per metric."""

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from hipcore import results
from hipcore.experiments import common


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def provenance(folder, commit="abc123", precision="bf16"):
    write(folder / "provenance.json", json.dumps({
        "commit": commit, "dirty": False, "code_fingerprint": "f00",
        "machine": {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "gpu": None,
                    "precision": precision, "platform": "Linux"}}))


@pytest.fixture
def folders(tmp_path):
    """An image notebook (long metrics, arms, comparisons, provenance), 05's wide benchmark
    table (with loops.csv, no provenance) and a notebook of another profile."""
    nb = tmp_path / "02_flattening_ablation" / "quick"
    write(nb / "metrics.csv", "run_id,seed,epoch,step,split,metric,value\n"
          "raster + MAE,0,,,test,test_accuracy,64.5\n"
          "raster + MAE,1,,,test,test_accuracy,63.5\n"
          "shuffled,0,,,test,test_accuracy,40.0\n"
          "shuffled,0,,,test,total_seconds,12.5\n"
          "learned table,0,,,positions,structure_pixels,0.25\n")
    arms = [{"arm": "raster + MAE", "seed": s, **common.arm_settings(
                common.Arm("raster + MAE", mae=True, ordering="raster"), {"variant": "small3"})} for s in (0, 1)]
    arms.append({"arm": "shuffled", "seed": 0, **common.arm_settings(
        common.Arm("shuffled", ordering="shuffled", variant="small5", steps=40), {"variant": "small3"})})
    common.write_arms(nb / "arms.csv", arms)
    write(nb / "comparisons.csv", "finding,claim,paper_key,metric,seed,baseline,treatment\n"
          "F4 shuffle,lower,effect.F4_shuffle_with_mae,top-1 %,0,64.5,40.0\n")
    provenance(nb)

    bench = tmp_path / "05_efficiency" / "quick"
    header = "model,package,side,inputs,batch,status,steps_per_s,peak_memory_gb,fraction_of_peak,threads,precision\n"
    write(bench / "metrics.csv", header + "hip16,hipcore,32,1024,2,ok,0.5,2.0,0.25,2,fp32\n"
          "perceiver_io,hipcore,2048,4194304,2,OOM,,,,2,fp32\n")
    write(bench / "loops.csv", "task,precision,examples_per_s\nsupervised,bf16,180.0\n")

    write(tmp_path / "01_imagenet_comparison" / "full" / "metrics.csv",
          "run_id,seed,epoch,step,split,metric,value\nHiP,0,,,test,test_accuracy,80.0\n")
    return tmp_path


def test_one_long_frame_with_the_arm_settings_as_columns(folders):
    df = results.load(profile="quick", results_dir=folders)
    assert list(df.columns) == list(results.COLUMNS)
    assert set(df.notebook) == {"02_flattening_ablation", "05_efficiency"}      # the full profile is not read
    row = df[(df.arm == "raster + MAE") & (df.seed == 1)].iloc[0]
    assert (row.metric, row.value, row.unit) == ("test_accuracy", 63.5, "%")
    assert (row.ordering, row.position, bool(row.mae), row.transfer, row.mask_ratio, row.variant) == (
        "raster", "learned", True, "all", 0.85, "small3")
    shuffled = df[(df.arm == "shuffled") & (df.metric == "test_accuracy")].iloc[0]
    assert (shuffled.variant, shuffled.steps, bool(shuffled.mae)) == ("small5", 40, False)
    assert pd.isna(shuffled.transfer) and pd.isna(shuffled.mask_ratio)       # MAE settings of a non-MAE arm
    table = df[df.arm == "learned table"].iloc[0]                            # not an arm: no settings
    assert table.unit == "score" and pd.isna(table.ordering)


def test_commit_machine_and_precision_come_from_provenance(folders):
    df = results.load("quick", folders)
    nb = df[df.notebook == "02_flattening_ablation"]
    assert set(nb.commit) == {"abc123"} and set(nb.machine) == {"Test CPU, 2 cores"}
    assert set(nb.precision) == {"bf16"}
    bench = df[df.notebook == "05_efficiency"]
    assert bench.commit.isna().all() and bench.machine.isna().all()         # no provenance.json: NaN
    assert set(bench[bench.arm == "hip16"].precision) == {"fp32"}           # the benchmark's own column
    assert set(bench[bench.arm == "loop: supervised"].precision) == {"bf16"}


def test_the_wide_benchmark_table_is_long_with_one_unit_per_metric(folders):
    bench = results.load("quick", folders).query("notebook == '05_efficiency'")
    hip = bench[bench.arm == "hip16"].set_index("metric")
    assert hip.loc["steps_per_s", "value"] == 0.5 and hip.loc["steps_per_s", "unit"] == "steps/s"
    assert hip.loc["peak_memory_gib", "unit"] == "GiB"
    assert hip.loc["fraction_of_peak", "value"] == pytest.approx(25.0)       # a fraction, shown in %
    assert hip.loc["fraction_of_peak", "unit"] == "%"
    assert (hip.loc["steps_per_s", "side"], hip.loc["steps_per_s", "batch"]) == (32, 2)
    assert "threads" not in set(bench.metric) and "side" not in set(bench.metric)
    assert bench[bench.arm == "perceiver_io"].empty                           # OOM: nothing measured
    assert bench.seed.isna().all()
    loop = bench[bench.arm == "loop: supervised"].iloc[0]
    assert (loop.metric, loop.value, loop.unit) == ("train_examples_per_s", 180.0, "examples/s")


def test_comparisons_are_rows_of_their_finding_kept_apart_from_the_measurements(folders):
    pairs = results.load_comparisons("quick", folders)
    assert list(pairs.columns) == list(results.COMPARISON_COLUMNS)
    pair = pairs[pairs.finding == "F4 shuffle"].set_index("role")
    assert pair.loc["baseline", "value"] == 64.5 and pair.loc["treatment", "value"] == 40.0
    assert set(pair.metric) == {"test_accuracy"} and set(pair.unit) == {"%"}
    df = results.load("quick", folders)
    assert "finding" not in df and df.arm.notna().all()                  # each measurement once, its arm named


def test_every_metric_has_one_unit_and_values_are_finite(folders):
    df = results.load("quick", folders)
    assert (df.groupby("metric").unit.nunique() == 1).all()
    assert df.value.map(math.isfinite).all()


def test_the_committed_results_load_each_measurement_once_with_one_name_and_unit():
    df = results.load("quick")
    assert {"01_imagenet_comparison", "05_efficiency"} <= set(df.notebook)
    assert (df.groupby("metric").unit.nunique() == 1).all()
    assert df.arm.notna().all() and df.value.map(math.isfinite).all()
    key = ["notebook", "arm", "seed", "metric", "side", "batch", "precision"]
    assert not df.duplicated(key).any(), df[df.duplicated(key, keep=False)].head()
    assert not {"params", "trained_params"} & set(df.metric)                 # 'parameters', as everywhere
    accuracy = df[df.metric == "test_accuracy"].value
    assert accuracy.between(1, 100).all()                                    # percentages, not fractions
    memory = df[df.metric == "peak_memory_gib"]
    assert set(memory.unit) <= {"GiB"}
    pairs = results.load_comparisons("quick")
    assert set(pairs.role) == {"baseline", "treatment"} and pairs.finding.notna().all()


@pytest.mark.parametrize("name, text, message", [
    ("metrics.csv", "run_id,seed,metric\nx,0,test_accuracy\n", "missing columns ['value']"),
    ("metrics.csv", "run_id,seed,metric,value\nx,0,test_accuracy,high\n", "value 'high' is not a finite number"),
    ("metrics.csv", "run_id,seed,metric,value\nx,0,test_accuracy,nan\n", "value 'nan' is not a finite number"),
    ("metrics.csv", "run_id,seed,metric,value\nx,0,test_loss,\n", "row 1: a row has no value"),
    ("metrics.csv", "run_id,seed,metric,value\nx,0.5,test_accuracy,1\n", "row 1: seed '0.5': seeds must be whole"),
    ("metrics.csv", "run_id,seed,metric,value\nx,0,test_accuracy,50\nx,0,test_accuracy,51\n",
     "row 2 repeats row 1 (run_id 'x', seed '0', metric 'test_accuracy')"),
    ("metrics.csv", "run_id,seed,metric,value\nx,0,test_accuracy,150\n",
     "row 1: test_accuracy 150 is outside [0, 100]"),
    ("metrics.csv", "run_id,seed,metric,value\nx,0,total_seconds,-1\n", "row 1: total_seconds -1 is outside [0, inf]"),
    ("comparisons.csv", "finding,metric,seed,baseline,treatment\nF,top-1 %,0,1,2\nF,top-1 %,0,1,2\n",
     "row 2 repeats row 1 (finding 'F', seed '0')"),
    ("comparisons.csv", "finding,metric,seed,baseline,treatment\nF,top-1 %,0,nan,2\n",
     "row 1: baseline 'nan' is not a finite number"),
    ("provenance.json", "[1, 2]", "not a provenance record"),
    ("provenance.json", '{"machine": "x"}', "not a provenance record"),
    ("metrics.csv", "run_id,seed,metric,value\nx,0,mystery,1\n", "metric 'mystery' has no unit"),
    ("metrics.csv", 'run_id,seed,metric,value\n"x,0,test_accuracy,1\n', "not a readable CSV"),
    ("arms.csv", "arm,ordering\nx,raster\n", "missing columns"),
    ("comparisons.csv", "finding,metric,seed,baseline,treatment\nF,furlongs,0,1,2\n", "comparison metric 'furlongs'"),
    ("provenance.json", "{not json", "not a provenance record"),
])
def test_a_malformed_file_is_an_error_naming_it(tmp_path, name, text, message):
    folder = tmp_path / "01_x" / "quick"
    write(folder / "metrics.csv", "run_id,seed,metric,value\nx,0,test_accuracy,50\n")
    path = write(folder / name, text)
    loader = results.load_comparisons if name == "comparisons.csv" else results.load
    with pytest.raises(ValueError) as info:
        loader("quick", tmp_path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_no_results_for_a_profile_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results for profile 'quick'"):
        results.load("quick", tmp_path)


def test_an_arm_run_with_two_sets_of_settings_is_an_error(tmp_path):
    rows = [{"arm": "a", **common.arm_settings(common.Arm("a"), {})},
            {"arm": "a", **common.arm_settings(common.Arm("a", ordering="shuffled"), {})}]
    with pytest.raises(ValueError, match="two sets of settings"):
        common.write_arms(tmp_path / "arms.csv", rows)


def test_markdown_and_mean_sd():
    frame = pd.DataFrame({"arm": ["a", "a", "b"], "value": [1.0, 3.0, 5.0]})
    summary = results.mean_sd(frame, "arm")
    assert list(summary.columns) == ["arm", "mean", "sd", "n"]
    assert (list(summary.arm), list(summary["mean"]), list(summary.n)) == (["a", "b"], [2.0, 5.0], [2, 1])
    assert summary.sd[0] == pytest.approx(math.sqrt(2)) and math.isnan(summary.sd[1])
    assert results.markdown(pd.DataFrame({"x": ["1", ""], "y": ["a", None]})) == \
        "| x | y |\n|---|---|\n| 1 | a |\n|  |  |"
    assert results.fmt_mean_sd(2.0, math.sqrt(2)) == "2.00 ± 1.41"
    assert results.fmt_mean_sd(5.0, math.nan, signed=True) == "+5.00"


# An absolute path of the machine that made a result: /home/..., /work/..., /tmp/..., C:\...
MACHINE_PATH = re.compile(r"""(?:^|[\s"'(=])(?:/(?:home|work|tmp|root|Users|mnt|opt|srv|var)/|[A-Z]:\\)""")


def test_no_committed_result_holds_a_machine_path():
    home = Path(__file__).resolve().parent.parent
    found = []
    for path in sorted((home / "results").rglob("*")):
        if path.suffix in {".csv", ".json", ".md", ".ipynb"} and "smoke" not in path.parts:
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if MACHINE_PATH.search(line):
                    found.append(f"{path.relative_to(home)}:{number}: {line.strip()[:80]}")
    assert not found, "\n".join(found[:10])


def test_every_committed_results_folder_is_signed_and_unchanged():
    """Each folder holding a finished run (provenance.json) has its SHA256SUMS, and every file is
    the one signed: `python -m hipcore results sign FOLDER` after a change made on purpose."""
    from hipcore import digests

    home = Path(__file__).resolve().parent.parent
    tracked = [p for p in digests.results_folders(home / "results") if not {"smoke", "binder"} & set(p.parts)]
    assert len(tracked) >= 8                                 # the seven notebooks' quick folders and the checks
    assert {p.name: digests.verify(p) for p in tracked} and all((p / digests.SUMS).is_file() for p in tracked)


def test_the_machine_path_pattern_finds_what_it_should():
    assert MACHINE_PATH.search('"results in /work/repro/results/00_tour/quick\\n"')
    assert MACHINE_PATH.search("PosixPath('/home/me/hipcore/results')")
    assert not MACHINE_PATH.search("results in results/00_tour/quick") and not MACHINE_PATH.search("1/work/2")


def test_the_readme_s_generated_blocks_say_what_the_committed_results_say(tmp_path):
    from hipcore import summary

    home = Path(__file__).resolve().parent.parent
    readme = tmp_path / "README.md"
    readme.write_text((home / "README.md").read_text())
    assert summary.update_readme(readme, home / "results", "quick") == "unchanged", \
        "README.md's generated blocks are stale: run python -m hipcore summary --profile quick"


def test_a_run_two_notebooks_show_is_one_run_named_once(tmp_path):
    """The run cache serves one run to several notebooks under their own arm names: load keeps it
    once, with its run id and every notebook that shows it; load_folder keeps each notebook's rows."""
    run = {"seed": 0, "run_dir": "runs/supervised-d585d061-code-data"}
    for notebook, arm in (("01_imagenet_comparison", "HiP, MAE-learned positions"),
                          ("02_flattening_ablation", "raster + MAE")):
        folder = tmp_path / notebook / "quick"
        write(folder / "metrics.csv", f'run_id,seed,metric,value\n"{arm}",0,test_accuracy,71.2\n'
                                      f'"{arm}",1,test_accuracy,69.1\n')
        write(folder / "runs.json", json.dumps([{"arm": arm, **run}]))
    df = results.load("quick", tmp_path)
    shared = df[df.run == "supervised-d585d061-code-data"]
    assert len(shared) == 1 and shared.arm.iloc[0] == "HiP, MAE-learned positions"
    assert shared.notebooks.iloc[0] == "01_imagenet_comparison, 02_flattening_ablation"
    assert len(df[df.run.isna()]) == 2                                       # seed 1: no run recorded, kept
    assert len(results.load_folder(tmp_path / "02_flattening_ablation" / "quick")) == 2


@pytest.mark.parametrize("profile", sorted({p.name for p in (Path(__file__).resolve().parent.parent / "results")
                                            .glob("[0-9][0-9]_*/*") if p.is_dir()}))
def test_every_committed_profile_has_a_unique_key_and_each_run_once(profile):
    df = results.load(profile)
    assert not df.duplicated(list(results.KEY)).any(), df[df.duplicated(list(results.KEY), keep=False)].head()
    runs = df.dropna(subset=["run"])
    assert not runs.duplicated(["run", "metric"]).any()


def test_the_test_set_size_is_the_summary_s_else_its_cap_else_the_baselines_one(tmp_path):
    """Each notebook's test-set size, behind the rows' test-noise column: recorded in summary.json,
    else its settings' limit_test, else the one size its baselines.csv records (none when the
    rows disagree)."""
    from hipcore import summary

    header = ("model,seed,l2,epochs,val_accuracy,train_accuracy,test_accuracy,edge,seconds,"
              "train_size,val_size,test_size\n")
    folders = {name: tmp_path / name / "quick" for name in
               ("01_imagenet_comparison", "02_flattening_ablation", "04_point_clouds", "06_scaling")}
    write(folders["01_imagenet_comparison"] / "summary.json", json.dumps({"settings": {"limit_test": 2000}}))
    write(folders["02_flattening_ablation"] / "summary.json", json.dumps({"test_size": 700, "settings": {}}))
    for name, sizes in (("04_point_clouds", (500, 500)), ("06_scaling", (500, 400))):
        write(folders[name] / "summary.json", json.dumps({"settings": {"limit_test": None}}))
        write(folders[name] / "baselines.csv", header + "".join(
            f"PointNet,{seed},,30,34.0,38.5,33.8,,3.5,1800,200,{size}\n" for seed, size in enumerate(sizes)))
    assert summary.profile_test_sizes(tmp_path, "quick") == {
        "01_imagenet_comparison": 2000, "02_flattening_ablation": 700, "04_point_clouds": 500}
    home = Path(__file__).resolve().parent.parent
    assert summary.profile_test_sizes(home / "results", "quick")["04_point_clouds"] == 500
