"""Behaviour of the HiP model: locality, shapes, gradients, paths, determinism, errors."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from hipcore import BlockConfig, HiPConfig, ModalitySpec, build, plain_attention, variant
from hipcore.model import GroupLayout, allot_groups, layers, regroup
from hipcore.model.layers import Attention

IMAGE = {"image": ModalitySpec(64, 3, (8, 8))}


def tiny_config(**overrides):
    """5 blocks (G 4 -> 2 -> 1 -> 2 -> 4), small enough for fast tests."""
    blocks = (BlockConfig(groups=4, latents=4, channels=16, self_attends=1, heads=2),
              BlockConfig(groups=2, latents=4, channels=24, self_attends=1, heads=2),
              BlockConfig(groups=1, latents=8, channels=32, self_attends=1, heads=4),
              BlockConfig(groups=2, latents=4, channels=24, self_attends=1, heads=2),
              BlockConfig(groups=4, latents=4, channels=16, self_attends=1, heads=2))
    return HiPConfig(blocks=blocks, embed_channels=8, **overrides)


def tiny(modalities=IMAGE, seed=0, **overrides):
    torch.manual_seed(seed)
    return build(tiny_config(**overrides), modalities)


def batch(modalities=IMAGE, b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(b, s.num_inputs, s.channels, generator=g) for n, s in modalities.items()}


# ---- grouping ----

def test_groups_are_allotted_in_proportion_like_the_official_model():
    assert allot_groups(16, [1024, 32]) == [15, 1]
    assert allot_groups(16, [128, 16]) == [14, 2]
    assert allot_groups(4, [10, 10, 10, 10]) == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="never mixes modalities"):
        allot_groups(2, [5, 5, 5])


def test_group_then_ungroup_is_identity_and_mask_marks_padding():
    layout = GroupLayout.build({"a": 10, "b": 3}, 4)           # a: 3 groups of 4 (2 padded), b: 1
    values = {"a": torch.randn(2, 10, 5), "b": torch.randn(2, 3, 5)}
    grouped = layout.group(values)
    assert grouped.shape == (2, 4, 4, 5)
    back = layout.ungroup(grouped)
    assert all(torch.equal(back[n], values[n]) for n in values)
    mask = layout.key_mask()
    assert mask.shape == (4, 4) and mask.sum() == 13
    assert not mask[2, 2:].any() and not mask[3, 3:].any()
    assert GroupLayout.build({"a": 16}, 4).key_mask() is None


def test_regroup_merges_neighbours_or_interleaves():
    z = torch.arange(4 * 2).reshape(1, 4, 2, 1).float()         # group g holds 2g, 2g+1
    assert regroup(z, 2).flatten().tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert regroup(z, 2)[0, 0, :, 0].tolist() == [0, 1, 2, 3]
    assert regroup(z, 2, "transpose_reshape")[0, 0, :, 0].tolist() == [0, 2, 4, 6]
    with pytest.raises(ValueError, match="cannot regroup"):
        regroup(z, 3)
    with pytest.raises(ValueError, match="unknown regroup"):
        regroup(z, 2, "shuffle")


def test_squared_relu_matches_its_definition_and_gradient():
    from hipcore.model.layers import SquaredReLU

    x = torch.randn(20, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(SquaredReLU()(x), torch.relu(x) ** 2)
    assert torch.autograd.gradcheck(SquaredReLU(), (x,))


# ---- the model ----

def test_first_level_is_local_to_its_group():
    model = tiny().eval()
    x = batch()
    base = model(x, reconstruct=False).latents[0]               # [B, 4, K, D]
    changed = {"image": x["image"].clone()}
    changed["image"][:, 16:32] += 1.0                           # the inputs of group 1 (64 / 4)
    after = model(changed, reconstruct=False).latents[0]
    moved = (after - base).abs().amax(dim=(0, 2, 3))
    assert moved[1] > 1e-4
    assert torch.all(moved[[0, 2, 3]] == 0)


def test_outputs_have_the_documented_shapes_for_several_modalities():
    mods = {"image": ModalitySpec(50, 3), "audio": ModalitySpec(30, 2), "label": ModalitySpec(1, 5)}
    model = tiny(mods, num_classes=7)
    out = model(batch(mods, b=3))
    assert {n: tuple(x.shape) for n, x in out.reconstruction.items()} == \
           {"image": (3, 50, 3), "audio": (3, 30, 2), "label": (3, 1, 5)}
    assert out.logits.shape == (3, 7)
    assert [tuple(z.shape[:3]) for z in out.latents] == \
           [(3, 4, 4), (3, 2, 4), (3, 1, 8), (3, 2, 4), (3, 4, 4)]
    only_audio = model({"audio": batch(mods)["audio"]})
    assert set(only_audio.reconstruction) == {"audio"}


def test_all_padding_groups_give_no_nan_values_or_gradients():
    mods = {"short": ModalitySpec(2, 3)}                        # 4 groups, 2 inputs: 2 empty groups
    model = tiny(mods, num_classes=3)
    x = batch(mods)
    x["short"].requires_grad_(True)
    out = model(x)
    assert torch.isfinite(out.reconstruction["short"]).all() and torch.isfinite(out.logits).all()
    (out.logits.sum() + out.reconstruction["short"].sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(x["short"].grad).all()


def test_visible_subset_keeps_groupwise_positions_and_reconstructs_everything():
    model = tiny(num_classes=4)
    x = batch()
    visible = torch.tensor([[0, 3, 5, 9], [1, 2, 14, 15]])     # per example, within each group of 16
    out = model(x, visible=visible)
    assert out.reconstruction["image"].shape == x["image"].shape
    # Hidden inputs do not matter to the encoder.
    hidden = x["image"].clone().view(2, 4, 16, 3)
    keep = torch.zeros(2, 16, dtype=torch.bool).scatter_(1, visible, True)
    hidden[~keep[:, None, :].expand(2, 4, 16)] = 100.0
    again = model({"image": hidden.view(2, 64, 3)}, visible=visible, reconstruct=False)
    torch.testing.assert_close(again.logits, out.logits)
    with pytest.raises(ValueError, match="visible"):
        model(x, visible=torch.tensor([[0, 16], [0, 1]]))
    with pytest.raises(ValueError, match="a position twice"):                # at b709275: accepted
        model(x, visible=torch.tensor([[3, 3], [0, 1]]))
    with pytest.raises(ValueError, match="keeps no position"):
        model(x, visible=torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="must be a long tensor"):
        model(x, visible=torch.tensor([[0.7, 1.0], [0.0, 1.0]]))


def test_gradients_reach_every_parameter():
    model = tiny(num_classes=5, readout="query")
    x, y = batch(), torch.tensor([1, 3])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):                      # after one step the zero-initialised unembedding is not zero
        opt.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out.logits, y) + F.mse_loss(out.reconstruction["image"], x["image"])
        loss.backward()
        opt.step()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_tiny_model_overfits_a_tiny_batch():
    model = tiny(num_classes=4)
    x, y = batch(b=8), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        opt.zero_grad()
        out = model(x)
        rec = F.mse_loss(out.reconstruction["image"], x["image"])
        loss = F.cross_entropy(out.logits, y) + rec
        loss.backward()
        opt.step()
        first = first if first is not None else rec.item()
    model.eval()
    out = model(x)
    assert (out.logits.argmax(-1) == y).all()
    assert F.mse_loss(out.reconstruction["image"], x["image"]).item() < 0.5 * first


@pytest.mark.parametrize("kernel", ["matmuls", "sdpa"])
@pytest.mark.parametrize("mods", [IMAGE, {"a": ModalitySpec(30, 2), "b": ModalitySpec(7, 1)}])
def test_fast_path_equals_plain_path(mods, kernel, monkeypatch):
    """Both fast kernels (two matmuls around a float32 softmax, and torch's fused attention)
    equal the plain path, with padding and empty groups in the two-modality case."""
    monkeypatch.setattr(layers, "MATMUL_SCORES", 1 << 30 if kernel == "matmuls" else 0)
    model = tiny(mods, num_classes=3, readout="query").eval()
    x = batch(mods)
    fast = model(x)
    fast_grads = torch.autograd.grad(fast.logits.sum() + sum(r.sum() for r in fast.reconstruction.values()),
                                     list(model.parameters()), allow_unused=True)
    with plain_attention(model):
        plain = model(x)
        plain_grads = torch.autograd.grad(plain.logits.sum() + sum(r.sum() for r in plain.reconstruction.values()),
                                          list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(fast.logits, plain.logits, rtol=1e-5, atol=1e-5)
    for name in x:
        torch.testing.assert_close(fast.reconstruction[name], plain.reconstruction[name], rtol=1e-5, atol=1e-5)
    for a, b in zip(fast_grads, plain_grads):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("plain", [False, True])
def test_absorbed_key_value_projections_compute_the_same_attention(monkeypatch, plain):
    """Cross-attention straight over the inputs (projections on the query side) equals
    projecting every input: values, gradients and recorded weights, with padding, empty
    groups and several cross-attention heads."""
    mods = {"a": ModalitySpec(30, 2), "short": ModalitySpec(2, 3)}     # padded and empty groups
    model = tiny(mods, num_classes=3, readout="query").eval()
    heads = BlockConfig(groups=4, latents=4, channels=16, self_attends=1, heads=2, cross_heads=2)
    model2 = build(HiPConfig(blocks=(heads,) + tiny_config().blocks[1:], embed_channels=8,
                             num_classes=3, readout="query"), mods).eval()
    x = batch(mods)

    def run(m, gain):
        monkeypatch.setattr(Attention, "ABSORB_GAIN", gain)
        with plain_attention(m, record=plain) as weights:
            out = m(x)
            loss = out.logits.sum() + sum(r.square().sum() for r in out.reconstruction.values())
            grads = torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)
        return out, grads, weights

    for m in (model, model2):
        (ref, ref_grads, ref_w), (new, new_grads, new_w) = run(m, math.inf), run(m, 0.0)
        torch.testing.assert_close(new.logits, ref.logits, rtol=1e-5, atol=1e-5)
        for name in x:
            torch.testing.assert_close(new.reconstruction[name], ref.reconstruction[name], rtol=1e-5, atol=1e-5)
        for a, b in zip(new_grads, ref_grads):
            if b is not None and a is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
            else:                      # only the key bias part may differ: zero in exact arithmetic
                assert (a is None or a.abs().max() < 1e-6) and (b is None or b.abs().max() < 1e-6)
        assert torch.isfinite(new.logits).all()
        for name in ref_w:
            torch.testing.assert_close(new_w[name], ref_w[name], rtol=1e-5, atol=1e-6)


def test_small_attention_on_a_cpu_takes_the_matmul_kernel_and_keeps_bf16_close():
    small, large = torch.zeros(8, 2, 16, 32), torch.zeros(1, 1, 512, 32)
    assert layers.uses_matmuls(small, small) and not layers.uses_matmuls(large, torch.zeros(1, 1, 50176, 32))
    model = tiny(IMAGE, num_classes=3).eval()
    x = batch(IMAGE)
    with plain_attention(model):
        exact = model(x).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x).logits
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), exact, rtol=0.05, atol=0.05)


def test_projections_are_absorbed_only_where_they_save_work():
    flat = Attention(128, 261, heads=1, qk_channels=261, v_channels=261, out_channels=128)
    assert flat.absorbs_projections(64, 50176)        # 64 latents over 261-channel pixels: ~5x fewer FLOPs
    assert not flat.absorbs_projections(512, 50176)   # Perceiver IO's 512 latents: < 2x
    assert not flat.absorbs_projections(64, 64)       # few keys: projecting them is cheap
    hip_first = Attention(128, 32, heads=1, qk_channels=32, v_channels=32, out_channels=128)
    assert not hip_first.absorbs_projections(128, 3136)  # HiP-16's first level: narrow inputs
    self_attention = Attention(64, 64, heads=4, qk_channels=64, v_channels=64, out_channels=64, fused_qkv=True)
    assert not self_attention.absorbs_projections(1, 1000)


def test_plain_path_records_attention_weights():
    model = tiny().eval()
    with plain_attention(model, record=True) as weights:
        model(batch(), reconstruct=False)
    first = weights["blocks.0.cross_attend.attention"]          # [B*G, heads, K, N]
    assert first.shape == (2 * 4, 1, 4, 16)
    torch.testing.assert_close(first.sum(-1), torch.ones(8, 1, 4))
    assert "blocks.4.cross_attend.attention" not in weights      # decoder did not run
    assert all(not m.record for m in model.modules() if hasattr(m, "record"))


def test_seeded_construction_is_deterministic():
    a, b, c = tiny(seed=3), tiny(seed=3), tiny(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_unembedding_starts_at_zero():
    out = tiny()(batch())
    assert torch.count_nonzero(out.reconstruction["image"]) == 0


def test_fourier_positions_equal_projected_features_in_any_order():
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    mods = {"image": ModalitySpec(64, 3, (8, 8), order=order)}
    model = tiny(mods, position="fourier", fourier_bands=6)
    pos = model.positions
    full = pos.features("image")                                # [M, 2 * (2 * 6 + 1)]
    assert full.shape == (64, 26)
    torch.testing.assert_close(pos("image"), full @ pos.projections["image"].weight.T)
    plain_order = tiny({"image": ModalitySpec(64, 3, (8, 8))}, position="fourier", fourier_bands=6)
    torch.testing.assert_close(pos.features("image"), plain_order.positions.features("image")[order])


def test_learned_positions_are_low_dimensional_and_projected_when_narrower():
    model = tiny(position_channels=4)
    assert model.positions.tables["image"].shape == (64, 4)
    assert model.positions("image").shape == (64, 8)


def test_processor_latents_can_be_subsampled_at_train_time():
    cfg = tiny_config()
    blocks = list(cfg.blocks)
    blocks[2] = BlockConfig(groups=1, latents=8, channels=32, self_attends=1, heads=4, latents_train=4)
    torch.manual_seed(0)
    model = build(cfg.replace(blocks=tuple(blocks)), IMAGE)
    x = batch()
    assert model.train()(x).latents[2].shape[2] == 4
    assert model.eval()(x).latents[2].shape[2] == 8
    assert model.train()(x).reconstruction["image"].shape == x["image"].shape


def test_dropout_and_drop_path_act_only_in_training():
    model = tiny(dropout=0.3, drop_path=0.3, num_classes=2)
    x = batch()
    model.eval()
    torch.testing.assert_close(model(x).logits, model(x).logits)
    model.train()
    assert not torch.equal(model(x).logits, model(x).logits)


def test_transpose_reshape_regroup_runs():
    out = tiny(regroup="transpose_reshape")(batch())
    assert out.reconstruction["image"].shape == (2, 64, 3)


@pytest.mark.parametrize("name", ["small3", "small5", "perceiver_small"])
def test_small_variants_fit_fashion_mnist_scale(name):
    torch.manual_seed(0)
    model = build(name, {"image": ModalitySpec(784, 1, (28, 28))}, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    out = model({"image": torch.randn(2, 784, 1)})
    assert out.logits.shape == (2, 10) and out.reconstruction["image"].shape == (2, 784, 1)


def test_flat_perceiver_io_is_one_block_with_one_group():
    with torch.device("meta"):
        model = build("perceiver_io_imagenet", {"image": ModalitySpec(224 * 224, 3, (224, 224))},
                      num_classes=1000)
    assert len(model.blocks) == 1 and model.blocks[0].cfg.groups == 1
    assert model.blocks[0].cfg.repeats == 8
    n = sum(p.numel() for p in model.parameters())
    assert 35e6 < n < 60e6


# ---- bad input ----

@pytest.mark.parametrize("inputs, error, match", [
    ({"image": torch.randn(2, 64)}, ValueError, "rank 3"),
    ({"image": torch.randn(2, 64, 4)}, ValueError, "C = 3"),
    ({"image": torch.randn(2, 63, 3)}, ValueError, "M = 64"),
    ({"sound": torch.randn(2, 64, 3)}, KeyError, "unknown modality 'sound'"),
    ({}, ValueError, "non-empty"),
    ({"image": torch.randn(0, 64, 3)}, ValueError, "empty batch"),
    ({"image": torch.randint(0, 255, (2, 64, 3), dtype=torch.uint8)}, TypeError, "float"),
    ({"image": [[0.0]]}, TypeError, "tensor"),
])
def test_bad_inputs_name_the_problem(inputs, error, match):
    with pytest.raises(error, match=match):
        tiny()(inputs)


def test_mismatched_batch_sizes_are_refused():
    mods = {"a": ModalitySpec(8, 1), "b": ModalitySpec(8, 1)}
    with pytest.raises(ValueError, match="batch size"):
        tiny(mods)({"a": torch.randn(2, 8, 1), "b": torch.randn(3, 8, 1)})


def test_bad_configs_name_the_problem():
    with pytest.raises(ValueError, match="unknown variant 'hip17'"):
        variant("hip17")
    block = BlockConfig(groups=1, latents=4, channels=8, self_attends=1, heads=2)
    with pytest.raises(ValueError, match="odd number of blocks"):
        HiPConfig(blocks=(block, block))
    with pytest.raises(ValueError, match="processor"):
        HiPConfig(blocks=(block, BlockConfig(groups=2, latents=4, channels=8, self_attends=1, heads=2), block))
    with pytest.raises(ValueError, match="must divide channels"):
        BlockConfig(groups=1, latents=4, channels=10, self_attends=1, heads=3)
    with pytest.raises(ValueError, match="position must be one of"):
        variant("mini", position="sinusoid")
    with pytest.raises(ValueError, match="grid"):
        ModalitySpec(10, 1, (3, 3))
    with pytest.raises(ValueError, match="permutation"):
        ModalitySpec(3, 1, order=torch.tensor([0, 0, 1]))


SPEC = ModalitySpec(64, 3, (8, 8))


@pytest.mark.parametrize("make, field, value", [
    (lambda: variant("small3", num_classes=2.5), "num_classes", 2.5),
    (lambda: variant("small3", num_classes=True), "num_classes", True),       # not an int here
    (lambda: variant("small3", num_classes="10"), "num_classes", "10"),
    (lambda: variant("small3", embed_channels=2.5), "embed_channels", 2.5),
    (lambda: variant("small3", position="fourier", fourier_bands=True), "fourier_bands", True),
    (lambda: variant("small3", dropout="0.1"), "dropout", "0.1"),
    (lambda: variant("small3", checkpoint="no"), "checkpoint", "no"),
    (lambda: BlockConfig(groups=1, latents=4.0, channels=8, self_attends=1, heads=2), "BlockConfig.latents", 4.0),
    (lambda: BlockConfig(groups=1, latents=4, channels=8, self_attends=True, heads=2), "BlockConfig.self_attends",
     True),
    (lambda: ModalitySpec(True, 3), "num_inputs", True),
    (lambda: ModalitySpec(64, 3, (8.0, 8)), "grid[0]", 8.0),
    (lambda: ModalitySpec(64, 3, 64), "grid", 64),
])
def test_a_config_value_of_the_wrong_type_is_refused_naming_field_and_value(make, field, value):
    with pytest.raises(ValueError, match=rf"^{re.escape(field)} must be .*, got {re.escape(repr(value))}$"):
        make()                                              # at 66d0af7: torch's TypeErrors, or accepted


@pytest.mark.parametrize("modalities, what", [
    ([SPEC], "a list"),
    (SPEC, "a ModalitySpec"),
    ((("image", SPEC),), "a tuple"),
])
def test_modalities_that_are_not_a_mapping_are_refused_by_name(modalities, what):
    with pytest.raises(ValueError, match=rf"^modalities must be a mapping \{{name: ModalitySpec\}}, got {what}$"):
        build(tiny_config(), modalities)                    # at 66d0af7: AttributeError: no .items


@pytest.mark.parametrize("value", [2.5, True, "256"])
def test_a_point_count_that_is_not_a_whole_number_is_refused_by_name(value):
    from hipcore.data import load_dataset

    with pytest.raises(ValueError, match=rf"^num_points must be a positive int, got {re.escape(repr(value))}$"):
        load_dataset("shapes3d", "train", num_points=value, train_per_class=1)   # at 66d0af7: numpy errors, or 1


def test_config_round_trips_through_a_dict():
    cfg = variant("hip16", num_classes=10)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("num_classes", [2.5, True, -1, "10"])
def test_a_class_count_that_is_not_a_whole_number_is_refused_by_name(num_classes):
    from hipcore.config import variant

    with pytest.raises(ValueError, match=f"num_classes must be an int >= 0, got {re.escape(repr(num_classes))}"):
        variant("small3", num_classes=num_classes)


def test_modalities_given_as_a_list_are_refused_by_name():
    from hipcore import HiP, ModalitySpec
    from hipcore.config import variant

    with pytest.raises(ValueError, match=r"modalities must be a mapping \{name: ModalitySpec\}, got a list"):
        HiP(variant("small3", num_classes=10), [ModalitySpec(784, 1, (28, 28))])
