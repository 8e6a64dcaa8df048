"""Unfreezing a pretrained body keeps its BatchNorm statistics unless asked to train them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from onyx.train.config import ImageTrainConfig
from onyx.train.engine.schedule import build_optimizer, train_mode
from onyx.train.tasks.image.models import get_model
from onyx.train.tasks.image.transfer import param_groups, set_trainable


def _pretrained_file(tmp_path: Path) -> Path:
    """A small_cnn state dict standing in for published weights (a real file, loaded strictly)."""
    torch.manual_seed(0)
    path = tmp_path / "weights.pt"
    torch.save(get_model("small_cnn", 3).state_dict(), path)
    return path


def _step_unfrozen(config: ImageTrainConfig) -> tuple[nn.Module, list[torch.Tensor]]:
    """One optimizer step in the unfrozen phase; returns the model and the BN means before it."""
    model = get_model(config.model, 3, 3, config.weights)
    assert "all layers trainable" in set_trainable(config, model, epoch=2)
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in batchnorms]  # type: ignore[union-attr]
    optimizer = build_optimizer(config, param_groups(config, model))
    train_mode(model)
    inputs = torch.randn(4, 3, 16, 16) * 3 + 1  # statistics unlike the stored ones
    loss = nn.functional.cross_entropy(model(inputs), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    return model, before


def test_pretrained_batchnorm_keeps_its_statistics_when_unfrozen(tmp_path: Path) -> None:
    config = ImageTrainConfig(data=tmp_path, weights=str(_pretrained_file(tmp_path)),
                              freeze_epochs=1, model="small_cnn")  # fmt: skip
    model, before = _step_unfrozen(config)
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(not m.training for m in batchnorms)
    for module, mean in zip(batchnorms, before, strict=True):
        assert torch.equal(module.running_mean, mean)  # type: ignore[arg-type]
    # Their scale and shift still learn: the body is unfrozen.
    assert all(m.weight.grad is not None for m in batchnorms)


@pytest.mark.parametrize("train_batchnorm", [True, False])
def test_statistics_train_with_the_option_or_without_pretrained_weights(
    tmp_path: Path, train_batchnorm: bool
) -> None:
    weights = str(_pretrained_file(tmp_path)) if train_batchnorm else "none"
    config = ImageTrainConfig(data=tmp_path, weights=weights, freeze_epochs=1,
                              model="small_cnn", train_batchnorm=train_batchnorm)  # fmt: skip
    model, before = _step_unfrozen(config)
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.training for m in batchnorms)
    changed = [not torch.equal(m.running_mean, b) for m, b in zip(batchnorms, before, strict=True)]  # type: ignore[arg-type]
    assert all(changed)


def test_frozen_phase_keeps_statistics_either_way(tmp_path: Path) -> None:
    config = ImageTrainConfig(data=tmp_path, weights=str(_pretrained_file(tmp_path)),
                              freeze_epochs=1, model="small_cnn", train_batchnorm=True)  # fmt: skip
    model = get_model("small_cnn", 3, 3, config.weights)
    set_trainable(config, model, epoch=1)
    train_mode(model)
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
