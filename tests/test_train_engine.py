"""The training loop in-process, on a tiny dataset that follows the hipcore.data contract."""

import json

import matplotlib
import numpy as np
import pytest
import torch

from hipcore import ModalitySpec
from hipcore import device as precision
from hipcore.train import (
    ConfigMismatchError,
    NonFiniteLossError,
    TrainConfig,
    engine,
    load_model,
    read_metrics,
    reconstruct_examples,
    train,
)
from hipcore.train import checkpoint as ckpt

matplotlib.use("Agg")

TINY = {"blocks": [dict(groups=4, latents=4, channels=16, self_attends=1, heads=2),
                   dict(groups=1, latents=8, channels=32, self_attends=1, heads=4),
                   dict(groups=4, latents=4, channels=16, self_attends=1, heads=2)],
        "embed_channels": 8}


class Toy:
    """8 x 8 images whose class (0-3) is the bright quadrant, optionally with a second modality
    of 10 points (uneven groups: padding). Train batches get noise drawn from the generator."""

    def __init__(self, n, seed=0, points=False, nan_after=None):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 4
        images = 0.3 * torch.randn(n, 8, 8, generator=g)
        for q in range(4):
            r, c = divmod(q, 2)
            images[self.labels == q, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.0
        self.data = {"image": images.reshape(n, 64, 1)}
        self.modalities = {"image": ModalitySpec(64, 1, (8, 8))}
        if points:
            self.data["points"] = torch.randn(n, 10, 3, generator=g) + self.labels[:, None, None] * 0.5
            self.modalities["points"] = ModalitySpec(10, 3)
        self.class_names = ["a", "b", "c", "d"]
        self.mean = {k: torch.zeros(v.shape[-1]) for k, v in self.data.items()}
        self.std = {k: torch.ones(v.shape[-1]) for k, v in self.data.items()}
        self.nan_after, self.train_batches = nan_after, 0

    num_classes = property(lambda self: len(self.class_names))

    def __len__(self):
        return len(self.labels)

    def get_batch(self, indices, *, train=False, generator=None):
        inputs = {k: v[indices].clone() for k, v in self.data.items()}
        if train:
            self.train_batches += 1
            inputs = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in inputs.items()}
            if self.nan_after is not None and self.train_batches > self.nan_after:
                inputs["image"][0, 0, 0] = float("nan")
        return inputs, self.labels[indices]

    def describe(self):
        return {"name": "toy", "size": len(self)}


def config(tmp_path, name="run", **overrides):
    base = dict(dataset="toy", model=TINY, epochs=2, batch_size=16, eval_batch_size=32, lr=3e-3,
                warmup_steps=2, log_every=2, run_dir=str(tmp_path / name), quiet=True)
    return TrainConfig(**{**base, **overrides})


def run(cfg, n=64, test=32, **data):
    return train(cfg, train_data=Toy(n, 0, **data), test_data=Toy(test, 1, **data))


def test_supervised_run_leaves_tidy_metrics_config_versions_and_loadable_checkpoints(tmp_path):
    result = run(config(tmp_path, epochs=3))
    assert result.steps == 12 and set(result.metrics) == {
        "epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    rows = read_metrics(result.run_dir)
    assert {(r["split"], r["metric"]) for r in rows} == {
        ("train", "loss"), ("train", "lr"), ("train_epoch", "loss"), ("train_epoch", "accuracy"),
        ("test", "loss"), ("test", "accuracy")}
    test_acc = [(r["epoch"], r["step"], r["value"]) for r in rows if r["split"] == "test" and r["metric"] == "accuracy"]
    assert test_acc == [(3, 12, result.metrics["test_accuracy"])]          # once, on the final weights
    resolved = precision.resolve("auto", "cpu")                       # what the run stores
    assert {r["run_id"] for r in rows} == {config(tmp_path, epochs=3, precision=resolved).run_id}
    assert json.loads((result.run_dir / "config.json").read_text())["epochs"] == 3
    assert {"python", "torch", "numpy", "hipcore", "platform", "threads", "device"} <= set(
        json.loads((result.run_dir / "versions.json").read_text()))
    state = torch.load(result.last_checkpoint, weights_only=True)
    assert state["step"] == 12 and state["loader"]["position"] == 4
    assert result.best == result.metrics["test_accuracy"] and torch.load(result.best_checkpoint, weights_only=True)
    model = load_model(result.last_checkpoint)
    assert model.config.num_classes == 4 and model.modalities["image"].grid == (8, 8)
    losses = [r["value"] for r in rows if r["split"] == "train_epoch" and r["metric"] == "loss"]
    assert losses[-1] < losses[0]


def test_timing_csv_splits_each_epochs_steps_from_waiting_for_batches(tmp_path):
    result = run(config(tmp_path, epochs=2))
    rows = read_metrics(result.run_dir / "timing.csv")
    per_epoch = {}
    for r in rows:
        if r["split"] == "time":
            per_epoch.setdefault(r["epoch"], {})[r["metric"]] = r["value"]
    assert sorted(per_epoch) == [1, 2]
    for epoch in per_epoch.values():
        assert 0 < epoch["load_seconds"] < epoch["train_seconds"] <= epoch["elapsed_seconds"]
    assert per_epoch[2]["load_seconds"] > per_epoch[1]["load_seconds"]        # cumulative, as train_seconds


def test_same_seed_same_metrics_and_a_finished_run_is_not_rerun(tmp_path):
    a = run(config(tmp_path, "a", model={**TINY, "dropout": 0.1}))
    b = run(config(tmp_path, "b", model={**TINY, "dropout": 0.1}))
    assert a.metrics == b.metrics
    assert (a.run_dir / "metrics.csv").read_text() == (b.run_dir / "metrics.csv").read_text()
    again = run(config(tmp_path, "a", model={**TINY, "dropout": 0.1}, quiet=False, checkpoint_every=3))
    assert again.metrics == a.metrics and again.steps == a.steps
    c = run(config(tmp_path, "c", model={**TINY, "dropout": 0.1}, seed=1))
    assert c.metrics != a.metrics


def test_resuming_with_another_config_is_refused_naming_the_fields(tmp_path):
    run(config(tmp_path, max_steps=2))
    with pytest.raises(ConfigMismatchError, match=r"(?s)different configuration.*lr: 0.003 -> 0.01.*max_steps: 2 -> 3"):
        run(config(tmp_path, max_steps=3, lr=0.01))


@pytest.mark.parametrize("how", ["nan_input", "huge_lr"])
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, how):
    kw = dict(checkpoint_every=1, clip_grad=None)
    if how == "huge_lr":
        kw.update(lr=1e30, warmup_steps=0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite .* at step (\d+)") as error:
        run(config(tmp_path, **kw), nan_after=3 if how == "nan_input" else None)
    step = int(error.value.args[0].split("at step ")[1].split()[0])
    if how == "nan_input":
        assert step == 4
    state = ckpt.load(tmp_path / "run" / "last.pt")
    assert state["step"] == step - 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert all(r["step"] < step for r in read_metrics(tmp_path / "run"))


def test_mae_pretraining_on_two_modalities_then_reconstructions_and_a_figure(tmp_path):
    cfg = config(tmp_path, task="pretrain", epochs=3, mask_ratio=0.75, norm_pix=True)
    result = run(cfg, points=True)
    assert set(result.metrics) == {"epoch", "step", "train_loss", "test_loss"}
    rows = read_metrics(result.run_dir)
    losses = [r["value"] for r in rows if r["split"] == "train_epoch"]
    assert losses[-1] < losses[0]
    assert [r["value"] for r in rows if r["split"] == "test"] == [result.metrics["test_loss"]] == [result.best]
    model = load_model(result.last_checkpoint)
    assert model.classifier is None
    rec = reconstruct_examples(model, Toy(8, 1, points=True), [0, 5], mask_ratio=0.75, seed=0, norm_pix=True)
    assert rec.input.shape == rec.masked.shape == rec.reconstruction.shape == (2, 8, 8, 1)
    assert rec.mask.shape == (2, 8, 8) and np.isnan(rec.masked).sum() == rec.mask.sum()
    assert 0.6 < rec.mask.mean() < 0.9
    from hipcore.train.plots import plot_reconstructions
    assert plot_reconstructions(rec).axes


def test_fine_tuning_transfers_positions_frozen_or_all(tmp_path):
    mae = run(config(tmp_path, "mae", task="pretrain", max_steps=4))
    mae_state = ckpt.load(mae.last_checkpoint)["model"]
    frozen = run(config(tmp_path, "frozen", init_from=str(mae.last_checkpoint), transfer="positions_frozen",
                        max_steps=4))
    state = ckpt.load(frozen.last_checkpoint)["model"]
    assert torch.equal(state["positions.tables.image"], mae_state["positions.tables.image"])
    assert not torch.equal(state["blocks.0.latents"], mae_state["blocks.0.latents"])
    both = run(config(tmp_path, "all", init_from=str(mae.last_checkpoint), transfer="all", max_steps=1, lr=1e-9))
    state = ckpt.load(both.last_checkpoint)["model"]
    assert torch.allclose(state["blocks.0.latents"], mae_state["blocks.0.latents"], atol=1e-6)
    with pytest.raises(ValueError, match=r"trained on other inputs.*\n  modalities \['image'\] in the "
                                         r"checkpoint, \['image', 'points'\] here"):
        run(config(tmp_path, "bad", init_from=str(mae.last_checkpoint), max_steps=1), points=True)


@pytest.mark.parametrize("task, val_fraction", [("supervised", 0.25), ("supervised", 0.0), ("pretrain", 0.25)])
def test_the_test_set_is_evaluated_once_at_the_end_and_validation_every_epoch(tmp_path, monkeypatch, task,
                                                                              val_fraction):
    calls, real = [], engine.evaluate
    test_data = Toy(32, 1)

    def counted(hip, dataset, *args, **kwargs):
        calls.append("test" if dataset is test_data else "other")
        return real(hip, dataset, *args, **kwargs)
    monkeypatch.setattr(engine, "evaluate", counted)
    result = train(config(tmp_path, task=task, epochs=3, val_fraction=val_fraction),
                   train_data=Toy(80, 0), test_data=test_data)
    assert calls == ["other"] * (3 if val_fraction else 0) + ["test"]          # per epoch: validation only
    rows = read_metrics(result.run_dir)
    tested = {(r["epoch"], r["step"]) for r in rows if r["split"] == "test"}
    assert tested == {(result.selected_epoch or 3, result.best_step)}
    assert not any(r["split"] == "test" for r in rows if r["epoch"] != (result.selected_epoch or 3))


def test_the_test_set_is_evaluated_on_the_checkpoint_validation_selected(tmp_path, monkeypatch):
    real, test_data, seen = engine.evaluate, Toy(32, 1), []

    def falling_validation(hip, dataset, *args, **kwargs):       # validation says epoch 1 was best
        if dataset is test_data:
            return real(hip, dataset, *args, **kwargs)
        seen.append(None)
        return {"loss": float(len(seen)), "accuracy": 1.0 / len(seen)}
    monkeypatch.setattr(engine, "evaluate", falling_validation)
    result = train(config(tmp_path, epochs=3, val_fraction=0.25), train_data=Toy(80, 0), test_data=test_data)
    assert result.selected_epoch == 1 and result.best_step == 3 and result.steps == 9
    cfg = TrainConfig.from_dict(json.loads((result.run_dir / "config.json").read_text()))
    autocast = precision.autocast(cfg.precision, torch.device("cpu"))         # as the run computed
    on_best = real(load_model(result.best_checkpoint), test_data, cfg, autocast=autocast)
    on_last = real(load_model(result.last_checkpoint), test_data, cfg, autocast=autocast)
    assert result.metrics["test_loss"] == on_best["loss"] != on_last["loss"]
    assert result.metrics["test_accuracy"] == on_best["accuracy"]
    assert ckpt.load(result.last_checkpoint)["run"]["test"] == on_best                    # recorded in last.pt
