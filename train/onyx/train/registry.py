"""The task for a config: `ImageTrainConfig` -> `ImageTask`, `TextTrainConfig` -> `TextTask`."""

from __future__ import annotations

from onyx.train.config import ImageTrainConfig, TextTrainConfig, TrainConfig
from onyx.train.image.task import ImageTask
from onyx.train.task import Task
from onyx.train.text.task import TextTask


def task_for(config: TrainConfig) -> Task:
    if isinstance(config, ImageTrainConfig):
        return ImageTask(config)
    if isinstance(config, TextTrainConfig):
        return TextTask(config)
    raise TypeError(f"no task for {type(config).__name__}; use ImageTrainConfig or TextTrainConfig")
