"""Optimizers and LR schedules behind registries."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from training.config import OptimConfig

OPTIMIZERS: dict[str, Callable[[list[nn.Parameter], OptimConfig], torch.optim.Optimizer]] = {
    "adamw": lambda params, cfg: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    "sgd": lambda params, cfg: torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0
    ),
}


def create_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return OPTIMIZERS[cfg.name](params, cfg)


def _warmup_then(shape: Callable[[float], float], warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor: linear warm-up, then `shape(progress)` with progress in [0, 1]."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return shape((step - warmup_steps) / max(1, total_steps - warmup_steps))

    return factor


SchedulerBuilder = Callable[[torch.optim.Optimizer, OptimConfig, int, int], LRScheduler]

SCHEDULES: dict[str, SchedulerBuilder] = {
    "onecycle": lambda opt, cfg, total, warmup: OneCycleLR(opt, max_lr=cfg.lr, total_steps=total),
    "cosine": lambda opt, cfg, total, warmup: LambdaLR(
        opt, _warmup_then(lambda t: 0.5 * (1 + math.cos(math.pi * min(t, 1.0))), warmup, total)
    ),
    "constant": lambda opt, cfg, total, warmup: LambdaLR(opt, _warmup_then(lambda t: 1.0, warmup, total)),
}


def create_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int, steps_per_epoch: int
) -> LRScheduler:
    """A per-step schedule spanning `epochs` full epochs."""
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, round(cfg.warmup_epochs * steps_per_epoch))
    return SCHEDULES[cfg.schedule](optimizer, cfg, total, warmup)
