"""`python -m hipcore train ...` (supervised, optionally from an MAE checkpoint) and
`python -m hipcore pretrain ...` (MAE). Every option maps to one TrainConfig field.

    python -m hipcore pretrain --dataset fashion_mnist --variant small3 --epochs 20 --run-dir runs/mae
    python -m hipcore train --init-from runs/mae/last.pt --transfer positions --run-dir runs/ft
    torchrun --nproc_per_node 2 -m hipcore train ...            (one process per device)

Rerunning a command resumes its run directory from the last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from ..argtypes import finite as _finite
from ..argtypes import non_negative_int as _non_negative_int
from ..argtypes import positive_int as _positive_int
from ..argtypes import thread_count
from ..device import PRECISIONS
from .config import OPTIMIZERS, SCHEDULES, TRANSFERS, TrainConfig, variant_file
from .metrics import show_metric

DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)
            if f.default is not dataclasses.MISSING}


def key_value(text: str) -> tuple[str, object]:
    """'key=value' -> (key, value), the value read as JSON when it parses (numbers, lists,
    true/false, null), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def _required_options() -> str:
    """'imagefolder requires resolution=N': each dataset's required loader options, for --help."""
    from ..data import DATASETS
    from ..data.registry import options_of

    return "; ".join(f"{name} requires {', '.join(f'{o}=N' for o in options_of(name)[0])}"
                     for name in DATASETS if options_of(name)[0])


def _add_common(p: argparse.ArgumentParser) -> None:
    """The options train and pretrain share, group by group."""
    _add_data(p.add_argument_group("data"))
    _add_model(p.add_argument_group("model"))
    _add_schedule(p.add_argument_group("schedule and optimiser"))
    _add_validation(p.add_argument_group("validation and the plateau (hipcore.train.plateau)"))
    _add_run(p.add_argument_group("run"))


def _add_data(d) -> None:
    from ..data import DATASETS, IMAGE_ORDERINGS, POINT_ORDERINGS

    d.add_argument("--dataset", default=DEFAULTS["dataset"], choices=DATASETS, help="what to train on")
    d.add_argument("--data-dir", default=None, help="folder of the dataset's files (default: its usual places)")
    d.add_argument("--ordering", default=None, choices=tuple(dict.fromkeys(IMAGE_ORDERINGS + POINT_ORDERINGS)),
                   help=f"input order: images {'|'.join(IMAGE_ORDERINGS)}, points {'|'.join(POINT_ORDERINGS)}")
    d.add_argument("--data-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help=f"a load_dataset option (repeatable): {_required_options()} (the side images are "
                        "resized and centre-cropped to, e.g. resolution=64); others e.g. num_points=256")
    d.add_argument("--no-augment", dest="augment", action="store_false",
                   help="switch off the dataset's train-time augmentation")
    d.add_argument("--limit-train", type=_positive_int, default=None, metavar="N",
                   help="train on a fixed random subset of N examples (quick profiles)")
    d.add_argument("--limit-test", type=_positive_int, default=None, metavar="N",
                   help="evaluate on a fixed random subset of N examples")


def _add_model(m) -> None:
    from ..config import VARIANT_NAMES

    m.add_argument("--variant", default=DEFAULTS["variant"],
                   help=f"one of {', '.join(VARIANT_NAMES)}, or a .json file holding a HiPConfig dict")
    m.add_argument("--position", choices=("learned", "fourier"), default=None,
                   help="positional embeddings (default: the variant's)")
    m.add_argument("--dropout", type=_finite, default=None, help="dropout after self-attention and MLPs")
    m.add_argument("--drop-path", type=_finite, default=None, help="stochastic depth rate")
    m.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="any other HiPConfig field, e.g. readout=query or regroup=transpose_reshape")


def _add_schedule(s) -> None:
    s.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"], help="passes over the training set")
    s.add_argument("--max-steps", type=_positive_int, default=None, help="stop after N steps (overrides --epochs)")
    s.add_argument("--batch-size", type=_positive_int, default=DEFAULTS["batch_size"],
                   help="global batch, split over the processes")
    s.add_argument("--eval-batch-size", type=_positive_int, default=DEFAULTS["eval_batch_size"],
                   help="test batch per process")
    s.add_argument("--optimizer", choices=OPTIMIZERS, default=DEFAULTS["optimizer"],
                   help="AdamW, or LAMB (the Perceiver IO recipe's)")
    s.add_argument("--lr", type=_finite, default=DEFAULTS["lr"], help="peak learning rate")
    s.add_argument("--min-lr", type=_finite, default=DEFAULTS["min_lr"], help="where the cosine ends")
    s.add_argument("--weight-decay", type=_finite, default=DEFAULTS["weight_decay"],
                   help="on weight matrices (not biases, norms, position or latent tables)")
    s.add_argument("--schedule", choices=SCHEDULES, default=DEFAULTS["schedule"],
                   help="after warm-up: a cosine decay to --min-lr at the last step (with --plateau, the cap's), "
                        "or a constant rate, so that the cap does not shape the curve")
    s.add_argument("--warmup-epochs", type=_finite, default=DEFAULTS["warmup_epochs"],
                   help="linear warm-up, then the --schedule, updated every step")
    s.add_argument("--warmup-steps", type=_non_negative_int, default=None,
                   help="warm-up in steps (overrides --warmup-epochs)")
    s.add_argument("--clip-grad", type=_finite, default=DEFAULTS["clip_grad"], help="max gradient norm; 0: no clipping")


def _add_validation(v) -> None:
    v.add_argument("--val-fraction", type=_finite, default=DEFAULTS["val_fraction"], metavar="F",
                   help="validate (> 0; 0: none): it alone picks the best checkpoint, whose test metrics are "
                        "reported; without --val-size spare images, this fraction of the training subset")
    v.add_argument("--val-size", type=_positive_int, default=DEFAULTS["val_size"], metavar="N",
                   help="validate on N of the training images --limit-train leaves unused, where there are N")
    v.add_argument("--plateau", action="store_true",
                   help="stop at the validation plateau (needs --val-fraction); --epochs is the cap")
    v.add_argument("--min-epochs", type=_positive_int, default=DEFAULTS["min_epochs"],
                   help="the plateau rule waits this many epochs")
    v.add_argument("--plateau-window", type=_positive_int, default=DEFAULTS["plateau_window"],
                   help="the last this many epochs give the trend the rule tests")
    v.add_argument("--plateau-slope", type=_finite, default=DEFAULTS["plateau_slope"],
                   help="stop once the trend is confidently below this many top-1 points per epoch")
    v.add_argument("--plateau-loss-slope", type=_finite, default=DEFAULTS["plateau_loss_slope"],
                   help="MAE: ... below this relative validation-loss decrease per epoch")
    v.add_argument("--plateau-confidence", type=_finite, default=DEFAULTS["plateau_confidence"],
                   help="one-sided level of 'confidently below'")


def _add_run(r) -> None:
    r.add_argument("--seed", type=_non_negative_int, default=DEFAULTS["seed"],
                   help="model initialisation, data order, augmentation, masks")
    r.add_argument("--run-dir", default=None, help="where metrics and checkpoints go "
                   "(default runs/<task>-<dataset>-<variant>-seed<seed>)")
    r.add_argument("--checkpoint-every", type=_non_negative_int, default=DEFAULTS["checkpoint_every"],
                   metavar="STEPS",
                   help="also checkpoint every STEPS steps (0: at epoch ends only)")
    r.add_argument("--log-every", type=_positive_int, default=DEFAULTS["log_every"], metavar="STEPS",
                   help="a train-loss row every STEPS steps")
    r.add_argument("--device", default=DEFAULTS["device"], help="auto, cpu, cuda or cuda:<index>")
    r.add_argument("--precision", choices=PRECISIONS, default=DEFAULTS["precision"],
                   help="fp32, or bf16/fp16 autocast over fp32 weights; auto: bf16 where the device "
                        "computes it natively, else fp32 (hipcore.device.resolve)")
    r.add_argument("--threads", type=thread_count, default=None,
                   help="torch CPU threads (at most the cores this process may use)")
    r.add_argument("--quiet", action="store_true", help="no progress bar and no epoch lines")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one worth showing."""

    def _get_help_string(self, action):
        if any(action.default is v for v in (None, False, True, argparse.SUPPRESS)) or action.default == []:
            return action.help
        return super()._get_help_string(action)


def add_commands(subparsers) -> None:
    """Add `train` and `pretrain` to an argparse subparsers object (func(args) -> exit code)."""
    fmt = _Help
    train = subparsers.add_parser(
        "train", help="supervised training, optionally from an MAE checkpoint", formatter_class=fmt,
        description="Train a HiP classifier (or, with --task segment, a label per pixel); rerunning "
                    "the same command resumes it.")
    _add_common(train)
    t = train.add_argument_group("classification")
    t.add_argument("--task", choices=("supervised", "segment"), default="supervised",
                   help="a label per example, or per pixel (segment: a dense dataset such as collages; "
                        "--set dense_from=bottleneck decodes from the processor's latents)")
    t.add_argument("--label-smoothing", type=_finite, default=DEFAULTS["label_smoothing"],
                   help="of the training cross-entropy (test loss is plain)")
    t.add_argument("--init-from", default=None, metavar="CKPT", help="an MAE checkpoint (last.pt or best.pt)")
    t.add_argument("--transfer", choices=TRANSFERS, default=DEFAULTS["transfer"],
                   help="what --init-from gives: all weights, only the positional embeddings "
                        "(trainable or frozen), or nothing (the control)")
    train.set_defaults(func=cmd_train)

    pretrain = subparsers.add_parser(
        "pretrain", help="masked auto-encoding (MAE) pretraining", formatter_class=fmt,
        description="Pretrain a HiP by masked auto-encoding with groupwise masks; "
                    "rerunning the same command resumes it.")
    _add_common(pretrain)
    mae = pretrain.add_argument_group("masked auto-encoding")
    mae.add_argument("--mask-ratio", type=_finite, default=DEFAULTS["mask_ratio"],
                     help="fraction of each group's positions hidden from the encoder")
    mae.add_argument("--norm-pix", action="store_true", help="per-example normalised targets")
    pretrain.set_defaults(func=cmd_pretrain)

    upgrade = subparsers.add_parser(
        "checkpoint-upgrade", help="re-save a checkpoint written before digests existed, with its digest",
        description="Reads a format-1 checkpoint that carries no digest (weights only), checks its "
                    "structure and saves it again with its digest, so runs can resume from it. Every "
                    "checkpoint this version writes carries one; a newer one without it was modified.")
    upgrade.add_argument("checkpoint", help="the last.pt or best.pt to upgrade")
    upgrade.set_defaults(func=cmd_checkpoint_upgrade)


def cmd_checkpoint_upgrade(args: argparse.Namespace) -> int:
    from .checkpoint import upgrade_legacy

    state = upgrade_legacy(args.checkpoint)
    print(f"{args.checkpoint}: a checkpoint from before digests (step {state.get('step')}), checked and "
          "saved again with its digest")
    return 0


def config_from_args(args: argparse.Namespace, task: str) -> TrainConfig:
    model = dict(args.set)
    for key in ("position", "dropout", "drop_path"):
        if getattr(args, key) is not None:
            model[key] = getattr(args, key)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields and k != "model"}
    values.update(task=task, model=model, data_options=dict(args.data_option),
                  clip_grad=args.clip_grad or None)
    return TrainConfig(**values)


def echo_data(cfg: TrainConfig) -> None:
    """Check the dataset's folder and options before any timing or loading (an error names the
    missing one), then say its required options on the run's first line, e.g. 'imagefolder:
    resolution=64'."""
    from ..data.registry import check_options, options_of

    check_options(cfg.dataset, cfg.data_dir, cfg.data_options)
    required = options_of(cfg.dataset)[0]
    if required and os.environ.get("RANK", "0") == "0":
        print(f"{cfg.dataset}: " + ", ".join(f"{o}={cfg.data_options[o]}" for o in required), flush=True)


def check_inputs(cfg: TrainConfig) -> None:
    """What TrainConfig cannot check alone, before any work starts: the device exists here, the
    variant is known (or its file is there), and a decoding pool fits the machine's cores
    (echo_data checks the dataset's options)."""
    from ..config import VARIANT_NAMES
    from ..data.imagefolder import check_workers
    from ..device import pick_device

    pick_device(cfg.device)
    if cfg.variant.endswith(".json"):
        if not os.path.isfile(cfg.variant):
            raise FileNotFoundError(f"--variant {cfg.variant}: no such file (a .json file holding a HiPConfig dict)")
        variant_file(cfg.variant)
    elif cfg.variant not in VARIANT_NAMES:
        raise ValueError(f"--variant {cfg.variant!r}: unknown; choose one of {', '.join(VARIANT_NAMES)}, "
                         "or a .json file holding a HiPConfig dict")
    if cfg.dataset == "imagefolder" and "workers" in cfg.data_options:   # elsewhere an unknown option
        check_workers(cfg.data_options["workers"])


def _run(args: argparse.Namespace, task: str) -> int:
    import torch

    from .engine import NonFiniteLossError, train

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args, task)
    check_inputs(cfg)
    echo_data(cfg)
    try:
        result = train(cfg)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    if os.environ.get("RANK", "0") == "0":
        print(" ".join(f"{k}={show_metric(k, v)}" for k, v in result.metrics.items()))
        print(f"run_dir={result.run_dir} steps={result.steps} wall_time={result.wall_time:.1f}s "
              f"throughput={result.throughput:.1f} examples/s")
        if cfg.val_fraction:
            print(f"epochs_run={result.epochs_run} selected_epoch={result.selected_epoch}"
                  + ("" if result.converged is None else f" converged={'yes' if result.converged else 'no'}"))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    return _run(args, args.task)


def cmd_pretrain(args: argparse.Namespace) -> int:
    return _run(args, "pretrain")
