"""The models the efficiency benchmark trains, each a classifier of pixels [B, M, 3] -> [B, classes].

| name              | code                     | configuration                                              |
|-------------------|--------------------------|------------------------------------------------------------|
| hip16             | hipcore                  | the paper's HiP-16, learned positions (E = 32)             |
| hip256            | hipcore                  | the paper's HiP-256, learned positions (E = 16)            |
| hip16_fourier     | hipcore                  | HiP-16 with 2-D Fourier features (64 bands) projected to E |
| perceiver_io      | hipcore                  | Perceiver IO ImageNet (variant `perceiver_io_imagenet`)    |
| perceiver_small   | hipcore                  | a small flat Perceiver (variant `perceiver_small`)         |
| hip_small         | hipcore                  | a CPU-scale HiP (variant `small3`), for smoke runs         |
| perceiver_pytorch | perceiver-pytorch 0.11.0 | its PerceiverIO at `PERCEIVER_PYTORCH` below               |
| perceiver_matched | hipcore                  | our flat Perceiver at exactly that configuration           |
| seg_hip_decoder   | hipcore                  | small3 + segmentation head on the full decoder (07)        |
| seg_hip_bottleneck| hipcore                  | small3 + segmentation head on the bottleneck (07)          |
| seg_perceiver_io  | hipcore                  | perceiver_small + Perceiver IO's query decoder (07)        |
| seg_unet          | hipcore                  | notebook 07's small U-Net (experiments.baselines)          |

Every classifier takes a classification step: hipcore models run with `reconstruct=False`, so
the decoder and the reconstruction head (used only for MAE) take no part, and their parameters
get no gradient. The `seg_` models (`dense`) take a segmentation step instead: one-channel
canvases [B, M, 1] -> logits [B, M, DENSE_CLASSES], cross-entropy against a label per pixel,
as notebook 07 trains them on collages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import BlockConfig, HiPConfig, ModalitySpec
from ..model import build
from ..model.positions import fourier_features

# perceiver-pytorch's PerceiverIO and our flat Perceiver at one configuration: perceiver_small's
# latent array (64 x 128, 4 self-attention layers of 4 heads) reading pixels concatenated with
# 64-band 2-D Fourier features (3 + 2 * 129 = 261 channels) through one 261-wide cross-attention
# head, as Perceiver IO does. Its feed-forward is GEGLU x4 (D -> 8D, gate, 4D -> D: 12 D^2
# weights); our MLP with widening 6 (D -> 6D -> D) has the same weights and FLOPs.
PERCEIVER_PYTORCH = dict(latents=64, channels=128, layers=4, heads=4, bands=64)
MATCHED_WIDENING = 6


DENSE_CLASSES = 11       # collages' labels: background and the ten Fashion-MNIST classes
DENSE_CHANNELS = 1       # a collage is grey


class Segmenter(nn.Module):
    """A hipcore HiP with a segmentation head: pixels [B, M, C] -> logits [B, M, classes]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model({"image": pixels}, reconstruct=False).dense["image"]


class GridSegmenter(nn.Module):
    """A convolutional segmenter on raster pixels: [B, M, C] -> [B, C, H, W] -> logits [B, M, classes]."""

    def __init__(self, model: nn.Module, side: int):
        super().__init__()
        self.model, self.side = model, side

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b, m, c = pixels.shape
        grid = pixels.transpose(1, 2).reshape(b, c, self.side, self.side)         # [B, C, H, W]
        return self.model(grid).flatten(2).transpose(1, 2)                        # [B, M, classes]


class Classifier(nn.Module):
    """A hipcore HiP as a pixel classifier: {'image': [B, M, 3]} -> logits [B, classes]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model({"image": pixels}, reconstruct=False).logits


def grid_fourier_features(side: int, bands: int) -> torch.Tensor:
    """[side * side, 2 * (2 * bands + 1)]: the features of each raster pixel's row, then column."""
    axis = fourier_features(side, bands)                                   # [side, 2 * bands + 1]
    rows = axis[:, None, :].expand(side, side, -1)
    cols = axis[None, :, :].expand(side, side, -1)
    return torch.cat([rows, cols], dim=-1).reshape(side * side, -1)


class PerceiverPytorch(nn.Module):
    """perceiver-pytorch's PerceiverIO reading out one learned query.

    Its input is the pixels concatenated with their Fourier features [B, M, 3 + 258], built in
    every step as the official Perceiver IO does.
    """

    def __init__(self, side: int, classes: int, *, latents: int, channels: int, layers: int,
                 heads: int, bands: int):
        super().__init__()
        from perceiver_pytorch import PerceiverIO

        self.register_buffer("features", grid_fourier_features(side, bands), persistent=False)
        width = 3 + self.features.shape[1]
        self.query = nn.Parameter(torch.randn(1, channels) * 0.02)
        self.perceiver = PerceiverIO(
            dim=width, queries_dim=channels, logits_dim=classes, depth=layers,
            num_latents=latents, latent_dim=channels, cross_heads=1, latent_heads=heads,
            cross_dim_head=width, latent_dim_head=channels // heads)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        data = torch.cat([pixels, self.features.expand(len(pixels), -1, -1)], dim=-1)  # [B, M, 261]
        return self.perceiver(data, queries=self.query)[:, 0]                           # [B, classes]


def matched_config(classes: int, *, latents: int, channels: int, layers: int, heads: int,
                   bands: int) -> HiPConfig:
    """Our flat Perceiver at perceiver-pytorch's configuration (see PERCEIVER_PYTORCH)."""
    block = BlockConfig(groups=1, latents=latents, channels=channels, self_attends=layers,
                        heads=heads, cross_widening=MATCHED_WIDENING, self_widening=MATCHED_WIDENING)
    return HiPConfig(blocks=(block,), embed_channels=3 + 2 * (2 * bands + 1), position="fourier",
                     fourier_bands=bands, num_classes=classes, readout="query")


@dataclass(frozen=True)
class BenchModel:
    name: str
    description: str
    make: Callable[..., nn.Module]      # (side, classes, **options) -> pixels [B, M, 3] -> logits
    package: str = "hipcore"            # the code it runs: 'hipcore' or 'perceiver-pytorch'
    paper: str | None = None            # its rows 'speed.<paper>.<side>' in paper_reference.csv
    dense: bool = False                 # a label per pixel (pixels [B, M, 1] -> [B, M, DENSE_CLASSES])

    @property
    def channels(self) -> int:
        return DENSE_CHANNELS if self.dense else 3


def _hipcore(name: str, **overrides) -> Callable[..., nn.Module]:
    def make(side: int, classes: int, **options) -> nn.Module:
        spec = {"image": ModalitySpec(side * side, 3, (side, side))}
        return Classifier(build(name, spec, num_classes=classes, **overrides, **options))
    return make


def _segmenter(name: str, dense_from: str) -> Callable[..., nn.Module]:
    def make(side: int, classes: int, **options) -> nn.Module:
        spec = {"image": ModalitySpec(side * side, DENSE_CHANNELS, (side, side))}
        return Segmenter(build(name, spec, num_classes=0, dense_classes=classes, dense_from=dense_from, **options))
    return make


def _unet(side: int, classes: int, **options) -> nn.Module:
    from ..experiments.baselines import SmallUNet  # late: the benchmark's classifiers never need it

    if options:
        raise ValueError(f"seg_unet takes no hipcore options, got {sorted(options)}")
    return GridSegmenter(SmallUNet(DENSE_CHANNELS, classes), side)


def _matched(side: int, classes: int, **options) -> nn.Module:
    spec = {"image": ModalitySpec(side * side, 3, (side, side))}
    return Classifier(build(matched_config(classes, **PERCEIVER_PYTORCH), spec, **options))


def _perceiver_pytorch(side: int, classes: int, **options) -> nn.Module:
    if options:
        raise ValueError(f"perceiver_pytorch takes no hipcore options, got {sorted(options)}")
    return PerceiverPytorch(side, classes, **PERCEIVER_PYTORCH)


MODELS: dict[str, BenchModel] = {m.name: m for m in (
    BenchModel("hip16", "HiP-16, learned positions", _hipcore("hip16"), paper="hip16"),
    BenchModel("hip256", "HiP-256, learned positions", _hipcore("hip256"), paper="hip256"),
    BenchModel("hip16_fourier", "HiP-16, 2-D Fourier features", _hipcore("hip16", position="fourier"),
               paper="hip16_fourier"),
    BenchModel("perceiver_io", "Perceiver IO ImageNet, 2-D Fourier features",
               _hipcore("perceiver_io_imagenet"), paper="perceiver_io"),
    BenchModel("perceiver_small", "flat Perceiver, 64 latents x 128", _hipcore("perceiver_small")),
    BenchModel("hip_small", "CPU-scale HiP (small3)", _hipcore("small3")),
    BenchModel("perceiver_pytorch", "perceiver-pytorch PerceiverIO, 64 latents x 128, GEGLU",
               _perceiver_pytorch, package="perceiver-pytorch"),
    BenchModel("perceiver_matched", "hipcore flat Perceiver at perceiver_pytorch's configuration",
               _matched),
    BenchModel("seg_hip_decoder", "small3, segmentation head on the full decoder",
               _segmenter("small3", "decoder"), dense=True),
    BenchModel("seg_hip_bottleneck", "small3, segmentation head on the bottleneck",
               _segmenter("small3", "bottleneck"), dense=True),
    BenchModel("seg_perceiver_io", "perceiver_small, Perceiver IO's query decoder",
               _segmenter("perceiver_small", "decoder"), dense=True),
    BenchModel("seg_unet", "small U-Net (notebook 07's reference CNN)", _unet, dense=True),
)}

MODEL_NAMES = tuple(MODELS)


def available(name: str) -> str | None:
    """None when the model can be built here, else why not."""
    if MODELS[name].package == "perceiver-pytorch":
        try:
            import perceiver_pytorch  # noqa: F401
        except ImportError:
            return "perceiver-pytorch not installed (pip install 'hipcore[bench]')"
    return None


def make_model(name: str, side: int, classes: int = 1000, **options) -> nn.Module:
    """The benchmark model `name` for square images of `side` pixels (options: HiPConfig fields);
    a dense model has DENSE_CLASSES whatever `classes` says."""
    if name not in MODELS:
        raise ValueError(f"unknown benchmark model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return MODELS[name].make(side, DENSE_CLASSES if MODELS[name].dense else classes, **options)


def example_batch(name: str, side: int, batch: int, classes: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch for model `name`: pixels [B, M, channels] and labels, [B] for a classifier,
    [B, M] (a label per pixel) for a dense model; on the current default device."""
    model = MODELS[name]
    labels = (batch, side * side) if model.dense else (batch,)
    return (torch.rand(batch, side * side, model.channels),
            torch.randint(0, DENSE_CLASSES if model.dense else classes, labels))


def step_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits [B, K] against labels [B], or per pixel, [B, M, K] against [B, M]."""
    return nn.functional.cross_entropy(logits.flatten(0, -2).float(), labels.flatten())


def count_flops(name: str, side: int, batch: int, classes: int = 1000, **options) -> tuple[int, int]:
    """(FLOPs of one forward + backward, parameters), counted on the meta device in no time.

    FlopCounterMode counts matrix products (2 FLOPs per multiply-add), where nearly all the
    arithmetic of these models is; elementwise work and the optimiser are not counted. On the
    meta device attention runs as the plain products the counter sees; on the CPU it would
    run as a flash-attention kernel that the counter does not count.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = make_model(name, side, classes, **options)
        pixels, labels = example_batch(name, side, batch, classes)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        loss = step_loss(model(pixels), labels)
        loss.backward()
    return counter.get_total_flops(), params
