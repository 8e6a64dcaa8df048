"""Training and evaluation loops: `train_one_epoch`, `evaluate`, and `fit` which drives them.

`fit` keeps the most accurate epoch as `best.pt` ({model, optimizer, scheduler, epoch, config,
metrics, labels, preprocessing}) with the resolved config beside it as `config.json`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from google.protobuf import text_format
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.config import ImageTrainConfig, save_json
from onyx.train.data import ImageFolderDataset, load_split
from onyx.train.models import get_model

log = logging.getLogger(__name__)

_INTERPOLATION = {
    "nearest": pb.INTERPOLATION_NEAREST,
    "bilinear": pb.INTERPOLATION_BILINEAR,
    "bicubic": pb.INTERPOLATION_BICUBIC,
    "lanczos": pb.INTERPOLATION_LANCZOS,
}


@dataclass
class EpochStats:
    loss: float
    accuracy: float


@dataclass
class FitResult:
    best_checkpoint: Path
    best_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch sees no CUDA device")
    return torch.device(requested)


def image_preprocessing(config: ImageTrainConfig) -> pb.ImagePreprocessing:
    """The serving transform for this run; it travels into the exported model's config."""
    grayscale = config.color_mode == "grayscale"
    channels = 1 if grayscale else 3
    return pb.ImagePreprocessing(
        resize_shorter=config.resize_shorter,
        crop_height=config.image_size,
        crop_width=config.image_size,
        interpolation=_INTERPOLATION[config.interpolation],
        color_mode=pb.COLOR_MODE_GRAYSCALE if grayscale else pb.COLOR_MODE_RGB,
        channel_order=pb.CHANNEL_ORDER_RGB,
        layout=pb.LAYOUT_NCHW,
        mean=list(config.mean[:channels]),
        std=list(config.std[:channels]),
    )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    description: str = "train",
    max_steps: int = 0,
) -> EpochStats:
    model.train()
    criterion = nn.CrossEntropyLoss()
    total_loss, correct, seen = 0.0, 0, 0
    progress = tqdm(loader, desc=description, leave=False, dynamic_ncols=True)
    for step, (images, targets) in enumerate(progress, start=1):
        images, targets = images.to(device), targets.to(device)
        logits = model(images)  # (B, classes)
        loss = criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(targets)
        correct += int((logits.argmax(1) == targets).sum())
        seen += len(targets)
        progress.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
        if max_steps and step >= max_steps:
            break
    return EpochStats(total_loss / max(seen, 1), correct / max(seen, 1))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader[Any], device: torch.device) -> EpochStats:
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct, seen = 0.0, 0, 0
    for images, targets in loader:
        images, targets = images.to(device), targets.to(device)
        logits = model(images)
        total_loss += float(criterion(logits, targets))
        correct += int((logits.argmax(1) == targets).sum())
        seen += len(targets)
    return EpochStats(total_loss / max(seen, 1), correct / max(seen, 1))


def fit(config: ImageTrainConfig) -> FitResult:
    """Train per `config`, keeping the most accurate epoch's checkpoint."""
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    split = load_split(Path(config.data_dir), config.val_fraction, config.seed)
    config.labels = split.labels
    spec = image_preprocessing(config)
    train_loader = _loader(ImageFolderDataset(split.train, spec), config, shuffle=True)
    val_loader = _loader(ImageFolderDataset(split.val, spec), config, shuffle=False)
    in_channels = 1 if config.color_mode == "grayscale" else 3
    model = get_model(config.model, len(split.labels), in_channels).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_json(config.to_json(), out_dir / "config.json")
    log.info(
        "training %s on %s: %d classes, %d train / %d val images, device %s",
        config.model,
        config.data_dir,
        len(split.labels),
        len(split.train),
        len(split.val),
        device,
    )
    result = FitResult(out_dir / "best.pt", -math.inf)
    steps_per_epoch = config.max_steps or 0
    for epoch in range(1, config.epochs + 1):
        started = time.monotonic()
        train = train_one_epoch(
            model,
            train_loader,
            optimizer,
            device,
            f"epoch {epoch}/{config.epochs}",
            steps_per_epoch,
        )
        val = evaluate(model, val_loader, device)
        record = {
            "epoch": epoch,
            "train_loss": train.loss,
            "train_accuracy": train.accuracy,
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
        }
        result.history.append(record)
        log.info(
            "epoch %d/%d  train loss %.4f acc %.3f  val loss %.4f acc %.3f  (%.1fs)",
            epoch,
            config.epochs,
            train.loss,
            train.accuracy,
            val.loss,
            val.accuracy,
            time.monotonic() - started,
        )
        if val.accuracy > result.best_accuracy:
            result.best_accuracy = val.accuracy
            save_checkpoint(result.best_checkpoint, model, optimizer, epoch, config, spec, record)
    save_json(
        {"history": result.history, "best_val_accuracy": result.best_accuracy},
        out_dir / "metrics.json",
    )
    return result


def _loader(
    dataset: ImageFolderDataset, config: ImageTrainConfig, shuffle: bool
) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        generator=generator,
    )


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    config: ImageTrainConfig,
    spec: pb.ImagePreprocessing,
    metrics: dict[str, float],
) -> None:
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None,
            "epoch": epoch,
            "config": config.to_json(),
            "metrics": metrics,
            "labels": list(config.labels),
            "task": "image",
            "preprocessing": text_format.MessageToString(spec),
        },
        path,
    )
