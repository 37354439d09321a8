"""Parameter parity with the official model's unit test (exact integers).

The official test applies one Haiku model to two mock datasets, 'imagenet' (image [2, 1024, 3],
label [2, 32, 1]) and 'audioset' (audio [2, 128, 16], label [2, 16, 16]), with a raw
position-encoding width of 512 and counts the union of parameters. Haiku shares modules by
name: every block and the reconstruction head are shared across the datasets; embeddings,
position tables and unembeddings are per modality; and the position projections, created
once per modality inside a call, are named by their slot (first, second modality) and so are
shared slot by slot. We build one HiP per dataset and tie the same pieces.
"""

import pytest
import torch

from hipcore import ModalitySpec, build

IMAGENET = {"imagenet_image": ModalitySpec(1024, 3), "imagenet_label": ModalitySpec(32, 1)}
AUDIOSET = {"audioset_audio": ModalitySpec(128, 16), "audioset_label": ModalitySpec(16, 16)}

OFFICIAL_COUNTS = {"hip16": 99_224_996, "hip256": 95_585_188, "mini": 18_709_668}


def tied_pair(name, device="cpu"):
    # A raw width (512) different from E makes the official model project the positions.
    with torch.device(device):
        a = build(name, IMAGENET, project_positions=True)
        b = build(name, AUDIOSET, project_positions=True)
    b.blocks, b.reconstruction_head = a.blocks, a.reconstruction_head
    for slot_a, slot_b in zip(a.positions.projections, b.positions.projections):
        b.positions.projections[slot_b] = a.positions.projections[slot_a]
    return a, b


def count_unique(*models):
    unique = {id(p): p for m in models for p in m.parameters()}
    return sum(p.numel() for p in unique.values())


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_matches_official(name):
    a, b = tied_pair(name, device="meta")
    assert count_unique(a, b) == OFFICIAL_COUNTS[name]


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_reconstructions_have_input_shapes(name):
    # Shapes only: the meta device propagates shapes without computing.
    a, b = tied_pair(name, device="meta")
    for model, mods in ((a, IMAGENET), (b, AUDIOSET)):
        inputs = {n: torch.empty(2, s.num_inputs, s.channels, device="meta") for n, s in mods.items()}
        out = model(inputs)
        assert {n: tuple(x.shape) for n, x in out.reconstruction.items()} == \
               {n: tuple(x.shape) for n, x in inputs.items()}
        assert len(out.latents) == len(model.config.blocks)


def test_mini_runs_on_mock_data_without_nan():
    torch.manual_seed(4)
    a, b = tied_pair("mini")
    for model, mods in ((a, IMAGENET), (b, AUDIOSET)):
        inputs = {n: torch.rand(2, s.num_inputs, s.channels) for n, s in mods.items()}
        out = model(inputs)
        for name, x in out.reconstruction.items():
            assert x.shape == inputs[name].shape
            assert torch.isfinite(x).all()
