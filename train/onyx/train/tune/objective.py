"""One trial: draw a config from the space, train it with the one engine, return the metric.

    objective = Objective(base_config, space, metric="accuracy", out_dir=Path("runs/tune/s"))
    study.optimize(objective, n_trials=1)

- The metric is measured on the validation split `onyx train` uses (the same `seed` and
  `val_fraction`, or the data's val/ folder); the task is wrapped so that a held-out test split
  is never loaded into a loader, let alone scored, during the search.
- After every epoch the validation metric goes to `trial.report`; when the pruner says so the
  trial stops with `optuna.TrialPruned`.
- The trial's exact config is kept as the user attribute `config` (what `onyx train --config`
  needs to reproduce it), its output folder as `out_dir`.
- Ctrl-C inside training: the engine stops and returns `interrupted`; the objective raises
  KeyboardInterrupt, so Optuna marks the trial failed and stops the study.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
from pathlib import Path
from typing import Any, Literal

import optuna
from torch import nn

from onyx.train.config import TrainConfig
from onyx.train.engine.distributed import DistContext
from onyx.train.engine.loop import FitResult, Run, fit, report
from onyx.train.engine.task import Checkpoint, Task, TaskData
from onyx.train.tasks.registry import task_for
from onyx.train.tune.space import Space, trial_config

log = logging.getLogger(__name__)

Metric = Literal["accuracy", "macro_f1"]
METRICS: tuple[Metric, ...] = ("accuracy", "macro_f1")
# Fields a trial's config file leaves out: `onyx train` takes them from its own arguments.
_NOT_IN_CONFIG = ("data", "out_dir", "resume")


class WithoutTest:
    """A task whose data has no test split: the search must not look at it."""

    def __init__(self, task: Task) -> None:
        self._task = task
        self.kind = task.kind

    @property
    def config(self) -> TrainConfig:
        return self._task.config

    def load_data(self, context: DistContext, resume: Checkpoint | None) -> TaskData:
        return dataclasses.replace(self._task.load_data(context, resume), test=None)

    def build_model(self, data: TaskData, resume: Checkpoint | None) -> nn.Module:
        return self._task.build_model(data, resume)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return self._task.param_groups(model)

    def start_epoch(self, model: nn.Module, epoch: int) -> str:
        return self._task.start_epoch(model, epoch)

    def checkpoint_extras(self, model: nn.Module) -> dict[str, Any]:
        return self._task.checkpoint_extras(model)


def config_table(config: TrainConfig) -> dict[str, Any]:
    """The config as `onyx train --config` reads it (JSON types, no data/out_dir/resume)."""
    table = config.to_json()
    for name in _NOT_IN_CONFIG:
        table.pop(name, None)
    return table


def epoch_metric(run: Run, record: dict[str, float], metric: Metric) -> float:
    if metric == "accuracy":
        return float(record["val_accuracy"])
    labels = list(run.data.labels)
    scores = report(run.model, run.loaders["val"], labels, run.context.device)
    return float(scores["macro"]["f1"])


def final_metric(result: FitResult, metric: Metric) -> float:
    """The metric of the weights a trial ends on (the best validation accuracy's epoch), as
    `onyx train` reports it: best_val_accuracy, or the val report's macro F1 (metrics.json)."""
    if metric == "accuracy":
        return float(result.best_accuracy)
    if result.report is None:
        return math.nan
    return float(result.report["macro"]["f1"])


class Objective:
    """The callable `study.optimize` runs once per trial."""

    def __init__(self, base: TrainConfig, space: Space, metric: Metric, out_dir: Path) -> None:
        self.base, self.space, self.metric, self.out_dir = base, space, metric, out_dir
        # The trial this process is running (Ctrl-C cleanup marks it failed if Optuna did not).
        self.current: optuna.trial.Trial | None = None

    def __call__(self, trial: optuna.trial.Trial) -> float:
        self.current = trial
        out = self.out_dir / f"trial-{trial.number:04d}"
        config = dataclasses.replace(trial_config(trial, self.base, self.space), out_dir=out)
        trial.set_user_attr("config", config_table(config))
        trial.set_user_attr("out_dir", str(out.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        params = format_params(trial.params)
        try:
            result = fit(WithoutTest(task_for(config)), [self._reporter(trial)])
        except optuna.TrialPruned as exc:
            log.info("trial %d pruned at %s: %s", trial.number, exc, params)
            raise
        if result.interrupted:
            log.warning("trial %d interrupted: %s", trial.number, params)
            raise KeyboardInterrupt
        value = final_metric(result, self.metric)
        log.info("trial %d done: %s %.4f: %s", trial.number, self.metric, value, params)
        return value

    def _reporter(self, trial: optuna.trial.Trial) -> Any:
        def report_epoch(run: Run, record: dict[str, float]) -> None:
            epoch = int(record["epoch"])
            value = epoch_metric(run, record, self.metric)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch} ({self.metric} {value:.4f})")

        return report_epoch


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())  # fmt: skip
