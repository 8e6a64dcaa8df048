"""The transfer-learning schedule: what trains when, at which learning rate.

    epochs 1..freeze_epochs   backbone frozen, only the new head trains (at lr)
    afterwards                the last `unfreeze` backbone stages train too (-1: all), at
                              lr * backbone_lr_scale (discriminative rates, as fastai's fine_tune)

One optimizer holds two parameter groups (head, backbone) from the start; frozen parameters have
no gradient, so AdamW/SGD skip them, and the optimizer and scheduler state stay one object that a
checkpoint saves and `--resume` restores.

BatchNorm: a frozen stage's BatchNorm layers are kept in eval mode, i.e. they normalise with their
pretrained running statistics and do not update them. Letting small, task-specific batches
overwrite ImageNet statistics would shift the features under a head that is learning on them, and
is the usual cause of a frozen backbone "forgetting". Unfrozen stages train their BatchNorm
normally. `train_mode(model)` applies this; call it instead of `model.train()`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from onyx.train.config import ImageTrainConfig
from onyx.train.models import backbone_stages, head_module


def freeze_epochs(config: ImageTrainConfig) -> int:
    if config.freeze_epochs >= 0:
        return config.freeze_epochs
    return 1 if config.weights != "none" else 0


def backbone_parameters(config: ImageTrainConfig, model: nn.Module) -> Iterator[nn.Parameter]:
    head = {id(p) for p in head_module(config.model, model).parameters()}
    return (p for p in model.parameters() if id(p) not in head)


def set_trainable(config: ImageTrainConfig, model: nn.Module, epoch: int) -> str:
    """Freeze/unfreeze per the schedule for 1-based `epoch`; returns a description for the log."""
    stages = backbone_stages(config.model, model)
    if epoch <= freeze_epochs(config):
        trainable = 0
    else:
        trainable = len(stages) if config.unfreeze < 0 else min(config.unfreeze, len(stages))
    for p in backbone_parameters(config, model):
        p.requires_grad_(False)
    for stage in stages[len(stages) - trainable :]:
        for module in stage:
            module.requires_grad_(True)
    head_module(config.model, model).requires_grad_(True)
    if trainable == len(stages):
        return "all layers trainable"
    return f"head + last {trainable} of {len(stages)} backbone stages trainable"


def train_mode(model: nn.Module) -> None:
    """model.train(), except BatchNorm layers whose parameters are frozen stay in eval mode."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


def build_optimizer(config: ImageTrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    head = list(head_module(config.model, model).parameters())
    backbone = list(backbone_parameters(config, model))
    scale = config.backbone_lr_scale if config.weights != "none" else 1.0
    groups = [
        {"params": head, "lr": config.lr, "name": "head"},
        {"params": backbone, "lr": config.lr * scale, "name": "backbone"},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
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


def build_scheduler(
    config: ImageTrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, steps_per_epoch * config.epochs)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, config.warmup_steps, config.schedule)
    )
