"""The model changes made for speed and memory compute exactly what they replace."""

import torch
import torch.nn.functional as F

from hipcore import BlockConfig, HiPConfig, ModalitySpec, build
from hipcore.model import GroupLayout

IMAGE = {"image": ModalitySpec(64, 3, (8, 8))}


def tiny(**overrides):
    blocks = (BlockConfig(groups=4, latents=4, channels=16, self_attends=2, heads=2),
              BlockConfig(groups=1, latents=8, channels=32, self_attends=1, heads=4),
              BlockConfig(groups=4, latents=4, channels=16, self_attends=1, heads=2))
    torch.manual_seed(0)
    return build(HiPConfig(blocks=blocks, embed_channels=8, num_classes=3, **overrides), IMAGE)


def loss_and_grads(model, seed=0):
    torch.manual_seed(seed)
    x = {"image": torch.randn(2, 64, 3)}
    out = model(x)
    loss = F.cross_entropy(out.logits, torch.tensor([0, 2])) + out.reconstruction["image"].square().mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_checkpointing_changes_no_value_or_gradient():
    for overrides in ({}, {"dropout": 0.2, "drop_path": 0.2}):      # random layers replay their masks
        loss, grads = loss_and_grads(tiny(**overrides))
        loss_ckpt, grads_ckpt = loss_and_grads(tiny(checkpoint=True, **overrides))
        torch.testing.assert_close(loss_ckpt, loss)
        assert grads_ckpt.keys() == grads.keys()
        for name in grads:
            torch.testing.assert_close(grads_ckpt[name], grads[name], msg=name)


def test_embedding_is_linear_map_plus_positions():
    model = tiny()
    x = torch.randn(2, 64, 3)
    positions = model.positions("image")                        # [M, E]
    expected = model.embedder.embed["image"](x) + positions
    torch.testing.assert_close(model.embedder("image", x, positions), expected)


def test_grouping_divisible_inputs_copies_nothing():
    x = torch.randn(2, 64, 5)
    grouped = GroupLayout.build({"image": 64}, 4).group({"image": x})
    assert grouped.shape == (2, 4, 16, 5) and grouped.data_ptr() == x.data_ptr()
