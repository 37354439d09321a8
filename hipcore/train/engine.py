"""The training loop: one for supervised classification, segmentation (labels per pixel,
hipcore.train.dense) and MAE pretraining, for any dataset and modality dict, called by
notebooks (`train(cfg)`) and the command line alike.

    prepare    data, model, optimiser, loader, resume -> Run      (hipcore.train.prepare)
    train_step one batch: loss (cross-entropy, or MSE on hidden positions) -> backward -> clip -> update
    end_epoch  log tidy rows, keep the best and last checkpoints; with cfg.val_fraction,
               evaluate a validation set carved from the training subset, which alone picks
               the best checkpoint (and, with cfg.plateau, when to stop)
    test_once  the test set, evaluated once at the end on the selected checkpoint
    result     the run's RunResult

    data       BatchLoader over a Dataset -> (inputs {name: [B, M, C]}, labels [B], or [B, M]: segment)
    model      HiP from the variant; num_classes from the dataset (none for MAE; the segmentation
               head's classes for segment)

A run lives in its run_dir: config.json, versions.json, run.json (the data's fingerprints and
the pretraining checkpoint it started from), metrics.csv (deterministic metrics), timing.csv
(seconds and examples/s), last.pt and best.pt. Calling train() again with the same config
resumes from last.pt, and the run ends exactly as if it had never stopped. One process at a
time holds a run directory (rundir.claim); a resumption is refused, naming both sides, when
the configuration, the data or the pretraining checkpoint differ from the run's.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..model import HiP
from . import checkpoint, distributed, plateau, rundir
from .config import TrainConfig
from .mae import fixed_noise, mae_loss
from .metrics import show_metric
from .prepare import ConfigMismatchError, Run, freeze_decoder, load_data, model_config, prepare, save

__all__ = ["ConfigMismatchError", "NonFiniteLossError", "RunResult", "compute_loss", "evaluate",
           "freeze_decoder", "load_data", "model_config", "train"]


class NonFiniteLossError(RuntimeError):
    """The loss or gradient became NaN or infinite; the run stopped before applying it."""


@dataclass
class RunResult:
    metrics: dict[str, float]         # the selected epoch's: train_loss, test_loss, test_accuracy (segment:
                                      # test_pixel_accuracy, test_miou), val_...
    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best: float | None                # best validation accuracy (supervised), mIoU (segment) or lowest validation loss
                                      # (MAE); without validation, the final test accuracy (or loss)
    best_step: int
    steps: int
    wall_time: float                  # seconds, all sessions of the run together
    throughput: float                 # training examples per second (steps only, no evaluation)
    epochs_run: int = 0               # epochs evaluated
    converged: bool | None = None     # validation runs: whether the curve reached its plateau by the
                                      # plateau rule (which stops the run only with cfg.plateau)
    selected_epoch: int | None = None  # validation runs: the best-validation epoch whose test
                                       # metrics are `metrics`
    precision: str = "fp32"           # what the run computed in, as its config.json records it


# ---- the loop ----

def train(cfg: TrainConfig, *, train_data=None, test_data=None, wait_s: float = 0.0) -> RunResult:
    """Train (or resume) the run `cfg` describes and return its final metrics.

    train_data / test_data: Dataset objects to use instead of loading cfg.dataset (notebooks
    and tests); cfg.limit_train / limit_test still apply. Under torchrun, every process calls
    this with the same cfg. wait_s: how long to wait for a run directory another process holds
    (`rundir.claim`); 0, the command line's, refuses it at once."""
    rundir.check_path(cfg.resolved_run_dir)
    ctx = distributed.setup(cfg.device)
    try:
        with rundir.claim(cfg.resolved_run_dir, enabled=ctx.main, wait_s=wait_s) as run_dir:
            return run_loop(prepare(cfg, ctx, train_data, test_data, run_dir))
    finally:
        distributed.cleanup(ctx)


def run_loop(run: Run) -> RunResult:
    """Steps until total_steps (or the validation plateau), an epoch's end after each epoch's
    last step, last.pt every cfg.checkpoint_every steps besides, then the test set once.
    Resumes mid-epoch, or at the test evaluation when only that was left."""
    state, cfg = run.state, run.cfg
    run.hip.train()
    tick = time.perf_counter()
    try:
        while state.step < run.total_steps and not state.converged:
            for inputs, labels in run.loader:
                state.load_seconds += time.perf_counter() - tick            # waiting for the batch
                epoch, step = run.loader.epoch + 1, state.step + 1          # 1-based epochs
                sums, lr = train_step(run, inputs, labels, epoch, step)
                count_step(run, epoch, step, sums, lr, len(labels), tick)
                if run.loader.position == run.steps_per_epoch or step == run.total_steps:
                    end_epoch(run, epoch, step)
                    if state.converged:
                        run.say(f"validation plateau at epoch {epoch} (the rule of hipcore.train.plateau)")
                        break
                elif cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    save(run, run.last_path)
                tick = time.perf_counter()
                if step == run.total_steps:
                    break
        test_once(run)
    finally:
        run.bar.close()
        run.log.close()
        run.timing.close()
    return result(run)


# ---- the loss and an evaluation ----

def compute_loss(net: nn.Module, hip: HiP, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                 cfg: TrainConfig,
                 noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (mean loss, correct predictions, count the mean is over). `net` may wrap `hip` (DDP).

    Supervised: cross-entropy with label smoothing, count = examples. MAE: MSE on hidden
    positions, count = hidden positions; noise [B, N] picks them (fresh when None). Segment:
    cross-entropy per pixel, count = pixels (hipcore.train.dense)."""
    if cfg.task == "segment":
        from .dense import segment_loss  # late, as each segment-only piece: other runs never load it

        return segment_loss(net, inputs, labels, cfg.label_smoothing)
    if cfg.task == "supervised":
        logits = net(inputs, reconstruct=False).logits.float()                 # [B, classes]
        loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
        return loss, (logits.argmax(-1) == labels).sum(), torch.tensor(len(labels), device=labels.device)
    layout = hip.layout(tuple(n for n in hip.modalities if n in inputs))
    if noise is None:
        noise = torch.rand(len(labels), layout.group_size, device=labels.device)
    loss, count, _, _ = mae_loss(net, layout, inputs, noise, cfg.mask_ratio, cfg.norm_pix)
    return loss, torch.zeros((), device=labels.device), count


@torch.no_grad()
def evaluate(hip: HiP, dataset, cfg: TrainConfig, ctx: distributed.Context | None = None,
             autocast: torch.autocast | None = None) -> dict[str, float]:
    """Test loss (plain cross-entropy, or masked MSE with fixed masks) and accuracy; segment:
    pixel loss, pixel accuracy and mIoU from one confusion matrix (hipcore.train.dense).

    Each rank takes examples rank, rank + world, ...; the sums are all-reduced. Without a
    context: one process, on the model's device."""
    ctx = ctx or distributed.Context(0, 1, 0, next(hip.parameters()).device, False)
    was_training = hip.training
    hip.eval()
    if cfg.task == "segment":                                    # a confusion matrix, not sums
        from . import dense

        out = dense.evaluate(hip, dataset, cfg, ctx, autocast)
        hip.train(was_training)
        return out
    sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)             # loss * n, correct, n
    eval_cfg = cfg.replace(label_smoothing=0.0)
    for chunk in torch.arange(ctx.rank, len(dataset), ctx.world_size).split(cfg.eval_batch_size):
        inputs, labels = dataset.get_batch(chunk)
        inputs, labels = {n: x.to(ctx.device) for n, x in inputs.items()}, labels.to(ctx.device)
        noise = None
        if cfg.task == "pretrain":
            size = hip.layout(tuple(n for n in hip.modalities if n in inputs)).group_size
            noise = fixed_noise(chunk, size, cfg.seed).to(ctx.device)
        with autocast or torch.autocast(ctx.device.type, enabled=False):
            loss, correct, count = compute_loss(hip, hip, inputs, labels, eval_cfg, noise)
        sums += torch.stack([loss.double() * count, correct.double(), count.double()])
    distributed.all_reduce_sum(sums, ctx)
    hip.train(was_training)
    loss_sum, correct, count = sums.tolist()
    out = {"loss": loss_sum / max(count, 1)}
    if cfg.task == "supervised":
        out["accuracy"] = correct / max(count, 1)
    return out


# ---- one training step, the end of an epoch, the run's result ----

def train_step(run: Run, inputs: dict[str, torch.Tensor], labels: torch.Tensor, epoch: int,
               step: int) -> tuple[list[float], float]:
    """Forward, backward, clip and update on one batch -> ([loss * n, correct, n] over all
    ranks, the learning rate the update used). A non-finite loss or gradient stops the run
    before it is applied."""
    ctx, cfg = run.ctx, run.cfg
    inputs = {n: x.to(ctx.device, non_blocking=True) for n, x in inputs.items()}   # {name: [B, M, C]}
    labels = labels.to(ctx.device, non_blocking=True)                               # [B]
    with run.autocast():
        loss, correct, count = compute_loss(run.net, run.hip, inputs, labels, cfg)
    sums = torch.stack([loss.detach().double() * count, correct.double(), count.double()])
    sums = distributed.all_reduce_sum(sums, ctx).tolist()
    loss_value = sums[0] / sums[2]                            # over all ranks
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(_stopped("loss", loss_value, step, epoch, run.last_path))
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)                        # fp16: true gradients to clip
    grad_norm = nn.utils.clip_grad_norm_(run.trainable, cfg.clip_grad or math.inf).item()
    if not math.isfinite(grad_norm) and not run.scaler.is_enabled():
        raise NonFiniteLossError(_stopped("gradient norm", grad_norm, step, epoch, run.last_path))
    lr = run.scheduler.get_last_lr()[0]
    run.scaler.step(run.optimizer)                            # fp16: skipped on an overflow
    run.scaler.update()
    run.scheduler.step()
    return sums, lr


def count_step(run: Run, epoch: int, step: int, sums: list[float], lr: float, batch: int, tick: float) -> None:
    """The step's bookkeeping: counters, running sums, the progress bar, a train row every
    cfg.log_every steps. tick: when the step began fetching its batch."""
    state = run.state
    state.step = step
    state.train_seconds += time.perf_counter() - tick
    state.train_examples += batch * run.ctx.world_size
    loss_value = sums[0] / sums[2]
    state.window = [state.window[0] + loss_value, state.window[1] + 1]
    state.epoch_sums = [a + b for a, b in zip(state.epoch_sums, sums)]
    run.bar.update(1)
    run.bar.set_postfix({"loss": f"{loss_value:.4f}", "ex/s": f"{run.throughput():.0f}"}, refresh=False)
    if step % run.cfg.log_every == 0:
        run.log.log(epoch, step, "train", loss=state.window[0] / state.window[1], lr=lr)
        state.window = [0.0, 0]


def epoch_metrics(run: Run, epoch: int, step: int) -> dict[str, dict[str, float]]:
    """The epoch's training sums and, with a validation split, its evaluation, logged ->
    {'train': ..., 'val': ... (empty without validation)}. The test set waits for test_once."""
    loss_sum, correct_sum, count_sum = run.state.epoch_sums
    train_metrics = {"loss": loss_sum / count_sum}
    if run.cfg.task != "pretrain":
        train_metrics["accuracy" if run.supervised else "pixel_accuracy"] = correct_sum / count_sum
    run.log.log(epoch, step, "train_epoch", **train_metrics)
    val_metrics = {}
    if run.data["validation"] is not None:
        val_metrics = evaluate(run.hip, run.data["validation"], run.cfg, run.ctx, run.autocast())
        run.log.log(epoch, step, "val", **val_metrics)
    return {"train": train_metrics, "val": val_metrics}


def end_epoch(run: Run, epoch: int, step: int) -> None:
    """Log the epoch, evaluate validation, judge the plateau, keep the best and last
    checkpoints (best first: a kill between the two writes then leaves a last.pt whose best.pt
    exists). Validation alone picks best.pt; without it, best.pt is the latest epoch's."""
    state, eval_start = run.state, time.perf_counter()
    metrics = epoch_metrics(run, epoch, step)
    run.timing.log(epoch, step, "time", train_seconds=state.train_seconds, load_seconds=state.load_seconds,
                   elapsed_seconds=run.elapsed(), eval_seconds=time.perf_counter() - eval_start,
                   examples_per_s=run.throughput())
    state.metrics = {"epoch": epoch, "step": step,
                     **{f"{split}_{k}": v for split, values in metrics.items() for k, v in values.items()}}
    state.epoch_sums = [0.0, 0.0, 0.0]
    improved = True
    key, rising = selection(run.cfg.task)
    if metrics["val"]:
        score = metrics["val"][key] if rising else -metrics["val"][key]
        improved = state.best is None or score > state.best
        if improved:
            state.best = score
        state.val_history.append(metrics["val"][key])
    if improved:
        state.best_step, state.selected = step, dict(state.metrics)
    if run.cfg.plateau:
        state.converged = bool(judged(state.val_history, run.cfg, rising, len(run.data["validation"])))
        run.log.log(epoch, step, "plateau", converged=float(state.converged))
    run.say(f"epoch {epoch} step {step}: " + ", ".join(f"{k} {show_metric(k, v)}" for k, v in state.metrics.items()
                                                       if k not in ("epoch", "step")) + f" ({run.elapsed():.0f} s)")
    save(run, *((run.best_path, run.last_path) if improved else (run.last_path,)))


def test_once(run: Run) -> None:
    """Evaluate the test set once, at the end, on the selected checkpoint (best.pt's weights
    where validation chose an earlier epoch than the last, else the final ones), log it at the
    selected epoch and step, and checkpoint last.pt to record it. A run resumed after its last
    step but before this finishes it here."""
    state = run.state
    if state.test or not state.selected:
        return
    start, hip = time.perf_counter(), run.hip
    if state.best_step != state.step:                           # validation chose an earlier epoch
        hip = copy.deepcopy(run.hip)
        hip.load_state_dict(checkpoint.load(run.best_path)["model"])
    state.test = evaluate(hip, run.data["test"], run.cfg, run.ctx, run.autocast())
    if run.data["validation"] is None:                           # no selection: the final test score
        key, rising = selection(run.cfg.task)
        state.best = state.test[key] if rising else -state.test[key]
    epoch, step = int(state.selected["epoch"]), int(state.selected["step"])
    run.log.log(epoch, step, "test", **state.test)
    run.timing.log(epoch, step, "test", eval_seconds=time.perf_counter() - start)
    run.say(f"test at epoch {epoch} step {step}: "
            + ", ".join(f"test_{k} {show_metric(f'test_{k}', v)}" for k, v in state.test.items()))
    save(run, run.last_path)


def result(run: Run) -> RunResult:
    """The run's result: the metrics of the selected epoch (best validation, or the last
    without validation) with the test set's evaluation there, its checkpoints named as the
    caller spelled run_dir."""
    state, cfg = run.state, run.cfg
    rising = selection(cfg.task)[1]
    best = state.best if rising or state.best is None else -state.best
    shown = Path(cfg.resolved_run_dir)
    validated = run.data["validation"] is not None and bool(state.selected)
    chosen = {k: v for k, v in state.selected.items() if not k.startswith("val_")}
    metrics = {**chosen, **{f"test_{k}": v for k, v in state.test.items()},
               **{k: v for k, v in state.selected.items() if k.startswith("val_")}}
    return RunResult(metrics=metrics, run_dir=shown, last_checkpoint=shown / "last.pt",
                     best_checkpoint=shown / "best.pt" if run.best_path.is_file() else None, best=best,
                     best_step=state.best_step, steps=state.step, wall_time=run.elapsed(),
                     throughput=run.throughput(), epochs_run=int(state.metrics.get("epoch", 0)),
                     converged=judged(state.val_history, cfg, rising, len(run.data["validation"] or ())),
                     selected_epoch=int(state.selected["epoch"]) if validated else None, precision=cfg.precision)


def selection(task: str) -> tuple[str, bool]:
    """(the validation metric that picks best.pt and that the plateau rule judges, whether it
    rises as the run learns): top-1, mIoU (segment), or the MAE loss."""
    if task == "segment":
        from .dense import SCORE

        return SCORE, True
    return ("accuracy", True) if task == "supervised" else ("loss", False)


def judged(history: list[float], cfg: TrainConfig, rising: bool, examples: int) -> bool | None:
    """Whether the validation curve (on `examples` validation examples) reached its plateau by
    the plateau rule, also when the rule did not stop the run (cfg.plateau off: a fixed number of
    epochs); None without validation. A rising score (top-1, mIoU: fractions) is judged in
    points with binomial noise over the examples, the MAE loss relatively."""
    if not history:
        return None
    return plateau.reached(history, "accuracy" if rising else "loss", examples, plateau.Rule.of(cfg))


def _stopped(what: str, value: float, step: int, epoch: int, last: Path) -> str:
    kept = f"the last good checkpoint, {last}, is kept" if last.is_file() else "no checkpoint was written yet"
    return (f"non-finite {what} ({value}) at step {step} (epoch {epoch}); stopped before applying "
            f"it, and {kept}. Try a lower lr, a longer warm-up or gradient clipping.")
