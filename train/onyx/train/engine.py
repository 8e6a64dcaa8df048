"""Training and evaluation loops: `train_one_epoch`, `evaluate`, and `fit` which drives them.

    result = fit(ImageTrainConfig(data_dir="data/pets", model="efficientnet_lite0",
                                  weights="imagenet", epochs=5, patience=2))

`fit` follows the transfer schedule (`onyx.train.schedule`), keeps the most accurate epoch as
`best.pt` and the latest as `last.pt` (see `onyx.train.checkpoint`), stops early after `patience`
epochs without improvement and restores the best weights at the end. Ctrl-C saves `last.pt` and
returns cleanly; `resume=last.pt` continues. With `--seed` a CPU run is deterministic: data order,
augmentation and dropout are reseeded from (seed, epoch) at every epoch, so a resumed run follows
the same path as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from google.protobuf import text_format
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from onyx.train import checkpoint as ckpt
from onyx.train import distributed
from onyx.train.augment import build_augment
from onyx.train.checkpoint import TrainState
from onyx.train.config import ImageTrainConfig, save_json
from onyx.train.data import (
    ImageFolderDataset,
    Split,
    class_counts,
    load_split,
    load_split_file,
    save_split,
)
from onyx.train.distributed import DistContext
from onyx.train.models import get_model
from onyx.train.preprocessing import image_preprocessing
from onyx.train.schedule import build_optimizer, build_scheduler, set_trainable, train_mode

log = logging.getLogger(__name__)

__all__ = [
    "EpochStats",
    "FitResult",
    "StepOptions",
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


@dataclass
class StepOptions:
    """How one optimizer step is taken."""

    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    # Present only for CUDA AMP (float16 needs loss scaling).
    scaler: torch.amp.GradScaler | None = None
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
    options = options or StepOptions()
    train_mode(model)  # frozen BatchNorm stays in eval mode (see onyx.train.schedule)
    # Sums stay on the device: a .item() per step would stall the GPU pipeline.
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    progress = tqdm(
        loader, desc=description, leave=False, dynamic_ncols=True, disable=not options.show_progress
    )
    for step, (images, targets) in enumerate(progress, start=1):
        images = images.to(device, non_blocking=True)  # (B, C, H, W)
        targets = targets.to(device, non_blocking=True)  # (B,)
        logits, loss = _step(model, images, targets, optimizer, options)
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
    images: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    options: StepOptions,
) -> tuple[torch.Tensor, torch.Tensor]:
    scaler = options.scaler
    with torch.autocast(images.device.type, dtype=torch.float16, enabled=scaler is not None):
        logits = model(images)  # (B, classes)
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
    for images, labels in loader:
        logits.append(model(images.to(device)).float().cpu())
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


# --- fit ----------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything one training run holds."""

    config: ImageTrainConfig
    context: DistContext
    split: Split
    model: nn.Module  # bare, not DDP-wrapped
    optimizer: torch.optim.Optimizer
    options: StepOptions
    train_loader: DataLoader[Any]
    val_loader: DataLoader[Any]
    out_dir: Path
    state: TrainState
    generator: torch.Generator
    preprocessing: str = ""
    # The model as trained (DDP-wrapped under torchrun), rebuilt when the trainable set changes.
    wrapped: nn.Module | None = None
    trainable: str = ""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(config: ImageTrainConfig) -> FitResult:
    """Train per `config`, keeping the most accurate epoch's checkpoint."""
    context = distributed.setup(config.device)
    try:
        run = prepare(config, context)
        return train_epochs(run)
    finally:
        distributed.teardown(context)


def prepare(config: ImageTrainConfig, context: DistContext) -> Run:
    seed_everything(config.seed)
    _cpu_settings(config, context)
    out_dir = Path(config.out_dir)
    resume = ckpt.load_raw(Path(config.resume)) if config.resume else None
    split = _split(config, out_dir, context, resume is not None)
    config.labels = split.labels
    spec = image_preprocessing(config)
    model = _model(config, len(split.labels), resume).to(context.device)
    optimizer = build_optimizer(config, model)
    generator = torch.Generator()
    train_set = ImageFolderDataset(split.train, spec, build_augment(config.augment, spec))
    train_loader = _loader(train_set, config, context, generator, train=True)
    val_loader = _loader(ImageFolderDataset(split.val, spec), config, context, generator, False)
    steps = len(train_loader) if not config.max_steps else min(config.max_steps, len(train_loader))
    options = _step_options(config, split, context, optimizer, steps)
    state = TrainState()
    if resume is not None:
        state = _restore(resume, optimizer, options)
    return Run(
        config,
        context,
        split,
        model,
        optimizer,
        options,
        train_loader,
        val_loader,
        out_dir,
        state,
        generator,
        text_format.MessageToString(spec),
    )


def _cpu_settings(config: ImageTrainConfig, context: DistContext) -> None:
    if config.threads:
        torch.set_num_threads(config.threads)
    if context.device.type == "cpu":
        # Denormal floats (common in frozen or freshly initialised nets) cost x3-10 on x86 CPUs;
        # flushing them to zero changes no result that matters.
        torch.set_flush_denormal(True)


def _split(config: ImageTrainConfig, out_dir: Path, context: DistContext, resuming: bool) -> Split:
    saved = Path(config.resume).parent / "split.json" if resuming else None
    if saved is not None and saved.is_file():
        log.info("resuming with the saved split %s", saved)
        return load_split_file(saved)
    split = load_split(Path(config.data_dir), config.val_fraction, config.seed)
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_split(split, out_dir / "split.json")
    return split


def _model(config: ImageTrainConfig, num_classes: int, resume: dict[str, Any] | None) -> nn.Module:
    in_channels = 1 if config.color_mode == "grayscale" else 3
    if resume is not None:  # the checkpoint has every weight: no pretrained file needed
        saved = resume["config"]["model"]
        if saved != config.model:
            raise ValueError(
                f"--resume {config.resume} is a {saved} checkpoint, not {config.model}"
            )
        model = get_model(config.model, num_classes, in_channels)
        model.load_state_dict(resume["model"])
        return model
    return get_model(config.model, num_classes, in_channels, config.weights)


def _step_options(
    config: ImageTrainConfig,
    split: Split,
    context: DistContext,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
) -> StepOptions:
    weight = None
    if config.class_weights == "balanced":
        counts = class_counts(split.train, len(split.labels)).astype(np.float64)
        weight = torch.tensor(
            counts.sum() / (len(counts) * np.maximum(counts, 1)),
            dtype=torch.float32,
            device=context.device,
        )
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    amp = config.amp and context.device.type == "cuda"
    return StepOptions(
        criterion=criterion,
        scheduler=build_scheduler(config, optimizer, steps_per_epoch),
        scaler=torch.amp.GradScaler("cuda") if amp else None,
        clip_grad_norm=config.clip_grad_norm,
        max_steps=config.max_steps,
        show_progress=context.is_main,
    )


def _loader(
    dataset: ImageFolderDataset,
    config: ImageTrainConfig,
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
        generator=generator,
        pin_memory=context.device.type == "cuda",
        drop_last=False,
    )


def _restore(
    checkpoint: dict[str, Any], optimizer: torch.optim.Optimizer, options: StepOptions
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
    if run.context.is_main:
        save_json(config.to_json(), run.out_dir / "config.json")
        _log_start(run)
    try:
        for epoch in range(state.epoch + 1, config.epochs + 1):
            _run_epoch(run, epoch)
            if config.patience and state.bad_epochs >= config.patience:
                log.info("early stop: no better val accuracy for %d epochs", state.bad_epochs)
                result.stopped_early = True
                break
    except KeyboardInterrupt:
        result.interrupted = True
        if run.context.is_main:
            _save(run, run.out_dir / ckpt.LAST, state.history[-1] if state.history else {})
            log.warning(
                "interrupted: saved %s; continue with --resume %s",
                result.last_checkpoint,
                result.last_checkpoint,
            )
    _finish(run, result)
    return result


def _log_start(run: Run) -> None:
    config, split = run.config, run.split
    log.info(
        "training %s (weights %s) on %s: %d classes, %d train / %d val images, %d skipped, "
        "input %dpx, device %s x%d",
        config.model,
        config.weights,
        config.data_dir,
        len(split.labels),
        len(split.train),
        len(split.val),
        len(split.skipped),
        config.image_size,
        run.context.device,
        run.context.world_size,
    )


def _start_epoch(run: Run, epoch: int) -> nn.Module:
    """Apply the transfer schedule and reseed; returns the model to train (DDP-wrapped)."""
    trainable = set_trainable(run.config, run.model, epoch)
    if run.wrapped is None or trainable != run.trainable:
        if run.context.is_main:
            log.info("epoch %d: %s", epoch, trainable)
        run.trainable = trainable
        run.wrapped = distributed.wrap(run.model, run.context)
    # Reseeding per epoch makes a resumed run identical to an uninterrupted one.
    seed_everything(run.config.seed * 1000 + epoch)
    run.generator.manual_seed(run.config.seed * 1000 + epoch)
    if isinstance(run.train_loader.sampler, DistributedSampler):
        run.train_loader.sampler.set_epoch(epoch)
    return run.wrapped


def _run_epoch(run: Run, epoch: int) -> None:
    config, state = run.config, run.state
    model = _start_epoch(run, epoch)
    started = time.monotonic()
    train = train_one_epoch(
        model,
        run.train_loader,
        run.optimizer,
        run.context.device,
        run.options,
        f"epoch {epoch}/{config.epochs}",
    )
    val = evaluate(run.model, run.val_loader, run.context.device)
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
            "epoch %d/%d  train loss %.4f acc %.3f  val loss %.4f acc %.3f  lr %.2g  (%.1fs)",
            epoch,
            config.epochs,
            train.loss,
            train.accuracy,
            val.loss,
            val.accuracy,
            record["lr"],
            record["seconds"],
        )
        _save(run, run.out_dir / ckpt.LAST, record)


def _keep_best(run: Run, record: dict[str, float]) -> None:
    state = run.state
    if record["val_accuracy"] > state.best_accuracy:
        state.best_accuracy = record["val_accuracy"]
        state.bad_epochs = 0
        if run.context.is_main:
            _save(run, run.out_dir / ckpt.BEST, record)
    else:
        state.bad_epochs += 1


def _save(run: Run, path: Path, metrics: dict[str, float]) -> None:
    state, options = run.state, run.options
    ckpt.save_checkpoint(
        path,
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": options.scheduler.state_dict() if options.scheduler else None,
            "scaler": options.scaler.state_dict() if options.scaler else None,
            "epoch": state.epoch,
            "config": run.config.to_json(),
            "metrics": metrics,
            "history": state.history,
            "best_accuracy": state.best_accuracy,
            "bad_epochs": state.bad_epochs,
            "labels": list(run.config.labels),
            "task": "image",
            "preprocessing": run.preprocessing,
        },
    )


def _finish(run: Run, result: FitResult) -> None:
    """Restore the best weights into the model and write metrics.json and the curves."""
    distributed.barrier(run.context)
    result.best_accuracy = run.state.best_accuracy
    result.model = run.model
    if run.state.history and result.best_checkpoint.is_file():
        run.model.load_state_dict(ckpt.load_raw(result.best_checkpoint)["model"])
    if not run.context.is_main:
        return
    save_json(
        {
            "history": run.state.history,
            "best_val_accuracy": run.state.best_accuracy,
            "stopped_early": result.stopped_early,
            "interrupted": result.interrupted,
        },
        run.out_dir / "metrics.json",
    )
    if run.state.history:
        from onyx.train.plots import plot_training_curves

        plot_training_curves(run.state.history, run.out_dir / "curves.png")
