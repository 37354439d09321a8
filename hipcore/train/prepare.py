"""Preparing a run, once per session: its data, model, optimiser, loader, and where it resumes.

    prepare(cfg, ctx, train_data, test_data, run_dir) -> Run     # everything the loop needs
    save(run, last.pt[, best.pt])                                # what resume() reads back

The order of `prepare` is part of what a run is: the seeds are set first, then the model is
built (which draws from them), then the data order's and dropout's generators; a resumed run
then overwrites all of them from last.pt, so it ends exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import device as precision
from ..config import BlockConfig, HiPConfig, modalities_to_dict, variant
from ..model import HiP
from . import checkpoint, distributed, rundir
from .config import TrainConfig
from .metrics import MetricsLogger, progress_bar, versions, write_json
from .optim import build_optimizer, build_scheduler
from .transfer import transfer
from .validation import limit, split_validation


class ConfigMismatchError(rundir.RunDirError):
    """The run directory holds a run with another configuration, other data or another source."""


@dataclass
class RunState:
    """What a checkpoint holds besides modules: counters, running sums, the best so far."""

    step: int = 0
    best: float | None = None
    best_step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    window: list[float] = field(default_factory=lambda: [0.0, 0])       # loss sum, steps since a train row
    epoch_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss * n, correct, n (segment: pixels)
    elapsed: float = 0.0              # wall seconds of the run before this session
    train_seconds: float = 0.0        # the steps, each from asking for its batch to its update
    load_seconds: float = 0.0         # of train_seconds: waiting for the batches
    train_examples: int = 0
    val_history: list[float] = field(default_factory=list)   # per epoch: val accuracy, mIoU (segment) or loss (MAE)
    converged: bool = False           # the plateau rule held at the last epoch
    selected: dict[str, float] = field(default_factory=dict)  # the metrics of the best-validation epoch
    test: dict[str, float] = field(default_factory=dict)      # the test set's evaluation, once, at the end:
                                                              # on best.pt (validation runs) or the final weights


@dataclass
class Run:
    """A prepared run: what it trains (model, data), how (optimiser, loader, precision), where it
    stands (state, resumed from last.pt or fresh) and where it writes (run_dir, logs)."""

    cfg: TrainConfig                  # precision resolved: what the run computes
    ctx: distributed.Context
    run_dir: Path
    hip: HiP
    net: nn.Module                    # hip, or DistributedDataParallel around it
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    loader: Any                       # BatchLoader: resumes mid-epoch
    data: dict[str, Any]              # 'train', 'validation' (or None), 'test'
    record: dict[str, Any]            # run.json: data fingerprints, the pretraining source
    state: RunState
    log: MetricsLogger                # metrics.csv
    timing: MetricsLogger             # timing.csv
    total_steps: int
    resumed: bool = False
    started: float = 0.0              # perf_counter at this session's start
    elapsed_before: float = 0.0       # wall seconds of the sessions before this one
    bar: Any = None                   # the progress bar (disabled when quiet)
    trainable: list[nn.Parameter] = field(default_factory=list)   # what clip_grad_norm_ clips

    supervised = property(lambda self: self.cfg.task == "supervised")
    last_path = property(lambda self: self.run_dir / "last.pt")
    best_path = property(lambda self: self.run_dir / "best.pt")
    steps_per_epoch = property(lambda self: len(self.loader))

    def autocast(self):
        return precision.autocast(self.cfg.precision, self.ctx.device)

    def elapsed(self) -> float:
        """Wall seconds of the run, all sessions together."""
        return self.elapsed_before + time.perf_counter() - self.started

    def throughput(self) -> float:
        """Training examples per second (the steps only)."""
        return self.state.train_examples / max(self.state.train_seconds, 1e-9)

    def say(self, text: str) -> None:
        """A line for the person watching: above the progress bar, or on stderr without one."""
        if not self.ctx.main or self.cfg.quiet:
            return
        if self.bar.disable:
            print(text, file=sys.stderr)
        else:
            self.bar.write(text)


# ---- data and model ----


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
    """The variant (a name or a HiPConfig .json file) with cfg.model's overrides applied, and a
    head of num_classes: the classifier, or for cfg.task 'segment' the segmentation head."""
    if cfg.variant.endswith(".json"):
        base = HiPConfig.from_dict(json.loads(Path(cfg.variant).read_text()))
    else:
        base = variant(cfg.variant)
    overrides = dict(cfg.model)
    if "blocks" in overrides:
        overrides["blocks"] = tuple(BlockConfig(**b) for b in overrides["blocks"])
    if cfg.task == "segment":
        return base.replace(**overrides, num_classes=0, dense_classes=num_classes)
    return base.replace(**overrides, num_classes=num_classes)


def freeze_decoder(model: HiP) -> None:
    """Classification never runs the decoder or the reconstruction head: freeze them, so that
    DistributedDataParallel sees only parameters that get gradients."""
    for block in model.blocks[model.config.processor_index + 1:]:
        block.requires_grad_(False)
    model.reconstruction_head.requires_grad_(False)
    model.embedder.unembed.requires_grad_(False)


def head_classes(cfg: TrainConfig, dataset) -> int:
    """The classes of the run's head: the dataset's (a classifier's, or per pixel for segment),
    none for MAE."""
    return 0 if cfg.task == "pretrain" else dataset.num_classes


def check_dense(cfg: TrainConfig, train_set, val_set, test_set) -> None:
    """A segmentation run's data: one modality whose positions the first level's groups split
    evenly, and labels per position in [0, classes) in every split."""
    from . import dense

    groups = model_config(cfg, 0).blocks[0].groups
    dense.check_groups(train_set.modalities, groups, cfg.dataset)
    for what, part in (("train", train_set), ("validation", val_set), ("test", test_set)):
        if part is not None:
            dense.check_labels(part, head_classes(cfg, train_set), f"{cfg.dataset} {what}")


def start_from(hip: HiP, cfg: TrainConfig) -> dict[str, Any] | None:
    """Transfer cfg.init_from's pretrained weights into `hip`; -> the source's identity (None
    when the run starts from scratch)."""
    if not cfg.init_from or cfg.transfer == "none":
        return None
    pretrained = checkpoint.load(cfg.init_from, advice="--init-from needs an intact MAE checkpoint "
                                 "(last.pt or best.pt of a pretraining run).")
    task = (pretrained.get("config") or {}).get("task")
    if task != "pretrain":
        raise ValueError(f"--init-from {cfg.init_from} is a {task or 'unknown'} checkpoint, not an MAE "
                         "pretraining's: fine-tuning starts from a pretraining run's last.pt or best.pt")
    transfer(hip, pretrained, cfg.transfer, name=cfg.init_from)
    return rundir.source_identity(pretrained, cfg.init_from)


def run_record(train_set, test_set, source: dict[str, Any] | None) -> dict[str, Any]:
    """What run.json and every checkpoint record: the data's fingerprints (None for a dataset
    that has none) and the pretraining checkpoint the run started from."""
    return {"data": {"train": getattr(train_set, "fingerprint", None),
                     "test": getattr(test_set, "fingerprint", None)}, "source": source}


# ---- preparing a run ----


def prepare(cfg: TrainConfig, ctx: distributed.Context, train_data, test_data, run_dir: Path) -> Run:
    """Data, model, optimiser and loader of the run `cfg`, resumed from last.pt when there is
    one; writes config.json, run.json and versions.json and opens the logs."""
    from ..data import BatchLoader, derive_seed

    started = time.perf_counter()
    cfg = cfg.replace(precision=precision.resolve(cfg.precision, ctx.device))   # 'auto' -> what runs
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over {ctx.world_size} ranks")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    train_set, test_set = load_data(cfg, train_data, test_data)
    train_set, val_set = split_validation(train_set, cfg)
    supervised, segment = cfg.task == "supervised", cfg.task == "segment"
    if segment:
        check_dense(cfg, train_set, val_set, test_set)
    hip = HiP(model_config(cfg, head_classes(cfg, train_set)), train_set.modalities)
    record = run_record(train_set, test_set, start_from(hip, cfg))
    if val_set is not None:
        record["data"]["validation"] = val_set.split_digest
    if supervised:
        freeze_decoder(hip)
    elif segment:
        from .dense import freeze_unused  # late: other tasks never load hipcore.train.dense

        freeze_unused(hip)
    hip.to(ctx.device)
    optimizer = build_optimizer(hip, cfg)
    loader = BatchLoader(train_set, cfg.batch_size // ctx.world_size, shuffle=True, seed=cfg.seed,
                         drop_last=True, train=cfg.augment, rank=ctx.rank, world_size=ctx.world_size)
    total_steps = cfg.max_steps or cfg.epochs * len(loader)
    scheduler = build_scheduler(optimizer, cfg, len(loader), total_steps)
    torch.manual_seed(derive_seed(cfg.seed, ctx.rank))        # dropout and masks differ per rank
    run = Run(cfg=cfg, ctx=ctx, run_dir=run_dir, hip=hip, net=hip, optimizer=optimizer, scheduler=scheduler,
              scaler=precision.grad_scaler(cfg.precision, ctx.device), loader=loader,
              data={"train": train_set, "validation": val_set, "test": test_set}, record=record,
              state=RunState(), log=MetricsLogger(run_dir / "metrics.csv", cfg.run_id, cfg.seed, enabled=ctx.main),
              timing=MetricsLogger(run_dir / "timing.csv", cfg.run_id, cfg.seed, enabled=ctx.main),
              total_steps=total_steps, started=started)
    resume(run)
    open_files(run)
    if ctx.distributed:
        run.net = DistributedDataParallel(hip, device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
                                          broadcast_buffers=False)
    run.trainable = [p for p in hip.parameters() if p.requires_grad]
    run.bar = progress_bar(total_steps, run.state.step, f"{cfg.task} {Path(cfg.variant).stem}",
                           quiet=not ctx.main or cfg.quiet)
    announce(run)
    return run


def open_files(run: Run) -> None:
    """config.json, run.json, versions.json; the logs, cut back to the resumed step (and, until
    the checkpoint records the final test evaluation, without its rows: it is done again)."""
    ctx, kept = run.ctx, run.state.step if run.resumed else None
    untested = None if run.state.test else "test"
    if ctx.main:
        write_json(run.run_dir / "config.json", run.cfg.to_dict())
        run.record["checkpointed"] = run.resumed
        write_json(run.run_dir / "run.json", run.record)
        write_json(run.run_dir / "versions.json", versions(ctx.device, ctx.world_size))
        run.log.start(keep_until_step=kept, drop_split=untested)
        run.timing.start(keep_until_step=kept, drop_split=untested)
    distributed.barrier(ctx)


def announce(run: Run) -> None:
    """The run's first line: where it starts, what it trains on what, in which precision."""
    cfg, data, ctx = run.cfg, run.data, run.ctx
    val = data["validation"]
    run.say(f"{'resuming' if run.resumed else 'starting'} {cfg.task} run {run.run_dir} at step "
            f"{run.state.step}/{run.total_steps}: {cfg.precision}, "
            f"{cfg.variant} ({sum(p.numel() for p in run.hip.parameters()):,} parameters), {cfg.dataset} "
            f"{len(data['train'])} train / " + (f"{len(val)} validation ({val.origin}) / " if val is not None else "")
            + f"{len(data['test'])} test, {run.steps_per_epoch} steps per epoch, "
            f"batch {cfg.batch_size} on {ctx.world_size} x {ctx.device}")


# ---- checkpoints: save, and resume from what was saved ----


def save(run: Run, *paths: Path) -> None:
    """Checkpoint the run to each of `paths` (every rank's generators, gathered on rank 0)."""
    rng = distributed.gather_objects(checkpoint.rng_state(), run.ctx)
    if not run.ctx.main:
        return
    run.state.elapsed = run.elapsed()
    snapshot = {"format": checkpoint.FORMAT, "step": run.state.step, "run_id": run.cfg.run_id,
                "config": run.cfg.to_dict(), "model_config": run.hip.config.to_dict(),
                "modalities": modalities_to_dict(run.hip.modalities), "model": run.hip.state_dict(),
                "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                "loader": run.loader.state_dict(), "rng": rng, "run": asdict(run.state),
                "data": run.record["data"], "source": run.record["source"]}
    for path in paths:
        checkpoint.save_atomic(snapshot, path)
    if not run.record.get("checkpointed"):
        run.record["checkpointed"] = True
        write_json(run.run_dir / "run.json", run.record)


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


def differences(saved: dict[str, Any], cfg: TrainConfig, record: dict[str, Any]) -> list[str]:
    """How the saved run differs from this one: configuration fields, data fingerprints and
    the pretraining source, each as 'what: saved -> now'."""
    found = rundir.config_differences(cfg, saved["config"])
    for split, now in record["data"].items():
        before = (saved.get("data") or {}).get(split)
        if before is not None and now is not None and before != now:
            found.append(f"{split} data fingerprint: {before} -> {now}")
    before, now = saved.get("source"), record["source"]
    if before is not None and now is not None and not rundir.same_source(before, now):
        found.append(f"init_from: {rundir.describe_source(before)} -> {rundir.describe_source(now)}")
    return found


def resume(run: Run) -> None:
    """Restore everything from last.pt when it exists; refuse a different configuration,
    other data (fingerprints) or another pretraining checkpoint."""
    path, cfg = run.last_path, run.cfg
    if path.exists() and not path.is_file():
        raise rundir.RunDirError(f"{path} is a folder, not a checkpoint: move it away and rerun")
    if not path.is_file():
        if run.ctx.main:
            refuse_a_lost_checkpoint(path.parent)
        return
    saved = checkpoint.load(path, training=True)
    found = differences(saved, cfg, run.record)
    if found:
        hint = ""
        if any(d.startswith("precision:") for d in found):
            hint = (f"\nThe run trained in {saved['config'].get('precision', 'fp32')}; here the precision "
                    f"resolves to {cfg.precision}: resume with that --precision on a machine that "
                    f"computes it, never in another one.")
        raise ConfigMismatchError(
            f"{path.parent} holds a run with a different configuration or data; refusing to resume it.\n  "
            + "\n  ".join(found) + "\n(saved -> now). Use another run_dir, or move this one away." + hint)
    run.hip.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    run.loader.load_state_dict(saved["loader"])
    if len(saved["rng"]) == run.ctx.world_size:
        checkpoint.set_rng_state(saved["rng"][run.ctx.rank])
    run.state, run.resumed = RunState(**saved["run"]), True
    run.elapsed_before = run.state.elapsed
