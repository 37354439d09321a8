"""`python -m hipcore info` and `demo`: the variants' sizes for an input and a head, and one
batch through a small HiP with its shapes and time."""

from __future__ import annotations

import argparse
import time

from .argtypes import non_negative_int, positive_int
from .data.registry import DATASETS, dataset_name


def parse_shape(text: str) -> tuple[int, ...]:
    """'28x28x1' -> (28, 28, 1): a grid then channels."""
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 28x28x1 (grid then channels), got {text!r}")
    if len(shape) < 2 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"shape needs a grid and channels, all positive, got {text!r}")
    return shape


DEFAULT_CLASSES = 1000          # info's read-out when neither --classes nor --dataset is given: ImageNet's


def head_classes(args: argparse.Namespace) -> tuple[int, str]:
    """(classes of the read-out, how the first line names it): --classes, or a dataset's."""
    from .data.registry import num_classes

    if args.dataset == "imagefolder" and args.data_dir is None:
        raise ValueError("--dataset imagefolder counts the class folders of --data-dir: give it, "
                         "or --classes N instead")
    if args.dataset is not None:
        classes = num_classes(args.dataset, args.data_dir)
        return classes, f"{classes} classes ({args.dataset})"
    if args.data_dir is not None:
        raise ValueError("--data-dir goes with --dataset imagefolder")
    if args.classes:
        return args.classes, f"{args.classes} classes"
    return DEFAULT_CLASSES, f"{DEFAULT_CLASSES} classes (the default; --classes N or --dataset NAME sets it)"


def cmd_info(args: argparse.Namespace) -> int:
    """Parameters of every variant (or the ones named) for one input shape and head."""
    import torch

    from . import VARIANT_NAMES, ModalitySpec, build
    from .config import variant

    names = args.variants or VARIANT_NAMES
    for name in names:
        variant(name)                                   # unknown names fail before any output
    classes, head = head_classes(args)
    *grid, channels = args.input
    m = 1
    for n in grid:
        m *= n
    mods = {"image": ModalitySpec(m, channels, tuple(grid))}
    print(f"input {'x'.join(map(str, grid))} x {channels} = {m} inputs, {head}")
    print(f"{'variant':<24}{'blocks':>7}  {'groups per block':<34}{'parameters':>14}")
    for name in names:
        with torch.device("meta"):
            model = build(name, mods, num_classes=classes)
        groups = "-".join(str(b.groups) for b in model.config.blocks)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name:<24}{len(model.config.blocks):>7}  {groups:<34}{n:>14,}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """One forward and backward pass of a small HiP on random 28 x 28 images."""
    import torch

    from . import ModalitySpec, build

    torch.manual_seed(args.seed)
    model = build(args.variant, {"image": ModalitySpec(784, 1, (28, 28))}, num_classes=10)
    x = {"image": torch.randn(args.batch_size, 784, 1)}
    start = time.perf_counter()
    out = model(x)
    loss = out.logits.logsumexp(-1).mean() + out.reconstruction["image"].square().mean()
    loss.backward()
    seconds = time.perf_counter() - start
    print(f"{args.variant}: {sum(p.numel() for p in model.parameters()):,} parameters")
    for i, z in enumerate(out.latents):
        print(f"  block {i}: latents {tuple(z.shape)}  [B, G, K, D]")
    print(f"  reconstruction {tuple(out.reconstruction['image'].shape)}, logits {tuple(out.logits.shape)}")
    print(f"  forward + backward, batch {args.batch_size}: {seconds:.3f} s")
    return 0


def add_commands(sub) -> None:
    """`info` and `demo` on an argparse subparsers object."""
    from .config import VARIANT_NAMES

    info = sub.add_parser("info", help="parameter counts of the model variants",
                          description="Parameters of each variant for an input shape and a read-out head: "
                                      "--classes N, or a dataset's classes with --dataset.")
    info.add_argument("--input", type=parse_shape, default=(224, 224, 3),
                      help="input grid and channels, e.g. 28x28x1 (default 224x224x3)")
    head = info.add_mutually_exclusive_group()
    head.add_argument("--classes", type=positive_int, default=None,
                      help=f"classes of the read-out (default {DEFAULT_CLASSES}, ImageNet's)")
    head.add_argument("--dataset", type=dataset_name, choices=DATASETS,
                      help="count the read-out of this dataset's classes (imagefolder: with --data-dir)")
    info.add_argument("--data-dir", default=None,
                      help="the image folder whose class folders --dataset imagefolder counts")
    info.add_argument("variants", nargs="*", help=f"variant names (default: all): {', '.join(VARIANT_NAMES)}")
    info.set_defaults(func=cmd_info)

    demo = sub.add_parser("demo", help="one batch through a small HiP, with shapes and timing")
    demo.add_argument("--variant", default="small3", choices=VARIANT_NAMES, help="the model (default small3)")
    demo.add_argument("--batch-size", type=positive_int, default=32, help="random 28 x 28 images (default 32)")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="weights and inputs (default 0)")
    demo.set_defaults(func=cmd_demo)
