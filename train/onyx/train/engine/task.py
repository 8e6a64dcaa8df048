"""What the engine needs from a task (image, text): the `Task` protocol.

The engine (`onyx.train.engine.loop`) owns the loop, the state, checkpoints, resume, early stopping,
Ctrl-C, DDP, AMP, the schedule and the reports. A task knows its data and its model:

    data = task.load_data(context, resume)        # datasets of (input, target) pairs + labels
    model = task.build_model(data, resume)        # resume's weights loaded when resuming
    groups = task.param_groups(model)             # optimizer parameter groups
    task.start_epoch(model, epoch)                # freeze/unfreeze; a new answer re-wraps DDP
    task.checkpoint_extras(model)                 # what export needs to rebuild the model

A batch is `(inputs, targets)`: the model maps `inputs` to (B, classes) logits, trained with
cross-entropy against the (B,) int64 `targets`. The task carries its run's config (`config`);
`fit(task)` takes any object with these members. Implementations, which the engine never imports:
`onyx.train.tasks.image.task.ImageTask` and `onyx.train.tasks.text.task.TextTask`, picked by
`onyx.train.tasks.registry.task_for(config)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn
from torch.utils.data import Dataset

from onyx.train.config import TrainConfig
from onyx.train.engine.distributed import DistContext

Checkpoint = dict[str, Any]


@dataclass
class TaskData:
    labels: list[str]
    train: Dataset[Any]
    val: Dataset[Any]
    # Class index of every training example (for class weights).
    train_targets: Sequence[int]
    test: Dataset[Any] | None = None
    # Merges dataset items into a batch; None: torch's default collation.
    collate: Callable[[Any], Any] | None = None
    # One line for the start-of-training log ("small_cnn (weights none), 32px, 2 skipped").
    summary: str = ""


class Task(Protocol):
    # Written into checkpoints as "task"; export and resume dispatch on it.
    kind: str

    @property
    def config(self) -> TrainConfig: ...

    def load_data(self, context: DistContext, resume: Checkpoint | None) -> TaskData: ...

    def build_model(self, data: TaskData, resume: Checkpoint | None) -> nn.Module: ...

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]: ...

    def start_epoch(self, model: nn.Module, epoch: int) -> str: ...

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]: ...
