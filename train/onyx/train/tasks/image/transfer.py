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
is the usual cause of a frozen backbone "forgetting". With pretrained weights this holds for the
unfrozen stages too (their BatchNorm scale and shift still learn), unless `train_batchnorm` is on:
measured on the photo set (docs/transfer.md, "Freeze, then unfreeze"), unfreezing with BatchNorm
in train mode drops validation accuracy below the frozen best; kept in eval mode it ends at or
above it.
Without pretrained weights there are no statistics to keep: BatchNorm trains. The engine's
`onyx.train.engine.schedule.train_mode(model)` applies this instead of `model.train()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import nn

from onyx.train.config import ImageTrainConfig
from onyx.train.engine.schedule import KEEP_STATISTICS
from onyx.train.tasks.image.models import backbone_stages, head_module


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
    keep_statistics(config, model)
    kept = " (BatchNorm statistics kept)" if trainable and getattr(
        first_batchnorm(model), KEEP_STATISTICS, False) else ""  # fmt: skip
    if trainable == len(stages):
        return f"all layers trainable{kept}"
    return f"head + last {trainable} of {len(stages)} backbone stages trainable{kept}"


def first_batchnorm(model: nn.Module) -> nn.Module | None:
    return next(
        (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)), None
    )


def param_groups(config: ImageTrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """Head at lr, backbone at lr * backbone_lr_scale (pretrained weights only)."""
    head = list(head_module(config.model, model).parameters())
    backbone = list(backbone_parameters(config, model))
    scale = config.backbone_lr_scale if config.weights != "none" else 1.0
    return [
        {"params": head, "lr": config.lr, "name": "head"},
        {"params": backbone, "lr": config.lr * scale, "name": "backbone"},
    ]


def keep_statistics(config: ImageTrainConfig, model: nn.Module) -> None:
    """Mark the backbone's BatchNorm layers to stay in eval mode (pretrained, by default)."""
    keep = config.weights != "none" and not config.train_batchnorm
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            setattr(module, KEEP_STATISTICS, keep)
