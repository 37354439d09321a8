"""Optimisers (AdamW, LAMB) and the per-step learning-rate schedule: a linear warm-up, then a
cosine decay to the run's last step or a constant rate."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., 2020): Adam's update plus decoupled weight decay, rescaled per
    parameter tensor by the trust ratio ||w|| / ||update|| (1 when either norm is zero)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
                p.sub_(group["lr"] * trust * update)
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters, split: weight matrices decay; biases, norms and learned tables
    (positions, latents, class query) do not, as in ViT/MAE recipes."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        table = ".tables." in name or name.endswith(("latents", "query"))
        (no_decay if p.ndim < 2 or table else decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "lamb":
        return Lamb(groups, lr=cfg.lr, betas=cfg.betas)
    # On a GPU one fused kernel updates every parameter (fewer, larger kernels); the CPU keeps
    # torch's default implementation, whose speed and digits the CPU runs were measured with.
    fused = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **({"fused": True} if fused else {}))


class WarmupCosine:
    """lr factor of step s (0-based): linear warm-up to 1, then a cosine down to min_ratio at
    total_steps, or 1 for ever when total_steps is None (TrainConfig.schedule 'constant').

    A callable object (not a lambda) so LambdaLR's state_dict stores its numbers."""

    def __init__(self, warmup_steps: int, total_steps: int | None, min_ratio: float = 0.0):
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, total_steps, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.total_steps is None:                  # constant after warm-up
            return 1.0
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_epochs * steps_per_epoch)
    decay_to = total_steps if cfg.schedule == "cosine" else None
    schedule = WarmupCosine(min(warmup, total_steps), decay_to, cfg.min_lr / cfg.lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
