"""Checkpoints: one schema for every task, versioned by `format`.

    {format: 2, written_by: "onyx-train 0.2.0", task: "image" | "text",
     model, labels, config, metrics, epoch,
     state: {best_accuracy, stale_epochs, history},
     optimizer, scheduler, scaler,                       # in best.pt and last.pt alike
     ...task extras}                                     # image: preprocessing; text: vocabulary,
                                                         #   model_config, max_length, tokenizer

`model` is the bare (non-DDP) state dict; the task extras rebuild the architecture without any
pretrained file (see `onyx.train.tasks.image.task` and `onyx.train.tasks.text.task`). `best.pt`
holds the most accurate epoch, `last.pt` the latest (kept on Ctrl-C); either can be `--resume`d
(format-1 image `best.pt` files carry no optimizer state and cannot).

`load_checkpoint` converts on read: format 1 (no `format` key: the image trainer's flat layout
with `history`/`best_accuracy`/`bad_epochs` at the top, or the text trainer's nested `state`)
comes back as format 2. A newer format is refused with the release that wrote it.
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from google.protobuf import text_format

from onyx.proto.v1 import model_config_pb2 as pb

BEST = "best.pt"
LAST = "last.pt"
FORMAT = 2
# The config fields renamed when the image and text configs became one (format 1 -> 2).
RENAMED_CONFIG_FIELDS = {"data_dir": "data", "grad_clip": "clip_grad_norm"}


class CheckpointFormatError(ValueError):
    """A checkpoint written in a format this release cannot read."""


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # completed epochs
    best_accuracy: float = -math.inf
    stale_epochs: int = 0  # epochs since the best one, for early stopping
    history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "best_accuracy": self.best_accuracy,
            "stale_epochs": self.stale_epochs,
            "history": self.history,
        }


def release() -> str:
    try:
        return f"onyx-train {importlib.metadata.version('onyx-train')}"
    except importlib.metadata.PackageNotFoundError:  # a source checkout without metadata
        return "onyx-train (unknown version)"


def save_checkpoint(path: Path, parts: dict[str, Any]) -> None:
    """Write atomically: a Ctrl-C or crash mid-write never leaves a truncated checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    stamped = {k: v for k, v in parts.items() if k not in ("format", "written_by")}
    torch.save({"format": FORMAT, "written_by": release(), **stamped}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path` in the current format, on CPU."""
    checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return upgrade(checkpoint, path)


def upgrade(checkpoint: dict[str, Any], path: Path | str = "checkpoint") -> dict[str, Any]:
    version = checkpoint.get("format", 1)
    if version == FORMAT:
        return checkpoint
    if version == 1:
        return _from_format_1(checkpoint)
    writer = checkpoint.get("written_by", "a newer onyx-train")
    raise CheckpointFormatError(
        f"{path} is a format {version} checkpoint; this {release()} reads formats 1 to {FORMAT}. "
        f"Load it with {writer} (which wrote it) or a later release."
    )


def _from_format_1(old: dict[str, Any]) -> dict[str, Any]:
    """The previous release's two layouts: image flat, text with a nested "state"."""
    new = dict(old)
    new["format"] = FORMAT
    new.setdefault("task", "image")
    if "state" not in old:  # image: history, best_accuracy, bad_epochs at the top
        new["state"] = {
            "best_accuracy": float(new.pop("best_accuracy", -math.inf)),
            "stale_epochs": int(new.pop("bad_epochs", 0)),
            "history": list(new.pop("history", [])),
        }
    config = dict(old.get("config", {}))
    for before, after in RENAMED_CONFIG_FIELDS.items():
        if before in config:
            config[after] = config.pop(before)
    new["config"] = config
    for part in ("optimizer", "scheduler", "scaler"):
        new.setdefault(part, None)
    return new


def state_of(checkpoint: dict[str, Any]) -> TrainState:
    saved = checkpoint["state"]
    return TrainState(
        epoch=int(checkpoint["epoch"]),
        best_accuracy=float(saved["best_accuracy"]),
        stale_epochs=int(saved["stale_epochs"]),
        history=list(saved["history"]),
    )


def preprocessing_of(checkpoint: dict[str, Any]) -> pb.ImagePreprocessing:
    return text_format.Parse(checkpoint["preprocessing"], pb.ImagePreprocessing())
