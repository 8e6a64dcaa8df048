"""Training configuration as dataclasses; the resolved config is saved next to every checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ColorMode = Literal["rgb", "grayscale"]


@dataclass
class ImageTrainConfig:
    # One sub-folder per class (or train/ and val/ sub-folders, each with class folders).
    data_dir: str
    # Checkpoints, the resolved config and the training log go here.
    out_dir: str = "runs/image"
    # A name from `onyx.train.models.list_models()`.
    model: str = "small_cnn"
    # Square crop fed to the network; 32 px is plenty for digits, pretrained CNNs want 224.
    image_size: int = 32
    # Shorter side before the centre crop; 0 resizes straight to image_size (no crop).
    resize_shorter: int = 0
    color_mode: ColorMode = "rgb"
    # The network's normalisation, per channel on the 0..1 scale (ImageNet's for pretrained nets).
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "bilinear"
    epochs: int = 10
    batch_size: int = 64
    # AdamW's default-ish rate for small nets trained from scratch.
    lr: float = 1e-3
    weight_decay: float = 1e-4
    # Share of each class held out for validation when the data is not already split.
    val_fraction: float = 0.2
    seed: int = 0
    # DataLoader worker processes; 0 loads in the training process (best on 2 cores).
    num_workers: int = 0
    # "auto": CUDA when available, else CPU.
    device: str = "auto"
    # Stop after at most this many optimizer steps in total (0: no limit); tests use it.
    max_steps: int = 0
    labels: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def save_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
