"""The training loop: one for supervised classification and MAE pretraining, for any dataset
and modality dict, called by notebooks (`train(cfg)`) and the command line alike.

    data   BatchLoader over a Dataset -> (inputs {name: [B, M, C]}, labels [B])
    model  HiP from the variant; num_classes from the dataset (none for MAE)
    step   loss (cross-entropy, or MSE on hidden positions) -> backward -> clip -> update -> lr
    epoch  evaluate on the test split, log tidy rows, keep the best and last checkpoints;
           with cfg.val_fraction, also on a validation set carved from the training subset,
           which alone picks the best checkpoint (and, with cfg.plateau, when to stop)

A run lives in its run_dir: config.json, versions.json, run.json (the data's fingerprints and
the pretraining checkpoint it started from), metrics.csv (deterministic metrics), timing.csv
(seconds and examples/s), last.pt and best.pt. Calling train() again with the same config
resumes from last.pt, and the run ends exactly as if it had never stopped. One process at a
time holds a run directory (rundir.claim); a resumption is refused, naming both sides, when
the configuration, the data or the pretraining checkpoint differ from the run's.
"""

from __future__ import annotations

import json
import math
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import device as precision
from ..config import BlockConfig, HiPConfig, modalities_to_dict, variant
from ..data.base import Subset
from ..model import HiP
from . import checkpoint, distributed, plateau, rundir
from .config import TrainConfig
from .mae import fixed_noise, mae_loss
from .metrics import MetricsLogger, progress_bar, show_metric, versions, write_json
from .optim import build_optimizer, build_scheduler
from .transfer import transfer
from .validation import split_validation


class NonFiniteLossError(RuntimeError):
    """The loss or gradient became NaN or infinite; the run stopped before applying it."""


class ConfigMismatchError(rundir.RunDirError):
    """The run directory holds a run with another configuration, other data or another source."""


@dataclass
class RunResult:
    metrics: dict[str, float]         # the final evaluation: test_loss, test_accuracy, train_loss, ...
    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best: float | None                # best test accuracy (supervised) or lowest test loss (MAE)
    best_step: int
    steps: int
    wall_time: float                  # seconds, all sessions of the run together
    throughput: float                 # training examples per second (steps only, no evaluation)
    epochs_run: int = 0               # epochs evaluated
    converged: bool | None = None     # validation runs: whether the curve reached its plateau by the
                                      # plateau rule (which stops the run only with cfg.plateau)
    selected_epoch: int | None = None  # validation runs: the best-validation epoch whose test
                                       # metrics are `metrics`


@dataclass
class RunState:
    """What a checkpoint holds besides modules: counters, running sums, the best so far."""

    step: int = 0
    best: float | None = None
    best_step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    window: list[float] = field(default_factory=lambda: [0.0, 0])       # loss sum, steps since a train row
    epoch_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss * n, correct, n
    elapsed: float = 0.0              # wall seconds of the run before this session
    train_seconds: float = 0.0
    train_examples: int = 0
    val_history: list[float] = field(default_factory=list)   # per epoch: val accuracy, or val loss (MAE)
    converged: bool = False           # the plateau rule held at the last epoch
    selected: dict[str, float] = field(default_factory=dict)  # the metrics of the best-validation epoch


# ---- data and model ----


def limit(dataset, n: int | None, seed: int = 0):
    """A random subset of n examples drawn with `seed`, or the dataset itself."""
    if n is None or n >= len(dataset):
        return dataset
    pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    return Subset(dataset, pick.sort().values)


def load_data(cfg: TrainConfig, train_data=None, test_data=None):
    """The train and test splits named by cfg (or the ones given), limited as asked: each seed
    trains on its own subset of the training set, the test subset is the same for every seed."""
    from ..data import load_dataset

    def load(split: str):
        try:
            return load_dataset(cfg.dataset, split, ordering=cfg.ordering, data_dir=cfg.data_dir,
                                seed=cfg.seed, **cfg.data_options)
        except TypeError as error:                      # an option the dataset does not take
            raise ValueError(f"dataset {cfg.dataset!r} with options {cfg.data_options}: {error}") from None

    train_data = load("train") if train_data is None else train_data
    test_data = load("test") if test_data is None else test_data
    return limit(train_data, cfg.limit_train, seed=cfg.seed), limit(test_data, cfg.limit_test)


def model_config(cfg: TrainConfig, num_classes: int) -> HiPConfig:
    """The variant (a name or a HiPConfig .json file) with cfg.model's overrides applied."""
    if cfg.variant.endswith(".json"):
        base = HiPConfig.from_dict(json.loads(Path(cfg.variant).read_text()))
    else:
        base = variant(cfg.variant)
    overrides = dict(cfg.model)
    if "blocks" in overrides:
        overrides["blocks"] = tuple(BlockConfig(**b) for b in overrides["blocks"])
    return base.replace(**overrides, num_classes=num_classes)


def freeze_decoder(model: HiP) -> None:
    """Classification never runs the decoder or the reconstruction head: freeze them, so that
    DistributedDataParallel sees only parameters that get gradients."""
    for block in model.blocks[model.config.processor_index + 1:]:
        block.requires_grad_(False)
    model.reconstruction_head.requires_grad_(False)
    model.embedder.unembed.requires_grad_(False)


# ---- one step, one evaluation ----

def compute_loss(net: nn.Module, hip: HiP, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                 cfg: TrainConfig,
                 noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (mean loss, correct predictions, count the mean is over). `net` may wrap `hip` (DDP).

    Supervised: cross-entropy with label smoothing, count = examples. MAE: MSE on hidden
    positions, count = hidden positions; noise [B, N] picks them (fresh when None)."""
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
    """Test loss (plain cross-entropy, or masked MSE with fixed masks) and accuracy.

    Each rank takes examples rank, rank + world, ...; the sums are all-reduced. Without a
    context: one process, on the model's device."""
    ctx = ctx or distributed.Context(0, 1, 0, next(hip.parameters()).device, False)
    was_training = hip.training
    hip.eval()
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


# ---- checkpoints ----

def checkpoint_state(cfg, hip, optimizer, scheduler, loader, state: RunState, rng: list,
                     record: dict[str, Any]) -> dict[str, Any]:
    return {"format": checkpoint.FORMAT, "step": state.step, "run_id": cfg.run_id, "config": cfg.to_dict(),
            "model_config": hip.config.to_dict(), "modalities": modalities_to_dict(hip.modalities),
            "model": hip.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "loader": loader.state_dict(), "rng": rng,
            "run": asdict(state), "data": record["data"], "source": record["source"]}


def run_record(train_set, test_set, source: dict[str, Any] | None) -> dict[str, Any]:
    """What run.json and every checkpoint record: the data's fingerprints (None for a dataset
    that has none) and the pretraining checkpoint the run started from."""
    return {"data": {"train": getattr(train_set, "fingerprint", None),
                     "test": getattr(test_set, "fingerprint", None)}, "source": source}


def refuse_a_lost_checkpoint(run_dir: Path) -> None:
    """A run directory whose run checkpointed, or (written before run.json existed) logged
    metrics, but has no last.pt lost its checkpoint: say so instead of starting over on it."""
    record_path, metrics = run_dir / "run.json", run_dir / "metrics.csv"
    try:
        record = json.loads(record_path.read_text()) if record_path.is_file() else None
    except ValueError:
        record = None
    checkpointed = record.get("checkpointed") if isinstance(record, dict) else (
        metrics.is_file() and len(metrics.read_text().splitlines()) > 1)
    if checkpointed:
        best = run_dir / "best.pt"
        saved = checkpoint.intact(best)
        copy = f"cp {shlex.quote(str(best))} {shlex.quote(str(run_dir / 'last.pt'))}"     # safe to paste
        fix = (f"Its best.pt (step {saved['step']}) is intact: continue from it with\n  {copy}\n"
               "then rerun the same command; or" if saved else "No intact best.pt is left:")
        raise rundir.RunDirError(f"{run_dir / 'last.pt'} is missing, but {run_dir} holds a run that "
                                 f"was checkpointed (metrics.csv, run.json); refusing to start it over "
                                 f"in place.\n{fix} move {run_dir} away to start over.")


def resume(path: Path, cfg: TrainConfig, hip, optimizer, scheduler, loader, ctx,
           record: dict[str, Any] | None = None) -> RunState | None:
    """Restore everything from last.pt when it exists; refuse a different configuration,
    other data (fingerprints) or another pretraining checkpoint."""
    if path.exists() and not path.is_file():
        raise rundir.RunDirError(f"{path} is a folder, not a checkpoint: move it away and rerun")
    if not path.is_file():
        if ctx.main:
            refuse_a_lost_checkpoint(path.parent)
        return None
    saved = checkpoint.load(path, training=True)
    differences = rundir.config_differences(cfg, saved["config"])
    record = record or {"data": {}, "source": None}
    for split, now in record["data"].items():
        before = (saved.get("data") or {}).get(split)
        if before is not None and now is not None and before != now:
            differences.append(f"{split} data fingerprint: {before} -> {now}")
    before, now = saved.get("source"), record["source"]
    if before is not None and now is not None and not rundir.same_source(before, now):
        differences.append(f"init_from: {rundir.describe_source(before)} -> {rundir.describe_source(now)}")
    if differences:
        hint = ""
        if any(d.startswith("precision:") for d in differences):
            hint = (f"\nThe run trained in {saved['config'].get('precision', 'fp32')}; here the precision "
                    f"resolves to {cfg.precision}: resume with that --precision on a machine that "
                    f"computes it, never in another one.")
        raise ConfigMismatchError(
            f"{path.parent} holds a run with a different configuration or data; refusing to resume it.\n  "
            + "\n  ".join(differences) + "\n(saved -> now). Use another run_dir, or move this one away." + hint)
    hip.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    loader.load_state_dict(saved["loader"])
    rng = saved["rng"]
    if len(rng) == ctx.world_size:
        checkpoint.set_rng_state(rng[ctx.rank])
    return RunState(**saved["run"])


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
            return _train(cfg, ctx, train_data, test_data, run_dir)
    finally:
        distributed.cleanup(ctx)


def _train(cfg: TrainConfig, ctx: distributed.Context, train_data, test_data, run_dir: Path) -> RunResult:
    from ..data import BatchLoader, derive_seed

    session_start = time.perf_counter()
    cfg = cfg.replace(precision=precision.resolve(cfg.precision, ctx.device))   # 'auto' -> what runs
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over {ctx.world_size} ranks")
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    supervised = cfg.task == "supervised"
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    train_set, test_set = load_data(cfg, train_data, test_data)
    train_set, val_set = split_validation(train_set, cfg)
    hip = HiP(model_config(cfg, train_set.num_classes if supervised else 0), train_set.modalities)
    source = None                                             # what was transferred: its identity
    if cfg.init_from and cfg.transfer != "none":
        pretrained = checkpoint.load(cfg.init_from, advice="--init-from needs an intact MAE checkpoint "
                                     "(last.pt or best.pt of a pretraining run).")
        task = (pretrained.get("config") or {}).get("task")
        if task != "pretrain":
            raise ValueError(f"--init-from {cfg.init_from} is a {task or 'unknown'} checkpoint, not an MAE "
                             "pretraining's: fine-tuning starts from a pretraining run's last.pt or best.pt")
        source = rundir.source_identity(pretrained, cfg.init_from)
        transfer(hip, pretrained, cfg.transfer, name=cfg.init_from)
    record = run_record(train_set, test_set, source)
    if val_set is not None:
        record["data"]["validation"] = val_set.split_digest
    if supervised:
        freeze_decoder(hip)
    hip.to(ctx.device)
    optimizer = build_optimizer(hip, cfg)
    loader = BatchLoader(train_set, cfg.batch_size // ctx.world_size, shuffle=True, seed=cfg.seed,
                         drop_last=True, train=cfg.augment, rank=ctx.rank, world_size=ctx.world_size)
    steps_per_epoch = len(loader)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch, total_steps)
    torch.manual_seed(derive_seed(cfg.seed, ctx.rank))        # dropout and masks differ per rank

    state = resume(last_path, cfg, hip, optimizer, scheduler, loader, ctx, record)
    resumed = state is not None
    state = state or RunState()
    log = MetricsLogger(run_dir / "metrics.csv", cfg.run_id, cfg.seed, enabled=ctx.main)
    timing = MetricsLogger(run_dir / "timing.csv", cfg.run_id, cfg.seed, enabled=ctx.main)
    if ctx.main:
        write_json(run_dir / "config.json", cfg.to_dict())
        record["checkpointed"] = resumed
        write_json(run_dir / "run.json", record)
        write_json(run_dir / "versions.json", versions(ctx.device, ctx.world_size))
        log.start(keep_until_step=state.step if resumed else None)
        timing.start(keep_until_step=state.step if resumed else None)
    distributed.barrier(ctx)

    net = hip
    if ctx.distributed:
        net = DistributedDataParallel(hip, device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
                                      broadcast_buffers=False)
    autocast = precision.autocast(cfg.precision, ctx.device)
    scaler = precision.grad_scaler(cfg.precision, ctx.device)
    trainable = [p for p in hip.parameters() if p.requires_grad]
    speak = ctx.main and not cfg.quiet
    bar = progress_bar(total_steps, state.step, f"{cfg.task} {Path(cfg.variant).stem}", quiet=not speak)
    say = (bar.write if not bar.disable else lambda s: print(s, file=sys.stderr)) if speak else (lambda s: None)
    say(f"{'resuming' if resumed else 'starting'} {cfg.task} run {run_dir} at step {state.step}/{total_steps}: "
        f"{cfg.precision}, "
        f"{cfg.variant} ({sum(p.numel() for p in hip.parameters()):,} parameters), {cfg.dataset} "
        f"{len(train_set)} train / " + (f"{len(val_set)} validation / " if val_set is not None else "")
        + f"{len(test_set)} test, {steps_per_epoch} steps per epoch, "
        f"batch {cfg.batch_size} on {ctx.world_size} x {ctx.device}")

    elapsed_before = state.elapsed

    def elapsed() -> float:                                   # wall seconds, all sessions
        return elapsed_before + time.perf_counter() - session_start

    def throughput() -> float:                                # training examples per second
        return state.train_examples / max(state.train_seconds, 1e-9)

    def save(*paths: Path) -> None:
        rng = distributed.gather_objects(checkpoint.rng_state(), ctx)    # every rank's generators
        if ctx.main:
            state.elapsed = elapsed()
            snapshot = checkpoint_state(cfg, hip, optimizer, scheduler, loader, state, rng, record)
            for path in paths:
                checkpoint.save_atomic(snapshot, path)
            if not record.get("checkpointed"):
                record["checkpointed"] = True
                write_json(run_dir / "run.json", record)

    def end_epoch(epoch: int, step: int) -> None:
        """Evaluate, log, keep the best and last checkpoints (best first: a kill between the
        two writes then leaves a last.pt whose best.pt exists)."""
        loss_sum, correct_sum, count_sum = state.epoch_sums
        train_metrics = {"loss": loss_sum / count_sum}
        if supervised:
            train_metrics["accuracy"] = correct_sum / count_sum
        eval_start = time.perf_counter()
        test_metrics = evaluate(hip, test_set, cfg, ctx, autocast)
        log.log(epoch, step, "train_epoch", **train_metrics)
        log.log(epoch, step, "test", **test_metrics)
        val_metrics = {}
        if val_set is not None:
            val_metrics = evaluate(hip, val_set, cfg, ctx, autocast)
            log.log(epoch, step, "val", **val_metrics)
        timing.log(epoch, step, "time", train_seconds=state.train_seconds, elapsed_seconds=elapsed(),
                   eval_seconds=time.perf_counter() - eval_start, examples_per_s=throughput())
        state.metrics = {"epoch": epoch, "step": step, **{f"train_{k}": v for k, v in train_metrics.items()},
                         **{f"test_{k}": v for k, v in test_metrics.items()},
                         **{f"val_{k}": v for k, v in val_metrics.items()}}
        state.epoch_sums = [0.0, 0.0, 0.0]
        chosen_by = val_metrics or test_metrics                   # validation only, when there is one
        score = chosen_by["accuracy"] if supervised else -chosen_by["loss"]
        improved = state.best is None or score > state.best
        if improved:
            state.best, state.best_step, state.selected = score, step, dict(state.metrics)
        if val_set is not None:
            state.val_history.append(val_metrics["accuracy"] if supervised else val_metrics["loss"])
        if cfg.plateau:
            state.converged = bool(judged(state.val_history, cfg, supervised))
            log.log(epoch, step, "plateau", converged=float(state.converged))
        say(f"epoch {epoch} step {step}: " + ", ".join(f"{k} {show_metric(k, v)}" for k, v in state.metrics.items()
                                                       if k not in ("epoch", "step")) + f" ({elapsed():.0f} s)")
        save(*((best_path, last_path) if improved else (last_path,)))

    hip.train()
    tick = time.perf_counter()
    try:
        while state.step < total_steps and not state.converged:
            for inputs, labels in loader:                         # resumes mid-epoch
                epoch, step = loader.epoch + 1, state.step + 1    # 1-based epochs
                inputs = {n: x.to(ctx.device, non_blocking=True) for n, x in inputs.items()}
                labels = labels.to(ctx.device, non_blocking=True)
                with autocast:
                    loss, correct, count = compute_loss(net, hip, inputs, labels, cfg)
                sums = torch.stack([loss.detach().double() * count, correct.double(), count.double()])
                loss_sum, correct_sum, count_sum = distributed.all_reduce_sum(sums, ctx).tolist()
                loss_value = loss_sum / count_sum                 # over all ranks
                if not math.isfinite(loss_value):
                    raise NonFiniteLossError(_stopped("loss", loss_value, step, epoch, last_path))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)                        # fp16: true gradients to clip
                grad_norm = nn.utils.clip_grad_norm_(trainable, cfg.clip_grad or math.inf).item()
                if not math.isfinite(grad_norm) and not scaler.is_enabled():
                    raise NonFiniteLossError(_stopped("gradient norm", grad_norm, step, epoch, last_path))
                lr = scheduler.get_last_lr()[0]
                scaler.step(optimizer)                            # fp16: skipped on an overflow
                scaler.update()
                scheduler.step()

                state.step = step
                state.train_seconds += time.perf_counter() - tick
                state.train_examples += len(labels) * ctx.world_size
                state.window = [state.window[0] + loss_value, state.window[1] + 1]
                state.epoch_sums = [a + b for a, b in zip(state.epoch_sums, (loss_sum, correct_sum, count_sum))]
                bar.update(1)
                bar.set_postfix({"loss": f"{loss_value:.4f}", "ex/s": f"{throughput():.0f}"}, refresh=False)
                if step % cfg.log_every == 0:
                    log.log(epoch, step, "train", loss=state.window[0] / state.window[1], lr=lr)
                    state.window = [0.0, 0]
                if loader.position == steps_per_epoch or step == total_steps:
                    end_epoch(epoch, step)
                    if state.converged:
                        say(f"validation plateau at epoch {epoch} (the rule of hipcore.train.plateau)")
                        break
                elif cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    save(last_path)
                tick = time.perf_counter()
                if step == total_steps:
                    break
    finally:
        bar.close()
        log.close()
        timing.close()

    best = state.best if supervised or state.best is None else -state.best
    shown = Path(cfg.resolved_run_dir)                        # as the caller spelled it
    selected = val_set is not None and bool(state.selected)      # the best-validation checkpoint
    return RunResult(metrics=dict(state.selected if selected else state.metrics), run_dir=shown,
                     last_checkpoint=shown / last_path.name,
                     best_checkpoint=shown / best_path.name if best_path.is_file() else None, best=best,
                     best_step=state.best_step, steps=state.step, wall_time=elapsed(), throughput=throughput(),
                     epochs_run=int(state.metrics.get("epoch", 0)),
                     converged=judged(state.val_history, cfg, supervised),
                     selected_epoch=int(state.selected["epoch"]) if selected else None)


def judged(history: list[float], cfg: TrainConfig, supervised: bool) -> bool | None:
    """Whether the validation curve reached its plateau by the plateau rule, also when the rule
    did not stop the run (cfg.plateau off: a fixed number of epochs); None without validation."""
    if not history:
        return None
    return plateau.reached(history, "accuracy" if supervised else "loss", min_epochs=cfg.min_epochs,
                           points=cfg.plateau_points, relative=cfg.plateau_relative, patience=cfg.plateau_patience)


def _stopped(what: str, value: float, step: int, epoch: int, last: Path) -> str:
    kept = f"the last good checkpoint, {last}, is kept" if last.is_file() else "no checkpoint was written yet"
    return (f"non-finite {what} ({value}) at step {step} (epoch {epoch}); stopped before applying "
            f"it, and {kept}. Try a lower lr, a longer warm-up or gradient clipping.")
