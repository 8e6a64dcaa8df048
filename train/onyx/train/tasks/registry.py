"""The task for a config: `ImageTrainConfig` -> `ImageTask`, `TextTrainConfig` -> `TextTask`.

    result = fit(task_for(config))      # onyx.train.engine.loop.fit takes any `Task`

The engine knows no concrete task; its callers (the commands, tune, the demo) turn a config into
one here.
"""

from __future__ import annotations

from onyx.train.config import ImageTrainConfig, TextTrainConfig, TrainConfig
from onyx.train.engine.task import Task
from onyx.train.tasks.image.task import ImageTask
from onyx.train.tasks.text.task import TextTask


def task_for(config: TrainConfig) -> Task:
    if isinstance(config, ImageTrainConfig):
        return ImageTask(config)
    if isinstance(config, TextTrainConfig):
        return TextTask(config)
    raise TypeError(f"no task for {type(config).__name__}; use ImageTrainConfig or TextTrainConfig")
