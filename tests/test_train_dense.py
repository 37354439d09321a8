"""Dense decoding: the segmentation head of all three arms, the per-pixel loss, mIoU from one
confusion matrix over the whole set, a segment run through the loop and the command line,
its resumption after a kill, and the bad inputs it refuses in one line."""

import json
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_engine import TINY

from hipcore import ModalitySpec
from hipcore.cli import main as hipcore_main
from hipcore.config import variant
from hipcore.data.fashion_mnist import FILES
from hipcore.errors import DataError
from hipcore.model import HiP
from hipcore.train import TrainConfig, dense, read_metrics, train
from hipcore.train import checkpoint as ckpt
from hipcore.train.distributed import Context

ONE_LINE_ERROR = re.compile(r"\b\w+(Error|Exception)\b|Traceback")
CANVAS = {"image": ModalitySpec(32 * 32, 1, (32, 32))}
ARMS = [("small3", "decoder"), ("small3", "bottleneck"), ("perceiver_small", "decoder")]


class DenseToy:
    """8 x 8 images with one bright quadrant; each pixel's label is 1 + that quadrant's index
    inside it, 0 (background) elsewhere: 5 classes. Train batches get noise from the generator."""

    def __init__(self, n, seed=0, stop_at=None, background=0):
        g = torch.Generator().manual_seed(seed)
        quadrant = torch.arange(n) % 4
        images, labels = 0.3 * torch.randn(n, 8, 8, generator=g), torch.full((n, 8, 8), background)
        for q in range(4):
            r, c = divmod(q, 2)
            images[quadrant == q, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.0
            labels[quadrant == q, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = q + 1
        self.images, self.labels = images.reshape(n, 64, 1), labels.reshape(n, 64)
        self.modalities = {"image": ModalitySpec(64, 1, (8, 8))}
        self.class_names = ["background", "a", "b", "c", "d"]
        self.stop_at, self.train_batches, self.fingerprint = stop_at, 0, f"dense-toy-{n}-{seed}"

    num_classes = property(lambda self: len(self.class_names))

    def __len__(self):
        return len(self.labels)

    def get_batch(self, indices, *, train=False, generator=None):
        images = self.images[indices].clone()
        if train:
            self.train_batches += 1
            if self.stop_at is not None and self.train_batches >= self.stop_at:
                raise Stop
            images = images + 0.05 * torch.randn(images.shape, generator=generator)
        return {"image": images}, self.labels[indices]


class Stop(Exception):
    """Stands for a kill between steps."""


def config(tmp_path, name="run", **overrides):
    base = dict(task="segment", dataset="toy", model=TINY, epochs=3, batch_size=16, eval_batch_size=8,
                lr=3e-3, warmup_steps=2, log_every=2, val_fraction=0.25, run_dir=str(tmp_path / name),
                quiet=True)
    return TrainConfig(**{**base, **overrides})


def run(cfg, stop_at=None, **data):
    return train(cfg, train_data=DenseToy(64, 0, stop_at, **data), test_data=DenseToy(24, 1, **data))


# ---- the head ----

@pytest.mark.parametrize("name, source", ARMS)
def test_every_arm_gives_logits_per_position_from_the_latents_it_names(name, source):
    torch.manual_seed(0)
    hip = HiP(variant(name, dense_classes=11, dense_from=source), CANVAS)
    out = hip({"image": torch.rand(2, 1024, 1)}, reconstruct=False)
    assert out.dense["image"].shape == (2, 1024, 11) and out.reconstruction is None
    ran = len(hip.blocks) if source == "decoder" else hip.config.processor_index + 1
    assert len(out.latents) == ran                     # the bottleneck skips every decoder block
    out.dense["image"].sum().backward()
    decoder = [p for b in hip.blocks[hip.config.processor_index + 1:] for p in b.parameters()]
    assert all((p.grad is not None) == (source == "decoder") for p in decoder)
    assert hip.dense_head.cross_attend.input_norm.normalized_shape[0] == (
        hip.config.blocks[-1] if source == "decoder" else hip.config.blocks[hip.config.processor_index]).channels


def test_a_model_without_the_head_is_unchanged_and_the_source_is_checked():
    torch.manual_seed(0)
    plain = HiP(variant("small3", num_classes=10), CANVAS)
    torch.manual_seed(0)
    headed = HiP(variant("small3", num_classes=10, dense_classes=11), CANVAS)
    assert plain.dense_head is None and plain({"image": torch.rand(1, 1024, 1)}).dense is None
    shared = plain.state_dict()
    assert all(torch.equal(shared[k], v) for k, v in headed.state_dict().items() if k in shared)
    with pytest.raises(ValueError, match="dense_from must be one of .*got 'middle'"):
        variant("small3", dense_from="middle")


# ---- the loss and the metric ----

def test_pixel_loss_is_the_mean_cross_entropy_over_every_pixel():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 1.0, 3.0], [1.0, 1.0, 1.0]]])
    labels = torch.tensor([[0, 1], [2, 0]])                                     # [B=2, M=2]
    by_hand = [2 - math.log(math.exp(2) + 2), -math.log(3), 3 - math.log(1 + math.e + math.exp(3)), -math.log(3)]
    assert dense.pixel_loss(logits, labels).item() == pytest.approx(-sum(by_hand) / 4, rel=1e-6)
    assert dense.pixel_loss(torch.zeros(3, 5, 11), torch.zeros(3, 5, dtype=torch.long)).item() == pytest.approx(
        math.log(11), rel=1e-6)


def test_miou_comes_from_the_confusion_matrix_and_leaves_out_a_class_absent_from_both_sides():
    truth = torch.tensor([0, 0, 1, 1, 2, 2, 0, 4])
    predicted = torch.tensor([0, 1, 1, 1, 2, 0, 0, 1])           # class 3: in neither; class 4 never predicted
    matrix = dense.confusion(predicted, truth, 5)
    assert matrix.tolist() == [[2, 1, 0, 0, 0], [0, 2, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]]
    ious = [2 / (3 + 3 - 2), 2 / (2 + 4 - 2), 1 / (2 + 1 - 1), 0 / (1 + 0 - 0)]     # TP / (TP + FP + FN)
    got = dense.scores(matrix)
    assert got["miou"] == pytest.approx(sum(ious) / 4) and got["pixel_accuracy"] == pytest.approx(5 / 8)


def test_the_evaluated_set_is_scored_once_not_batch_by_batch():
    """Batches of 1 and one batch of all give the same mIoU, which differs from the mean of
    per-canvas mIoUs (a class absent from a canvas would drop out there)."""
    torch.manual_seed(0)
    hip = HiP(variant("perceiver_small", dense_classes=5), DenseToy(1).modalities)
    data, ctx = DenseToy(6, seed=3), Context(0, 1, 0, torch.device("cpu"), False)
    whole = dense.evaluate(hip, data, TrainConfig(task="segment", eval_batch_size=6), ctx)
    ones = dense.evaluate(hip, data, TrainConfig(task="segment", eval_batch_size=1), ctx)
    assert (whole["miou"], whole["pixel_accuracy"]) == (ones["miou"], ones["pixel_accuracy"])   # counts: exact
    assert whole["loss"] == pytest.approx(ones["loss"], rel=1e-6)                              # float32 sums
    per_canvas = [dense.evaluate(hip, _One(data, i), TrainConfig(task="segment"), ctx)["miou"] for i in range(6)]
    assert whole["miou"] != pytest.approx(sum(per_canvas) / 6)


class _One:
    """Canvas i of a dataset, alone."""

    def __init__(self, data, i):
        self.data, self.i = data, i

    def __len__(self):
        return 1

    def get_batch(self, indices):
        return self.data.get_batch(torch.tensor([self.i]))


# ---- the loop ----

def test_a_segment_run_selects_on_validation_miou_and_tests_once(tmp_path):
    result = run(config(tmp_path))
    assert {"test_miou", "test_pixel_accuracy", "test_loss", "val_miou", "val_pixel_accuracy",
            "train_pixel_accuracy"} <= set(result.metrics)
    rows = read_metrics(result.run_dir)
    val = {r["epoch"]: r["value"] for r in rows if r["split"] == "val" and r["metric"] == "miou"}
    best_epoch = max(val, key=lambda e: (val[e], -e))                 # the first best, as `improved` keeps it
    assert result.selected_epoch == best_epoch and result.best == val[best_epoch]
    assert [r["epoch"] for r in rows if r["split"] == "test" and r["metric"] == "miou"] == [best_epoch]
    saved = ckpt.load(result.best_checkpoint)
    assert saved["model_config"]["dense_classes"] == 5 and saved["config"]["task"] == "segment"
    assert result.converged is False                                  # 3 epochs: no whole window yet


def test_a_killed_segment_run_resumes_bit_exactly(tmp_path):
    reference = run(config(tmp_path, "reference", checkpoint_every=2))
    with pytest.raises(Stop):
        run(config(tmp_path, "victim", checkpoint_every=2), stop_at=5)    # after step 4 was checkpointed
    assert ckpt.load(tmp_path / "victim" / "last.pt")["step"] == 4
    resumed = run(config(tmp_path, "victim", checkpoint_every=2))
    assert resumed.metrics == reference.metrics and resumed.best == reference.best
    assert (tmp_path / "victim" / "metrics.csv").read_text() == (tmp_path / "reference" / "metrics.csv").read_text()


def test_the_dense_arms_train_through_the_same_loop_from_a_config_field(tmp_path):
    for name, source in ARMS:
        result = run(config(tmp_path, f"{name}-{source}", variant=name, model={"dense_from": source},
                            epochs=1, val_fraction=0.0))
        assert set(ckpt.load(result.last_checkpoint)["model"]) >= {"dense_head.linear.weight"}
        assert 0.0 <= result.metrics["test_miou"] <= 1.0


# ---- bad input, one line ----

def test_labels_outside_the_head_are_refused_naming_the_split_and_the_label(tmp_path):
    with pytest.raises(DataError, match=r"segment: toy train example \d+ has label 5 at position \d+, outside "
                                        r"the head's \[0, 5\)"):
        train(config(tmp_path), train_data=DenseToy(64, 0, background=5), test_data=DenseToy(24, 1))
    with pytest.raises(DataError, match=r"segment: toy test example 0 has label -1 at position [04],"):
        train(config(tmp_path), train_data=DenseToy(64, 0), test_data=DenseToy(24, 1, background=-1))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_classification_dataset_is_refused_for_segment(tmp_path):
    from test_train_engine import Toy

    with pytest.raises(DataError, match=r"labels must be one per position \[N, M\], got shape \(48,\): a segmentation"):
        train(config(tmp_path), train_data=Toy(64, 0), test_data=Toy(24, 1))


def command_line(tmp_path, *extra):
    return ["train", "--task", "segment", "--dataset", "collages", "--data-option", "side=32",
            "--data-option", "train_canvases=32", "--data-option", "test_canvases=8", "--batch-size", "8",
            "--threads", "1", "--quiet", "--device", "cpu", "--run-dir", str(tmp_path / "seg"), *extra]


def one_line_error(capsys, argv):
    code = hipcore_main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and not ONE_LINE_ERROR.search(err), err
    return err


def test_a_segment_run_from_the_command_line(tmp_path, capsys):
    variant_file = tmp_path / "tiny.json"
    variant_file.write_text(json.dumps(TINY))
    code = hipcore_main(command_line(tmp_path, "--variant", str(variant_file), "--epochs", "2",
                                     "--val-fraction", "0.25"))
    out = capsys.readouterr().out
    assert code == 0
    shown = dict(kv.split("=", 1) for kv in out.splitlines()[0].split())
    assert {"test_miou", "test_pixel_accuracy", "val_miou"} <= set(shown)
    assert json.loads((tmp_path / "seg" / "config.json").read_text())["task"] == "segment"
    assert {r["metric"] for r in read_metrics(tmp_path / "seg") if r["split"] == "test"} == {
        "loss", "pixel_accuracy", "miou"}


def test_the_head_s_classes_come_from_the_dataset_not_an_option(tmp_path, capsys):
    err = one_line_error(capsys, command_line(tmp_path, "--set", "dense_classes=3"))
    assert "unknown model option(s) ['dense_classes']" in err and "come from the dataset and the task" in err


def test_groups_that_cannot_split_the_canvas_are_refused(tmp_path, capsys):
    blocks = [dict(b, groups=3 if b["groups"] == 4 else b["groups"]) for b in TINY["blocks"]]
    variant_file = tmp_path / "three.json"
    variant_file.write_text(json.dumps({**TINY, "blocks": blocks}))
    err = one_line_error(capsys, command_line(tmp_path, "--variant", str(variant_file)))
    assert "collages's 'image' has 1024 positions (a 32 x 32 canvas), which the model's 3 first-level " \
           "groups cannot split evenly" in err


def test_a_collages_folder_of_the_wrong_shape_is_refused_naming_the_file(tmp_path, capsys):
    folder = tmp_path / "items"
    folder.mkdir()
    for stem, (_, _, shape) in FILES.items():
        wrong = (shape[0], 20, 20) if len(shape) == 3 else shape      # 20 x 20 items, not 28 x 28
        header = bytes([0, 0, 8, len(wrong)]) + b"".join(struct.pack(">I", d) for d in wrong)
        (folder / stem).write_bytes(header + bytes(math.prod(wrong)))
    err = one_line_error(capsys, command_line(tmp_path, "--data-dir", str(folder)))
    assert "train-images-idx3-ubyte: not the expected idx file" in err and "dims (60000, 20, 20)" in err
    assert not (Path(tmp_path) / "seg" / "last.pt").exists()


def test_a_segment_run_fine_tunes_from_an_mae_checkpoint_and_gets_a_new_head(tmp_path):
    mae = run(config(tmp_path, "mae", task="pretrain", epochs=1, val_fraction=0.0))
    tuned = run(config(tmp_path, "tuned", init_from=str(mae.last_checkpoint), epochs=1, val_fraction=0.0))
    before, after = ckpt.load(mae.last_checkpoint)["model"], ckpt.load(tuned.last_checkpoint)["model"]
    assert "dense_head.linear.weight" not in before and "dense_head.linear.weight" in after
    assert json.loads((tmp_path / "tuned" / "run.json").read_text())["source"] is not None    # started from it


def test_predicted_masks_sit_beside_the_truth_on_the_grid():
    torch.manual_seed(0)
    data = DenseToy(3, seed=2)
    hip = HiP(variant("perceiver_small", dense_classes=5), data.modalities)
    truth, predicted = dense.predict_masks(hip, data, [2, 0])
    assert truth.shape == predicted.shape == (2, 8, 8)
    assert torch.equal(truth, data.labels[[2, 0]].reshape(2, 8, 8))
    logits = hip.eval()({"image": data.images[[2, 0]]}, reconstruct=False).dense["image"]
    assert torch.equal(predicted, logits.argmax(-1).reshape(2, 8, 8))


def test_a_fashion_mnist_classification_run_never_imports_the_dense_or_other_dataset_modules(tmp_path):
    """The registry imports a dataset's module on first use, and the segmentation pieces load
    only for a segment run: editing them changes nothing a classification run loads."""
    script = ("import sys\nfrom hipcore.train import TrainConfig, train\n"
              f"train(TrainConfig(limit_train=64, limit_test=32, max_steps=1, batch_size=32, device='cpu', "
              f"quiet=True, run_dir={str(tmp_path / 'run')!r}))\n"
              "print(' '.join(sorted(m for m in sys.modules if m.startswith('hipcore'))))\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {"hipcore.data.fashion_mnist", "hipcore.train.engine", "hipcore.model.hip"} <= loaded
    assert not loaded & {"hipcore.data.collages", "hipcore.data.pointclouds", "hipcore.data.parts3d",
                         "hipcore.data.imagefolder", "hipcore.model.dense", "hipcore.train.dense"}
