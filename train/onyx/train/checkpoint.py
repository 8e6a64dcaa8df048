"""Checkpoints: everything to rebuild the model without pretrained files, and to resume.

    {model, optimizer, scheduler, scaler, epoch, config, metrics, history, best_accuracy,
     bad_epochs, rng, labels, task, preprocessing}

`model` is the bare (non-DDP) state dict; the architecture is `config["model"]`, rebuilt by
`onyx.train.models.get_model(name, len(labels), in_channels)` with no weights. `best.pt` holds
the most accurate epoch, `last.pt` the latest (also written on Ctrl-C) for `--resume`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from google.protobuf import text_format

from onyx.proto.v1 import model_config_pb2 as pb

BEST = "best.pt"
LAST = "last.pt"


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # completed epochs
    best_accuracy: float = float("-inf")
    bad_epochs: int = 0  # epochs since the best one, for early stopping
    history: list[dict[str, float]] = field(default_factory=list)


def save_checkpoint(path: Path, parts: dict[str, Any]) -> None:
    """Write atomically: a Ctrl-C or crash mid-write never leaves a truncated checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(parts, tmp)
    tmp.replace(path)


def load_raw(path: Path) -> dict[str, Any]:
    checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint


def preprocessing_of(checkpoint: dict[str, Any]) -> pb.ImagePreprocessing:
    return text_format.Parse(checkpoint["preprocessing"], pb.ImagePreprocessing())


def state_of(checkpoint: dict[str, Any]) -> TrainState:
    return TrainState(
        epoch=int(checkpoint["epoch"]),
        best_accuracy=float(checkpoint.get("best_accuracy", float("-inf"))),
        bad_epochs=int(checkpoint.get("bad_epochs", 0)),
        history=list(checkpoint.get("history", [])),
    )
