"""Notebook 07's module: profiles and arms, bad canvases refused in one line, mIoU verdict pairs,
the small U-Net, and the cost curve's rows and sentences."""

import math

import pytest
import torch

from hipcore.config import ModalitySpec
from hipcore.experiments import baselines, common, segmentation
from hipcore.experiments.segmentation import BOTTLENECK, FULL, PERCEIVER, UNET
from hipcore.notebook import PROFILES, ParameterError
from hipcore.report import findings, read_comparisons


def test_every_profile_is_there_and_items_grow_with_the_canvas():
    assert set(PROFILES) | {"converged"} <= set(segmentation.TABLE)
    quick = segmentation.TABLE["quick"]
    options = segmentation.data_options(quick)
    assert options == {"side": 64, "item_side": 28, "test_canvases": quick["test_canvases"],
                       "train_canvases": quick["limit_train"] + quick["val_size"]}
    assert [segmentation.item_side(s) for s in (32, 64, 128, 512)] == [28, 28, 56, 224]


def test_the_arms_segment_from_the_decoder_the_bottleneck_and_a_flat_perceiver():
    settings = segmentation.TABLE["smoke"]
    configs = {key: common.train_configs(arm, 0, settings, dataset="collages",
                                         data_options=segmentation.data_options(settings))[1]
               for key, arm in segmentation.arms(settings).items()}
    assert {k: (c.task, c.variant, c.model.get("dense_from", "decoder")) for k, c in configs.items()} == {
        "full": ("segment", "small3", "decoder"), "bottleneck": ("segment", "small3", "bottleneck"),
        "perceiver": ("segment", "perceiver_small", "decoder")}
    assert len({c.run_id for c in configs.values()}) == 3
    assert segmentation.queue_arms(settings) == {k: (a, None) for k, a in segmentation.arms(settings).items()}
    # an Arm without a task still trains a classifier, under the run id it had before the field existed
    _, sup = common.train_configs(common.Arm("x"), 0, settings, dataset="fashion_mnist")
    assert sup.task == "supervised"


@pytest.mark.parametrize("side, message", [
    (30, "side=30: small3's 16 first-level groups cannot split a 30 x 30 canvas"),
    (40, "side=40: collages: side must be a positive multiple of 16"),
    (16, "side=16 is not allowed; give the canvas side in pixels, an int >= 28"),
    ("64", "side='64' is not allowed"),
    (True, "side=True is not allowed"),
])
def test_a_canvas_the_groups_or_collages_cannot_take_is_refused_in_one_line(side, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")) as error:
        segmentation.check_canvas(side, segmentation.TABLE["quick"])
    assert "\n" not in str(error.value)
    assert segmentation.check_canvas(128, segmentation.TABLE["quick"]) == 128


def run_rows(full, bottleneck, perceiver):
    rows = []
    for arm, values in ((FULL, full), (BOTTLENECK, bottleneck), (PERCEIVER, perceiver)):
        rows += [{"arm": arm, "seed": seed, "test_miou": v, "converged": True, "epochs_run": 9}
                 for seed, v in enumerate(values)]
    return rows


def test_findings_pair_test_miou_by_seed_against_the_papers_voc_effects(tmp_path):
    path = tmp_path / "comparisons.csv"
    recorded = segmentation.record_findings(path, run_rows([40.0, 42.0, 41.0], [38.0, 40.5, 39.0],
                                                           [30.0, 33.0, 31.0]))
    assert recorded == [f[0] for f in segmentation.FINDINGS]
    found = {f.finding: f for f in findings(read_comparisons(path))}
    decoder, perceiver = (found[name] for name, *_ in segmentation.FINDINGS)
    assert decoder.metric == "mIoU %" and decoder.paper == 1.0 and decoder.seeds == 3
    assert decoder.effect == pytest.approx((2.0 + 1.5 + 2.0) / 3)
    assert perceiver.paper == 9.0 and perceiver.effect == pytest.approx((10.0 + 9.0 + 10.0) / 3)
    assert decoder.converged == "yes"


class Blobs:
    """A dense dataset whose label is 1 where a pixel is bright: [N, side*side, 1] -> [N, side*side]."""

    def __init__(self, n, side=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 1, side // 4, side // 4, generator=g)
        self.x = torch.nn.functional.interpolate(coarse, scale_factor=4).reshape(n, -1, 1)      # [N, M, 1]
        self.labels = (self.x[..., 0] > 0.5).long()                                          # [N, M]
        self.modalities = {"image": ModalitySpec(side * side, 1, (side, side))}
        self.num_classes = 2

    def __len__(self):
        return len(self.labels)

    def get_batch(self, indices, **_):
        return {"image": self.x[indices]}, self.labels[indices]


def test_the_small_unet_learns_a_label_per_pixel_and_its_epochs_are_chosen_on_validation(tmp_path):
    net = baselines.SmallUNet(1, 11)
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 11, 32, 32)
    grid = (1, 8, 24)                       # batches of 128: 4 steps an epoch on 512 canvases
    rows = baselines.dense_baselines(Blobs(512), Blobs(32, seed=1), Blobs(32, seed=2), seed=0,
                                     knobs={UNET: baselines.Knobs(epochs=grid)})
    (row,) = rows
    assert row["epochs"] in grid and row["test_size"] == 32 and row["width"] == baselines.UNET_WIDTH
    assert row["test_miou"] > 80 and row["test_pixel_accuracy"] > 90           # brightness is easy to learn
    shuffled = Blobs(512)
    shuffled.labels = shuffled.labels[torch.randperm(512)]                      # labels no longer follow pixels
    (chance,) = baselines.dense_baselines(shuffled, Blobs(32, seed=1), Blobs(32, seed=2), seed=0,
                                          knobs={UNET: baselines.Knobs(epochs=grid)})
    assert chance["test_miou"] < row["test_miou"] - 20
    baselines.write_baselines(tmp_path, rows)
    (back,) = baselines.read_baselines(tmp_path)
    assert back["test_miou"] == pytest.approx(row["test_miou"]) and back["epochs"] == row["epochs"]
    with pytest.raises(ValueError, match="unknown dense baseline"):
        baselines.dense_baselines(Blobs(8), Blobs(8), Blobs(8), seed=0, models=("big U-Net",))


def cost_rows(hip_rates, perceiver_rates, sides=(64, 128, 256)):
    rows = []
    for arm, rates in ((FULL, hip_rates), (PERCEIVER, perceiver_rates)):
        rows += [{"arm": arm, "model": segmentation.COST_MODELS[arm], "side": s, "status": "ok", "steps_per_s": r,
                  "peak_memory_gb": 0.1 * s / 64, "flops_per_step": 1e9, "params": 1000, "batch": 1, "threads": 2,
                  "precision": "bf16"} for s, r in zip(sides, rates)]
    return rows


def test_the_cost_sentences_say_whose_step_time_grew_faster(tmp_path):
    faster = segmentation.cost_sentences(cost_rows([10.0, 5.0, 2.0], [8.0, 2.0, 0.5]))
    assert faster[-1] == (f"from 64 x 64 to 256 x 256, a step of {PERCEIVER} took 16.0x longer and one of {FULL} "
                          "5.0x: the flat Perceiver's cost grew faster than HiP's")
    assert faster[0].startswith(f"{FULL}: 10.00 steps/s at 64 x 64, 2.000 at 256 x 256 (a step 5.0x as long)")
    slower = segmentation.cost_sentences(cost_rows([10.0, 5.0, 2.0], [8.0, 6.0, 4.0]))
    assert slower[-1].endswith("grew no faster than HiP's")
    stopped = cost_rows([10.0, 5.0], [8.0], sides=(64, 128)) + [
        {"arm": PERCEIVER, "model": "seg_perceiver_io", "side": 128, "status": "OOM"}]
    assert segmentation.cost_sentences(stopped)[1].endswith("at 128: OOM")
    assert segmentation.growth_sentence([r for r in stopped if r["status"] == "ok"]) == []     # one common side


def test_cost_rows_round_trip_and_a_bad_row_is_named(tmp_path):
    from hipcore.files import write_csv_atomic

    rows = cost_rows([10.0, 5.0, 2.0], [8.0, 2.0, 0.5]) + [
        {"arm": UNET, "model": "seg_unet", "side": 64, "status": "skipped (too slow)"}]
    path = write_csv_atomic(tmp_path / "cost.csv", segmentation.COST_COLUMNS,
                            [{c: "" if r.get(c) is None else r[c] for c in segmentation.COST_COLUMNS} for r in rows])
    back = segmentation.read_cost(path)
    assert [(r["arm"], r["side"], r["steps_per_s"]) for r in back] == [(r["arm"], r["side"], r.get("steps_per_s"))
                                                                      for r in rows]
    assert "skipped (too slow)" in segmentation.markdown_cost(back)
    path.write_text(path.read_text().replace(f'"{FULL}",seg_hip_decoder,128', '"HiP, other",seg_hip_decoder,128'))
    with pytest.raises(ValueError, match="HiP, other"):
        segmentation.read_cost(path)


def test_a_dense_training_step_is_timed_and_counted_like_the_classifiers():
    from hipcore.bench.models import MODELS, count_flops
    from hipcore.bench.timing import Trainee

    for name in segmentation.COST_MODELS.values():
        assert MODELS[name].dense and MODELS[name].channels == 1
        trainee = Trainee.build(name, 32, 2)
        assert trainee.pixels.shape == (2, 32 * 32, 1) and trainee.labels.shape == (2, 32 * 32)
        assert math.isfinite(trainee.step()) and trainee.trained_params > 0
        flops, params = count_flops(name, 32, 2)
        assert flops > 0 and params > 0
    flops = {(name, side): count_flops(name, side, 1)[0] for name in ("seg_perceiver_io", "seg_hip_decoder")
             for side in (64, 256)}
    assert flops["seg_perceiver_io", 256] > 8 * flops["seg_perceiver_io", 64]       # grows with the positions
    ratio = {side: flops["seg_perceiver_io", side] / flops["seg_hip_decoder", side] for side in (64, 256)}
    assert ratio[256] > ratio[64]                   # the flat Perceiver's step grows faster than HiP's


def test_the_notebook_refuses_a_canvas_its_groups_cannot_split_in_its_first_cells(tmp_path, monkeypatch):
    import papermill

    from hipcore.locations import notebooks_dir

    monkeypatch.delenv("HIPCORE_PROFILE", raising=False)
    monkeypatch.setenv("HIPCORE_RUNS", str(tmp_path / "runs"))
    path = notebooks_dir() / f"{segmentation.NOTEBOOK}.ipynb"
    with pytest.raises(papermill.PapermillExecutionError, match="side=30: small3's 16 first-level groups"):
        papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(path.parent),
                                   parameters={"profile": "smoke", "side": 30, "results_dir": str(tmp_path)},
                                   progress_bar=False)
    assert not (tmp_path / "runs").exists()                          # nothing trained


def test_the_table_sets_the_papers_voc_rows_beside_each_arm_and_the_unet():
    from hipcore.experiments.regime import Outcome

    rows = [{**r, "parameters": 1000, "test_pixel_accuracy": 80.0} for r in run_rows([40.0, 42.0], [38.0, 40.0],
                                                                                     [30.0, 33.0])]
    unet = [{"model": UNET, "seed": s, "test_miou": v, "test_pixel_accuracy": 85.0, "epochs": 4}
            for s, v in enumerate((50.0, 52.0))]
    table = segmentation.arm_table(Outcome(rows, unet, []))
    assert [(a["arm"], a["paper"], a["miou"], a["seeds"]) for a in table] == [
        (FULL, 71.0, 41.0, 2), (BOTTLENECK, 70.0, 39.0, 2), (PERCEIVER, 62.0, 31.5, 2), (UNET, 70.5, 51.0, 2)]
    text = segmentation.markdown_arms(table, 64)
    assert "| Perceiver IO: 62.0 (shallow 67.7) |" in text and "| ResNet-50: 70.5 |" in text
    assert "ours mIoU % (collages 64 x 64)" in text and "4, 4 (chosen on validation)" in text
