"""Dense decoding in the training loop: per-pixel cross-entropy, and mean IoU from a confusion
matrix accumulated over the whole evaluated set (cfg.task 'segment').

    logits {name: [B, M, K]}, labels [B, M] (K classes, 0 the background)
      -> pixel_loss            cross-entropy over every pixel (label smoothing as cfg says)
      -> confusion             [K, K] counts, truth in rows, prediction in columns
      -> scores                pixel accuracy, and mIoU: the mean over classes of
                               TP / (TP + FP + FN), background included; a class absent from
                               both truth and prediction over the whole set is left out

A batch's mIoU is not averaged: the matrices of every batch (and rank) are summed first, so the
score does not depend on batching or sharding. The plateau rule (hipcore.train.plateau) judges
validation mIoU as it judges top-1, its noise binomial over the validation canvases (not
pixels: the pixels of one canvas move together), which is conservative for a mean of IoUs.

    predict_masks(hip, dataset, indices) -> (truth, predicted) [n, side, side]   for figures
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from . import distributed

SCORE = "miou"                       # what picks best.pt and what the plateau rule judges


def check_groups(modalities: dict, groups: int, dataset: str) -> None:
    """ValueError unless every modality's positions split into the first level's groups whole:
    a padded group would give the head positions it never sees labels for."""
    if len(modalities) != 1:
        raise ValueError(f"segment: {dataset} has {len(modalities)} modalities; labels per position "
                         "need exactly one")
    for name, spec in modalities.items():
        if spec.num_inputs % groups:
            side = f" (a {' x '.join(map(str, spec.grid))} canvas)" if len(spec.grid) == 2 else ""
            raise ValueError(f"segment: {dataset}'s {name!r} has {spec.num_inputs} positions{side}, which "
                             f"the model's {groups} first-level groups cannot split evenly: choose a side "
                             f"whose square is a multiple of {groups}, or a variant with other groups")


def check_labels(dataset, num_classes: int, what: str) -> None:
    """DataError naming the split and the first bad label unless labels [N, M] are class indices
    in [0, num_classes) per position."""
    labels = dataset.labels
    if labels.dim() != 2:
        raise DataError(f"segment: the {what} labels must be one per position [N, M], got shape "
                        f"{tuple(labels.shape)}: a segmentation task needs a dense dataset such as collages")
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        n, m = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"segment: {what} example {n} has label {int(labels[n, m])} at position {m}, "
                        f"outside the head's [0, {num_classes})")


def dense_logits(net: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The segmentation head's logits [B, M, K] of the one modality (the decoder runs only
    when the head reads it; the reconstruction head never)."""
    dense = net(inputs, reconstruct=False).dense
    return next(iter(dense.values())).float()


def pixel_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over every pixel: logits [B, M, K], labels [B, M] -> []."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), label_smoothing=label_smoothing)


def segment_loss(net: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                 label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (mean loss over pixels, correct pixels, pixels): the engine's compute_loss for 'segment'."""
    logits = dense_logits(net, inputs)                                          # [B, M, K]
    loss = pixel_loss(logits, labels, label_smoothing)
    correct = (logits.argmax(-1) == labels).sum()
    return loss, correct, torch.tensor(labels.numel(), device=labels.device)


def confusion(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """predicted, truth [...] class indices -> counts [K, K] int64 (row: truth, column: prediction)."""
    pairs = truth.reshape(-1).long() * num_classes + predicted.reshape(-1).long()
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(matrix: torch.Tensor) -> dict[str, float]:
    """A confusion matrix [K, K] -> {'pixel_accuracy', 'miou'} over the classes present in truth
    or prediction (NaN mIoU for an empty matrix)."""
    matrix = matrix.double()
    hits = matrix.diagonal()                                                    # [K] true positives
    union = matrix.sum(0) + matrix.sum(1) - hits                                # [K] TP + FP + FN
    present = union > 0
    total = matrix.sum()
    return {"pixel_accuracy": float(hits.sum() / total) if total > 0 else float("nan"),
            "miou": float((hits[present] / union[present]).mean()) if present.any() else float("nan")}


@torch.no_grad()
def evaluate(hip: nn.Module, dataset, cfg, ctx: distributed.Context,
             autocast: torch.autocast | None = None) -> dict[str, float]:
    """Plain pixel cross-entropy, pixel accuracy and mIoU over the whole `dataset`; each rank
    takes examples rank, rank + world, ... and the sums and matrices are all-reduced."""
    k = hip.config.dense_classes
    sums = torch.zeros(2, dtype=torch.float64, device=ctx.device)             # loss * pixels, pixels
    matrix = torch.zeros(k, k, dtype=torch.float64, device=ctx.device)
    for chunk in torch.arange(ctx.rank, len(dataset), ctx.world_size).split(cfg.eval_batch_size):
        inputs, labels = dataset.get_batch(chunk)
        inputs, labels = {n: x.to(ctx.device) for n, x in inputs.items()}, labels.to(ctx.device)
        with autocast or torch.autocast(ctx.device.type, enabled=False):
            logits = dense_logits(hip, inputs)                                  # [B, M, K]
        sums += torch.stack([pixel_loss(logits, labels).double() * labels.numel(),
                             torch.tensor(labels.numel(), dtype=torch.float64, device=ctx.device)])
        matrix += confusion(logits.argmax(-1), labels, k).double()
    distributed.all_reduce_sum(sums, ctx)
    distributed.all_reduce_sum(matrix, ctx)
    return {"loss": float(sums[0] / sums[1].clamp(min=1)), **scores(matrix)}


def freeze_unused(hip: nn.Module) -> None:
    """Segmentation never runs the reconstruction head (nor, reading the bottleneck, the decoder
    blocks): freeze them, so that DistributedDataParallel sees only parameters with gradients."""
    hip.reconstruction_head.requires_grad_(False)
    hip.embedder.unembed.requires_grad_(False)
    if hip.config.dense_from == "bottleneck":
        for block in hip.blocks[hip.config.processor_index + 1:]:
            block.requires_grad_(False)


@torch.no_grad()
def predict_masks(hip: nn.Module, dataset, indices) -> tuple[torch.Tensor, torch.Tensor]:
    """(truth, predicted) label maps [n, *grid] in raster order of examples `indices`, for
    figures that show predicted masks beside the ground truth."""
    from .mae import to_grid

    indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    inputs, labels = dataset.get_batch(indices)
    device = next(hip.parameters()).device
    was_training = hip.training
    hip.eval()
    predicted = dense_logits(hip, {n: x.to(device) for n, x in inputs.items()}).argmax(-1).cpu()   # [n, M]
    hip.train(was_training)
    spec = next(iter(hip.modalities.values()))
    return to_grid(labels, spec), to_grid(predicted, spec)
