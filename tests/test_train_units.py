"""The pieces of training: config, masking, MAE loss, optimisers, schedule, checkpoints, logs."""

import json
import math
import random

import numpy as np
import pytest
import torch

from hipcore import BlockConfig, HiPConfig, ModalitySpec, build
from hipcore.model import GroupLayout
from hipcore.train import Lamb, TrainConfig, transfer
from hipcore.train import checkpoint as ckpt
from hipcore.train.mae import fixed_noise, forward_loss, modality_masks, num_visible, random_masking
from hipcore.train.metrics import MetricsLogger, quiet_environment, read_metrics
from hipcore.train.optim import WarmupCosine, build_scheduler, param_groups

BLOCKS = (BlockConfig(groups=4, latents=4, channels=16, self_attends=1, heads=2),
          BlockConfig(groups=1, latents=8, channels=32, self_attends=1, heads=4),
          BlockConfig(groups=4, latents=4, channels=16, self_attends=1, heads=2))
IMAGE = {"image": ModalitySpec(64, 1, (8, 8))}


def tiny(modalities=IMAGE, seed=0, **overrides):
    torch.manual_seed(seed)
    return build(HiPConfig(blocks=BLOCKS, embed_channels=8), modalities, **overrides)


# ---- config ----

def test_config_round_trips_through_json_and_names_bad_values():
    cfg = TrainConfig(task="pretrain", model={"position": "fourier"}, data_options={"num_points": 64},
                      betas=(0.9, 0.95), max_steps=7)
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.betas == (0.9, 0.95)
    with pytest.raises(ValueError, match="mask_ratio"):
        TrainConfig(mask_ratio=1.0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="unknown model option"):
        TrainConfig(model={"widht": 3})
    with pytest.raises(ValueError, match="init_from is for fine-tuning"):
        TrainConfig(task="pretrain", init_from="x.pt")
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"lr": 1e-3, "learning_rate": 1})


def test_run_id_ignores_where_and_how_quietly_a_run_goes():
    a = TrainConfig(run_dir="a", quiet=True)
    assert a.run_id == TrainConfig(run_dir="b", checkpoint_every=5).run_id
    assert a.run_id != TrainConfig(seed=1).run_id
    assert TrainConfig(lr=2e-3).differences(a.to_dict()) == ["lr: 0.001 -> 0.002", "run_dir: 'a' -> None"]


# ---- groupwise masking and the MAE loss ----

def test_random_masking_keeps_the_same_count_per_example_and_differs_between_examples():
    noise = torch.rand(5, 20, generator=torch.Generator().manual_seed(0))
    visible, mask = random_masking(noise, 0.85)
    assert visible.shape == (5, num_visible(20, 0.85)) == (5, 3)
    assert torch.equal(visible, visible.sort(dim=1).values)
    assert (~mask).sum(1).tolist() == [3] * 5
    assert torch.equal((~mask).nonzero()[:, 1].view(5, 3), visible)
    assert len({tuple(v.tolist()) for v in visible}) > 1
    assert num_visible(16, 0.75) == 4 and num_visible(4, 0.99) == 1 and num_visible(4, 0.01) == 3


def test_fixed_noise_depends_only_on_seed_and_index():
    a = fixed_noise(torch.tensor([3, 9]), 6, seed=1)
    assert torch.equal(a[1], fixed_noise(torch.tensor([9]), 6, seed=1)[0])
    assert not torch.equal(a, fixed_noise(torch.tensor([3, 9]), 6, seed=2))


def test_modality_masks_repeat_the_group_pattern_and_drop_padding():
    layout = GroupLayout.build({"image": 10, "audio": 3}, 4)     # image 3 groups of 4 (2 padded)
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    masks = modality_masks(layout, mask)
    assert masks["image"].shape == (2, 10) and masks["audio"].shape == (2, 3)
    assert masks["image"][0].tolist() == [True, False, True, False] * 2 + [True, False]
    assert masks["audio"][1].tolist() == [False, False, True]


def test_loss_counts_hidden_positions_only_and_can_normalise_targets():
    x = {"a": torch.randn(2, 6, 3)}
    masks = {"a": torch.tensor([[True] * 3 + [False] * 3] * 2)}
    pred = {"a": torch.zeros(2, 6, 3)}
    loss, count = forward_loss(x, pred, masks)
    assert count == 6 and torch.allclose(loss, x["a"][:, :3].square().mean())
    pred["a"][:, 3:] = 100.0                                     # visible positions: no effect
    assert torch.allclose(forward_loss(x, pred, masks)[0], loss)
    scaled = {"a": x["a"] * 7 + 3}
    assert torch.allclose(forward_loss(scaled, pred, masks, norm_pix=True)[0],
                          forward_loss(x, pred, masks, norm_pix=True)[0], atol=1e-4)


def test_mae_gradients_reach_positions_encoder_and_decoder_with_padding():
    modalities = {"image": ModalitySpec(10, 2), "audio": ModalitySpec(3, 1)}
    model = tiny(modalities)
    for unembed in model.embedder.unembed.values():             # zero at init: no gradient yet
        torch.nn.init.normal_(unembed.weight)
    layout = model.layout(("image", "audio"))
    x = {"image": torch.randn(3, 10, 2), "audio": torch.randn(3, 3, 1)}
    from hipcore.train.mae import mae_loss
    loss, count, rec, masks = mae_loss(model, layout, x, torch.rand(3, layout.group_size), 0.75)
    loss.backward()
    assert torch.isfinite(loss) and rec["image"].shape == (3, 10, 2)
    assert count == sum(m.sum() for m in masks.values())
    params = dict(model.named_parameters())
    for name in ("positions.tables.image", "positions.tables.audio", "blocks.0.latents",
                 "blocks.2.latents", "reconstruction_head.attention.q.weight"):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name


# ---- optimisers and schedule ----

def test_lamb_scales_each_update_by_the_trust_ratio():
    w = torch.nn.Parameter(torch.full((4, 4), 2.0))
    opt = Lamb([w], lr=0.1, weight_decay=0.0)
    w.grad = torch.randn(4, 4)
    before = w.detach().clone()
    opt.step()
    assert torch.allclose((w - before).norm(), 0.1 * before.norm(), rtol=1e-4)  # ||dw|| = lr ||w||
    x = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = Lamb([x], lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        x.square().sum().backward()
        opt.step()
    assert x.norm() < 0.5


def test_warmup_then_cosine():
    f = WarmupCosine(4, 14, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and math.isclose(f(9), 0.55) and math.isclose(f(14), 0.1) and math.isclose(f(99), 0.1)
    assert WarmupCosine(0, 10)(0) == 1.0


def test_a_constant_schedule_does_not_depend_on_the_cap():
    """schedule='constant': after warm-up the rate holds, so two caps give one curve (the plateau
    rule, not the cap, ends the run); the cosine's rate at a step depends on the cap."""
    def rates(cfg, total_steps):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=10, total_steps=total_steps)
        out = []
        for _ in range(60):
            out.append(scheduler.get_last_lr()[0])
            optimizer.step(), scheduler.step()
        return out

    constant = TrainConfig(schedule="constant", warmup_epochs=2)
    assert rates(constant, 100) == rates(constant, 1000)
    assert np.allclose(rates(constant, 100), [1e-3 * min(1, (s + 1) / 20) for s in range(60)], rtol=1e-12)
    cosine = TrainConfig(warmup_epochs=2)
    assert rates(cosine, 100)[30] < rates(cosine, 1000)[30] < 1e-3
    # the default leaves run ids as they were before the field (these two were computed then);
    # another schedule is another run
    assert TrainConfig().run_id == "supervised-a182d7a2"
    assert TrainConfig(task="pretrain", plateau=True, val_fraction=0.1).run_id == "pretrain-74c929a5"
    assert TrainConfig(schedule="constant").run_id != TrainConfig().run_id
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="linear")


def test_weight_decay_skips_biases_norms_and_tables():
    model = tiny(num_classes=3)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no = {names[id(p)] for p in no_decay["params"]}
    assert "positions.tables.image" in no and "blocks.0.latents" in no
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert not any(n.endswith(("bias", "latents")) for n in (names[id(p)] for p in decay["params"]))


# ---- checkpoints and random states ----

def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn(3)
    path = tmp_path / "state.pt"
    ckpt.save_atomic({"model": {}, "rng": [ckpt.rng_state()]}, path)
    expected = torch.rand(3), np.random.rand(3), random.random()
    ckpt.set_rng_state(ckpt.load(path)["rng"][0])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())     # no temporary left


def test_load_refuses_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        ckpt.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a hipcore training checkpoint"):
        ckpt.load(tmp_path / "other.pt")


# ---- transfer ----

def _mae_state(model):
    return {"model": model.state_dict(), "model_config": model.config.to_dict()}


def test_transfer_modes_load_what_they_say():
    mae = tiny(seed=1)
    for mode, expect_blocks in (("all", True), ("positions", False), ("positions_frozen", False)):
        clf = tiny(seed=2, num_classes=3)
        names = transfer(clf, _mae_state(mae), mode)
        assert torch.equal(clf.positions.tables["image"], mae.positions.tables["image"])
        assert torch.equal(clf.blocks[0].latents, mae.blocks[0].latents) == expect_blocks
        assert not any(n.startswith("classifier.") for n in names)
        assert clf.positions.tables["image"].requires_grad == (mode != "positions_frozen")
    clf = tiny(seed=2, num_classes=3)
    assert transfer(clf, _mae_state(mae), "none") == []
    assert not torch.equal(clf.positions.tables["image"], mae.positions.tables["image"])


def test_transfer_names_what_does_not_fit():
    mae = tiny({"image": ModalitySpec(49, 1, (7, 7))})
    with pytest.raises(ValueError, match=r"positions.tables.image \(49, 8\) in the checkpoint, \(64, 8\) here"):
        transfer(tiny(num_classes=3), _mae_state(mae), "positions")
    with pytest.raises(ValueError, match="'learned' positions but this model uses 'fourier'"):
        transfer(tiny(num_classes=3, position="fourier"), _mae_state(tiny()), "all")
    with pytest.raises(ValueError, match="transfer must be one of"):
        transfer(tiny(), _mae_state(tiny()), "encoder")


# ---- logs ----

def test_metrics_keep_rows_up_to_the_resumed_step_and_drop_a_torn_line(tmp_path):
    path = tmp_path / "metrics.csv"
    log = MetricsLogger(path, "run", 0)
    log.start()
    for step in (1, 2, 3):
        log.log(1, step, "train", loss=1.0 / step)
    log.close()
    with open(path, "a") as f:
        f.write("run,0,1,4,tra")                                 # a row cut short by SIGKILL
    log.start(keep_until_step=2)
    log.log(1, 3, "test", loss=0.5)
    log.close()
    rows = read_metrics(tmp_path)
    assert [(r["step"], r["split"]) for r in rows] == [(1, "train"), (2, "train"), (3, "test")]
    assert rows[1]["value"] == 0.5 and list(rows[0]) == ["run_id", "seed", "epoch", "step", "split", "metric", "value"]


def test_progress_is_quiet_under_ci_and_papermill(monkeypatch):
    monkeypatch.setenv("CI", "1")
    assert quiet_environment()
    monkeypatch.delenv("CI")
    monkeypatch.setenv("PAPERMILL_EXECUTION", "1")
    assert quiet_environment()


def test_the_console_shows_accuracies_as_percentages():
    from hipcore.train.metrics import show_metric as shown

    assert shown("test_accuracy", 0.5542) == "55.42%" and shown("val_accuracy", 1.0) == "100.00%"
    assert shown("test_loss", 0.771415) == "0.7714" and shown("epoch", 3) == "3"
