"""`make gpu-check` (`python -m hipcore.bench.gpu_check`): the GPU paths, run once on a GPU.

1. training steps of small3 (28 x 28, batch 128) and HiP-16 (224 x 224, batch 8) in every
   precision the GPU computes (fp32, bf16 where supported, fp16 with a gradient scaler):
   seconds per step, peak GPU memory, and a finite loss;
2. one-GPU torchrun of `python -m hipcore train` through NCCL, on the built-in 3-D shapes
   (no data to fetch), with its precision left at auto;
3. HiP-16 and HiP-256 training steps at 224, 512 and 1024 in the precision auto picks.

Prints one markdown table per part. The project never needs a GPU: without one this stops
at once, saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from ..config import ModalitySpec, variant
from ..device import autocast, grad_scaler, resolve, supported
from ..model import HiP


def step_time(name: str, side: int, channels: int, batch: int, classes: int, precision: str,
              device: torch.device, steps: int = 5) -> dict:
    """Median seconds per classification step (AdamW), peak memory, last loss."""
    torch.manual_seed(0)
    grid = (side, side)
    model = HiP(variant(name, num_classes=classes), {"image": ModalitySpec(side * side, channels, grid)}).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = grad_scaler(precision, device)
    x = {"image": torch.rand(batch, side * side, channels, device=device)}
    y = torch.randint(0, classes, (batch,), device=device)
    torch.cuda.reset_peak_memory_stats(device)
    times, loss = [], None
    for _ in range(steps + 2):                                   # two warm-up steps
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast(precision, device):
            logits = model(x, reconstruct=False).logits
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    times = sorted(times[2:])
    return {"model": name, "side": side, "batch": batch, "precision": precision,
            "step_s": times[len(times) // 2], "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            "loss_finite": bool(torch.isfinite(loss))}


def table(rows: list[dict]) -> str:
    lines = ["| model | side | batch | precision | s/step | peak GiB | loss finite |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['side']} | {r['batch']} | {r['precision']} | {r['step_s']:.4f} | "
              f"{r['peak_gib']:.2f} | {r['loss_finite']} |" for r in rows]
    return "\n".join(lines)


def torchrun_check() -> int:
    """One-process NCCL torchrun of the training command; returns its exit code."""
    with tempfile.TemporaryDirectory(prefix="hipcore-gpu-") as run_dir:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                   "-m", "hipcore", "train", "--dataset", "shapes3d", "--max-steps", "5", "--batch-size", "32",
                   "--limit-train", "256", "--limit-test", "64", "--device", "cuda", "--quiet",
                   "--run-dir", os.path.join(run_dir, "run")]
        done = subprocess.run(command, capture_output=True, text=True)
        print(done.stdout[-2000:] + done.stderr[-2000:])
        return done.returncode


def main() -> int:
    if not torch.cuda.is_available():
        print("error: no CUDA device: this check needs a GPU (the project itself never does)", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    precisions = [p for p in ("fp32", "bf16", "fp16") if supported(p, device)]
    rows = [step_time("small3", 28, 1, 128, 10, p, device) for p in precisions]
    rows += [step_time("hip16", 224, 3, 8, 1000, p, device) for p in precisions]
    print("\n## Training steps per precision\n\n" + table(rows))
    code = torchrun_check()
    print(f"\n## One-GPU torchrun (NCCL): exit code {code}")
    auto = resolve("auto", device)
    sides = [step_time(name, side, 3, 2, 1000, auto, device)
             for name in ("hip16", "hip256") for side in (224, 512, 1024)]
    print(f"\n## HiP-16 and HiP-256 against image side ({auto}, batch 2)\n\n" + table(sides))
    bad = [r for r in rows + sides if not r["loss_finite"]]
    return 1 if code or bad else 0


if __name__ == "__main__":
    sys.exit(main())
