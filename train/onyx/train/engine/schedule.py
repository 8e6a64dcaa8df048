"""Optimizer, learning-rate schedule and train mode, shared by every task.

    optimizer = build_optimizer(config, param_groups)      # AdamW or SGD over named groups
    scheduler = build_scheduler(config, optimizer, steps_per_epoch)

The rate warms up linearly over `warmup_fraction` of all optimizer steps, then follows
`schedule`: cosine decay to 0, step (x0.1 at 1/2 and 3/4 of training) or constant. The scheduler
steps once per optimizer step, so its state (saved in every checkpoint) resumes mid-schedule.

`train_mode(model)` is `model.train()` except that BatchNorm layers whose parameters are frozen
stay in eval mode: see `onyx.train.tasks.image.transfer` for why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from onyx.train.config import TrainConfig

# Set on a BatchNorm module (by the transfer schedule) to keep it in eval mode in training.
KEEP_STATISTICS = "onyx_keep_statistics"


def train_mode(model: nn.Module) -> None:
    """model.train(), except BatchNorm layers whose parameters are frozen, or marked with
    `KEEP_STATISTICS`, stay in eval mode (their running statistics are used and kept)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            frozen = bool(params) and not any(p.requires_grad for p in params)
            if frozen or getattr(module, KEEP_STATISTICS, False):
                module.eval()


def build_optimizer(config: TrainConfig, groups: Sequence[dict[str, Any]]) -> torch.optim.Optimizer:
    """`groups`: torch parameter groups, each with "params", "lr" and a "name"."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            list(groups),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(list(groups), lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose adamw or sgd")


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the base rate at optimizer step `step` (0-based) of `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if kind == "step":
        return 0.1 ** sum(progress >= m for m in (0.5, 0.75))
    if kind == "constant":
        return 1.0
    raise ValueError(f"unknown schedule {kind!r}; choose cosine, step or constant")


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    return round(total_steps * warmup_fraction)


def build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, steps_per_epoch * config.epochs)
    warmup = warmup_steps(total, config.warmup_fraction)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, config.schedule)
    )
