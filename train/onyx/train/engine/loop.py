"""The one training engine: `train_one_epoch`, `evaluate`, `predict`, and `fit` which drives them.

    task = task_for(ImageTrainConfig(data=Path("data/pets"), model="efficientnet_lite0",
                                     weights="imagenet", epochs=5, patience=2))
    result = fit(task)      # task_for: onyx.train.tasks.registry; any `Task` will do

What the data and model are comes from the `Task` (`onyx.train.engine.task`), which also carries
the run's config; the engine knows no concrete task. Everything else is here and the same for all:

- state and checkpoints (`onyx.train.engine.checkpoint`): `last.pt` every epoch, `best.pt` at
  every better validation accuracy, both written atomically; `config.json` (the resolved
  config), metrics.json (history, validation and test reports), curves.png and confusion.png in
  `out_dir`;
- early stopping after `patience` epochs without improvement; the best weights are restored at
  the end either way;
- Ctrl-C (SIGINT) leaves a `last.pt` to resume from exactly (the last finished epoch's, or the
  starting state) and returns with `interrupted` set; the CLI then exits with 130;
- `resume=last.pt` continues exactly: weights, optimizer, schedule, loss scaler and history;
- reseeding from (seed, epoch) at every epoch: data order, augmentation and dropout are the same
  whether or not a run was interrupted, so a CPU run with a seed is reproducible;
- `callbacks`: called after every epoch with the run and that epoch's record; an exception one
  raises ends the run (`onyx.train.tune` reports the validation metric to Optuna and stops a
  pruned trial this way);
- DDP under torchrun (`onyx.train.engine.distributed`; gloo on CPU), AMP on CUDA (float16 with loss
  scaling, or bfloat16), the warm-up + decay schedule per optimizer step, gradient clipping,
  `max_steps` per epoch.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from onyx.train.config import TrainConfig, save_json
from onyx.train.engine import checkpoint as ckpt
from onyx.train.engine import distributed
from onyx.train.engine.checkpoint import TrainState
from onyx.train.engine.distributed import DistContext
from onyx.train.engine.metrics import classification_report, positive_index
from onyx.train.engine.schedule import build_optimizer, build_scheduler, train_mode
from onyx.train.engine.task import Checkpoint, Task, TaskData

log = logging.getLogger(__name__)

__all__ = [
    "AmpPolicy",
    "EpochCallback",
    "EpochStats",
    "FitResult",
    "StepOptions",
    "amp_policy",
    "evaluate",
    "fit",
    "predict",
    "train_one_epoch",
]


@dataclass
class EpochStats:
    loss: float
    accuracy: float


@dataclass
class FitResult:
    best_checkpoint: Path
    best_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    last_checkpoint: Path | None = None
    stopped_early: bool = False
    interrupted: bool = False
    # The trained model with the best weights restored.
    model: nn.Module | None = None
    # classification_report of the best weights on the validation (and test) data.
    report: dict[str, Any] | None = None
    test_report: dict[str, Any] | None = None


@dataclass(frozen=True)
class AmpPolicy:
    # Autocast to this type; None: full float32.
    dtype: torch.dtype | None = None
    # float16 needs loss scaling (a GradScaler) so small gradients do not flush to zero.
    scale: bool = False


def amp_policy(config: TrainConfig, device: torch.device) -> AmpPolicy:
    """Mixed precision only on CUDA: CPU autocast is slower than float32 for these models."""
    if not config.amp or device.type != "cuda":
        return AmpPolicy()
    dtype = torch.float16 if config.amp_dtype == "float16" else torch.bfloat16
    return AmpPolicy(dtype, scale=dtype == torch.float16)


@dataclass
class StepOptions:
    """How one optimizer step is taken."""

    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    # Present only for float16 autocast.
    scaler: torch.amp.GradScaler | None = None
    # Autocast type (CUDA AMP); None: off.
    autocast_dtype: torch.dtype | None = None
    clip_grad_norm: float = 0.0
    max_steps: int = 0
    show_progress: bool = True


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    options: StepOptions | None = None,
    description: str = "train",
) -> EpochStats:
    """One pass over `loader`'s (inputs, targets) batches (at most `options.max_steps`)."""
    options = options or StepOptions()
    train_mode(model)  # frozen BatchNorm stays in eval mode (see onyx.train.tasks.image.transfer)
    # Sums stay on the device: a .item() per step would stall the GPU pipeline.
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    progress = tqdm(
        loader, desc=description, leave=False, dynamic_ncols=True, disable=not options.show_progress
    )
    for step, (inputs, targets) in enumerate(progress, start=1):
        inputs = inputs.to(device, non_blocking=True)  # image (B, C, H, W); text (B, T) ids
        targets = targets.to(device, non_blocking=True)  # (B,)
        logits, loss = _step(model, inputs, targets, optimizer, options)
        total_loss += loss.detach() * len(targets)
        correct += (logits.detach().argmax(1) == targets).sum()
        seen += len(targets)
        if options.show_progress and step % 10 == 0:  # float() syncs with the GPU: only to show
            progress.set_postfix(loss=f"{float(total_loss) / seen:.4f}")
        if options.max_steps and step >= options.max_steps:
            break
    return EpochStats(float(total_loss) / max(seen, 1), int(correct) / max(seen, 1))


def _step(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    options: StepOptions,
) -> tuple[torch.Tensor, torch.Tensor]:
    scaler, dtype = options.scaler, options.autocast_dtype
    with torch.autocast(inputs.device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(inputs)  # (B, classes)
        loss = options.criterion(logits.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    else:
        loss.backward()
    if options.clip_grad_norm > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, options.clip_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if options.scheduler is not None:
        options.scheduler.step()
    return logits, loss


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader[Any], device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, classes), targets (N,)) over the whole loader, in eval mode."""
    model.eval()
    logits, targets = [], []
    for inputs, labels in loader:
        logits.append(model(inputs.to(device)).float().cpu())
        targets.append(labels)
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def evaluate(model: nn.Module, loader: DataLoader[Any], device: torch.device) -> EpochStats:
    logits, targets = predict(model, loader, device)
    if not len(targets):
        return EpochStats(math.nan, math.nan)
    loss = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets))
    return EpochStats(float(loss), float((logits.argmax(1) == targets).mean()))


def report(
    model: nn.Module,
    loader: DataLoader[Any],
    labels: list[str],
    device: torch.device,
    positive_class: str = "",
) -> dict[str, Any]:
    """classification_report (accuracy, per class and macro P/R/F1, confusion, ROC-AUC)."""
    logits, targets = predict(model, loader, device)
    probabilities = torch.softmax(torch.from_numpy(logits), 1).numpy()
    return classification_report(targets, probabilities, labels, positive_class)


# --- fit ----------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything one training run holds."""

    task: Task
    context: DistContext
    data: TaskData
    model: nn.Module  # bare, not DDP-wrapped
    optimizer: torch.optim.Optimizer
    options: StepOptions
    loaders: dict[str, DataLoader[Any]]
    state: TrainState
    generator: torch.Generator
    # What Ctrl-C writes as last.pt before this run finished an epoch: the starting state.
    start: Checkpoint
    # The model as trained (DDP-wrapped under torchrun), rebuilt when the trainable set changes.
    wrapped: nn.Module | None = None
    trainable: str = ""
    saved_epoch: int = -1  # the epoch this run last wrote to last.pt
    callbacks: list[EpochCallback] = field(default_factory=list)

    @property
    def config(self) -> TrainConfig:
        return self.task.config

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)


# Called after each epoch with the run and the epoch's record (epoch, val_accuracy, ...).
EpochCallback = Callable[[Run, dict[str, float]], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(task: Task, callbacks: Sequence[EpochCallback] = ()) -> FitResult:
    """Train `task` per its config (`task.config`), keeping the best epoch's weights."""
    context = distributed.setup(task.config.device)
    try:
        run = prepare(task, context)
        run.callbacks = list(callbacks)
        return train_epochs(run)
    finally:
        distributed.teardown(context)


def prepare(task: Task, context: DistContext) -> Run:
    config = task.config
    seed_everything(config.seed)
    _cpu_settings(config, context)
    resume = _load_resume(task)
    data = task.load_data(context, resume)
    config.labels = tuple(data.labels)
    if context.is_main:
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    model = task.build_model(data, resume).to(context.device)
    optimizer = build_optimizer(config, task.param_groups(model))
    generator = torch.Generator()
    loaders = {"train": _loader(data.train, config, data, context, generator, train=True)}
    for name, dataset in (("val", data.val), ("test", data.test)):
        if dataset is not None:
            loaders[name] = _loader(dataset, config, data, context, generator, train=False)
    steps = len(loaders["train"])
    steps = min(config.max_steps, steps) if config.max_steps else steps
    options = step_options(config, data, context, optimizer, steps)
    state = _restore(resume, optimizer, options) if resume is not None else TrainState()
    run = Run(task, context, data, model, optimizer, options, loaders, state, generator, {})
    if context.is_main:  # only rank 0 writes checkpoints
        # A copy: the optimizer adopts the loaded tensors and steps them in place, so a Ctrl-C
        # before the first epoch ends would otherwise save half an epoch's optimizer state.
        run.start = copy.deepcopy(resume) if resume is not None else _snapshot(run)
        if resume is not None:
            _carry_best(Path(config.resume), Path(config.out_dir))
    return run


def _carry_best(resumed: Path, out_dir: Path) -> None:
    """Resuming into another --out-dir: bring the best checkpoint along, so the run still ends
    on the best weights (and names a best.pt that exists) when no later epoch beats it."""
    source, target = resumed.parent / ckpt.BEST, out_dir / ckpt.BEST
    if source.is_file() and not target.exists():
        shutil.copy2(source, target)


def _load_resume(task: Task) -> Checkpoint | None:
    if not task.config.resume:
        return None
    resume = ckpt.load_checkpoint(Path(task.config.resume))
    if resume["task"] != task.kind:
        raise ValueError(f"--resume {task.config.resume} is a {resume['task']} checkpoint")
    if resume.get("optimizer") is None:
        raise ValueError(f"--resume {task.config.resume} holds no optimizer state; use last.pt")
    return resume


def _cpu_settings(config: TrainConfig, context: DistContext) -> None:
    if config.threads:
        torch.set_num_threads(config.threads)
    if context.device.type == "cpu":
        # Denormal floats (common in frozen or freshly initialised nets) cost x3-10 on x86 CPUs;
        # flushing them to zero changes no result that matters.
        torch.set_flush_denormal(True)


def step_options(
    config: TrainConfig,
    data: TaskData,
    context: DistContext,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
) -> StepOptions:
    weight = None
    if config.class_weights == "balanced":
        counts = np.bincount(np.asarray(data.train_targets), minlength=len(data.labels))
        weight = torch.tensor(
            counts.sum() / (len(counts) * np.maximum(counts, 1)),
            dtype=torch.float32,
            device=context.device,
        )
    amp = amp_policy(config, context.device)
    return StepOptions(
        criterion=nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing),
        scheduler=build_scheduler(config, optimizer, steps_per_epoch),
        scaler=torch.amp.GradScaler(context.device.type) if amp.scale else None,
        autocast_dtype=amp.dtype,
        clip_grad_norm=config.clip_grad_norm,
        max_steps=config.max_steps,
        show_progress=context.is_main,
    )


def _loader(
    dataset: Dataset[Any],
    config: TrainConfig,
    data: TaskData,
    context: DistContext,
    generator: torch.Generator,
    train: bool,
) -> DataLoader[Any]:
    sampler: DistributedSampler[Any] | None = None
    if context.enabled and train:
        sampler = DistributedSampler(dataset, context.world_size, context.rank, seed=config.seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=data.collate,
        generator=generator,
        pin_memory=context.device.type == "cuda",
        drop_last=False,
    )


def _restore(
    checkpoint: Checkpoint, optimizer: torch.optim.Optimizer, options: StepOptions
) -> TrainState:
    optimizer.load_state_dict(checkpoint["optimizer"])
    if options.scheduler is not None and checkpoint.get("scheduler"):
        options.scheduler.load_state_dict(checkpoint["scheduler"])
    if options.scaler is not None and checkpoint.get("scaler"):
        options.scaler.load_state_dict(checkpoint["scaler"])
    state = ckpt.state_of(checkpoint)
    log.info("resumed after epoch %d (best val accuracy %.3f)", state.epoch, state.best_accuracy)
    return state


def train_epochs(run: Run) -> FitResult:
    config, state = run.config, run.state
    result = FitResult(
        run.out_dir / ckpt.BEST, state.best_accuracy, state.history, run.out_dir / ckpt.LAST
    )
    # A misspelt --positive-class fails now, not after the last epoch.
    positive_index(list(run.data.labels), config.positive_class)
    if run.context.is_main:
        save_json(config.to_json(), run.out_dir / "config.json")
        _log_start(run)
    try:
        for epoch in range(state.epoch + 1, config.epochs + 1):
            _run_epoch(run, epoch)
            if config.patience and state.stale_epochs >= config.patience:
                log.info("early stop: no better val accuracy for %d epochs", state.stale_epochs)
                result.stopped_early = True
                break
    except KeyboardInterrupt:
        result.interrupted = True
        _save_on_interrupt(run)
    _finish(run, result)
    return result


def _save_on_interrupt(run: Run) -> None:
    """Leave a last.pt that resumes exactly: the weights of a half-trained epoch would not.
    After a finished epoch that is the last.pt already written; before one, the start state."""
    if not run.context.is_main:
        return
    path = run.out_dir / ckpt.LAST
    if run.saved_epoch < 0:
        ckpt.save_checkpoint(path, run.start)
    epoch = run.saved_epoch if run.saved_epoch >= 0 else int(run.start["epoch"])
    log.warning("interrupted: %s holds epoch %d; continue with --resume %s", path, epoch, path)


def _log_start(run: Run) -> None:
    config, data = run.config, run.data
    log.info(
        "training %s: %s on %s: %d classes, %d train / %d val examples, device %s x%d",
        run.task.kind,
        data.summary,
        config.data,
        len(data.labels),
        len(data.train),  # type: ignore[arg-type]
        len(data.val),  # type: ignore[arg-type]
        run.context.device,
        run.context.world_size,
    )


def _start_epoch(run: Run, epoch: int) -> nn.Module:
    """Apply the task's schedule and reseed; returns the model to train (DDP-wrapped)."""
    trainable = run.task.start_epoch(run.model, epoch)
    if run.wrapped is None or trainable != run.trainable:
        if run.context.is_main:
            log.info("epoch %d: %s", epoch, trainable)
        run.trainable = trainable
        run.wrapped = distributed.wrap(run.model, run.context)
    # Reseeding per epoch makes a resumed run identical to an uninterrupted one.
    seed_everything(run.config.seed * 1000 + epoch)
    run.generator.manual_seed(run.config.seed * 1000 + epoch)
    sampler = run.loaders["train"].sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    return run.wrapped


def _run_epoch(run: Run, epoch: int) -> None:
    config, state = run.config, run.state
    model = _start_epoch(run, epoch)
    started = time.monotonic()
    device = run.context.device
    description = f"epoch {epoch}/{config.epochs}"
    train = train_one_epoch(model, run.loaders["train"], run.optimizer, device, run.options,
                            description)  # fmt: skip
    val = evaluate(run.model, run.loaders["val"], device)
    record = {
        "epoch": epoch,
        "train_loss": train.loss,
        "train_accuracy": train.accuracy,
        "val_loss": val.loss,
        "val_accuracy": val.accuracy,
        "lr": run.optimizer.param_groups[0]["lr"],
        "seconds": time.monotonic() - started,
    }
    state.history.append(record)
    state.epoch = epoch
    _keep_best(run, record)
    if run.context.is_main:
        log.info(
            "%s  train loss %.4f acc %.3f  val loss %.4f acc %.3f  lr %.2g  (%.1fs)",
            description,
            train.loss,
            train.accuracy,
            val.loss,
            val.accuracy,
            record["lr"],
            record["seconds"],
        )
        _save(run, run.out_dir / ckpt.LAST, record)
        run.saved_epoch = epoch
    for callback in run.callbacks:
        callback(run, record)


def _keep_best(run: Run, record: dict[str, float]) -> None:
    state = run.state
    if record["val_accuracy"] > state.best_accuracy:
        state.best_accuracy = record["val_accuracy"]
        state.stale_epochs = 0
        if run.context.is_main:
            _save(run, run.out_dir / ckpt.BEST, record)
    else:
        state.stale_epochs += 1


def _parts(run: Run, metrics: dict[str, float]) -> Checkpoint:
    """The checkpoint schema of `onyx.train.engine.checkpoint` (format 2), without the format
    keys."""
    options = run.options
    return {
        "task": run.task.kind,
        "model": run.model.state_dict(),
        "labels": list(run.data.labels),
        "config": run.config.to_json(),
        "metrics": metrics,
        "epoch": run.state.epoch,
        "state": run.state.to_json(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": options.scheduler.state_dict() if options.scheduler else None,
        "scaler": options.scaler.state_dict() if options.scaler else None,
        **run.task.checkpoint_extras(run.model),
    }


def _save(run: Run, path: Path, metrics: dict[str, float]) -> None:
    ckpt.save_checkpoint(path, _parts(run, metrics))


def _snapshot(run: Run) -> Checkpoint:
    """The starting state, copied: training changes the live tensors in place."""
    parts = _parts(run, {})
    parts["model"] = {k: v.detach().to("cpu", copy=True) for k, v in parts["model"].items()}
    return copy.deepcopy(parts)


def _finish(run: Run, result: FitResult) -> None:
    """Restore the best weights, report on validation (and test), write metrics and plots."""
    distributed.barrier(run.context)
    result.best_accuracy = run.state.best_accuracy
    result.model = run.model
    if not (run.state.history and result.best_checkpoint.is_file()):
        return
    best = ckpt.load_checkpoint(result.best_checkpoint)
    run.model.load_state_dict(best["model"])
    if not run.context.is_main:
        return
    if not result.interrupted:  # Ctrl-C asked to stop: no more passes over the data
        labels, device = list(run.data.labels), run.context.device
        positive = run.config.positive_class
        result.report = report(run.model, run.loaders["val"], labels, device, positive)
        if "test" in run.loaders:
            result.test_report = report(run.model, run.loaders["test"], labels, device, positive)
    _write_metrics(run, result, int(best["epoch"]))


def _write_metrics(run: Run, result: FitResult, best_epoch: int) -> None:
    save_json(
        {
            "history": run.state.history,
            "best_epoch": best_epoch,
            "best_val_accuracy": run.state.best_accuracy,
            "stopped_early": result.stopped_early,
            "interrupted": result.interrupted,
            "val": result.report,
            "test": result.test_report,
        },
        run.out_dir / "metrics.json",
    )
    if not run.config.plots:
        return
    from onyx.train.engine.plots import (  # matplotlib: slow
        plot_confusion_matrix,
        plot_training_curves,
    )

    plot_training_curves(run.state.history, run.out_dir / "curves.png")
    if result.report is not None:
        matrix = np.asarray(result.report["confusion_matrix"])
        plot_confusion_matrix(matrix, list(run.data.labels), run.out_dir / "confusion.png")
