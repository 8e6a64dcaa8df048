"""Training configuration as dataclasses; the resolved config is saved next to every checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ColorMode = Literal["rgb", "grayscale"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos"]


@dataclass
class AugmentConfig:
    """Train-time augmentation of decoded PIL images, before the serving normalisation.
    Each one can be switched off: flips and rotations are wrong where they change the label
    (digits: 6 vs 9)."""

    # Random crop of this share of the image area, resized to the input size (0: off, centre crop).
    crop_scale_min: float = 0.6
    hflip: bool = True
    # Small rotations and shifts; fractions of the image size for the shift.
    rotation_degrees: float = 10.0
    translate_fraction: float = 0.1
    # Brightness/contrast/saturation jitter strength (0: off).
    color_jitter: float = 0.2

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(
            crop_scale_min=0.0,
            hflip=False,
            rotation_degrees=0.0,
            translate_fraction=0.0,
            color_jitter=0.0,
        )


@dataclass
class ImageTrainConfig:
    # One sub-folder per class (or train/ and val/ sub-folders, each with class folders).
    data_dir: str
    # Checkpoints, the resolved config, the split and the training log go here.
    out_dir: str = "runs/image"
    # A name from `onyx.train.models.list_models()`.
    model: str = "small_cnn"
    # "imagenet", "none", or a path to a state dict (.safetensors or torch).
    weights: str = "none"
    # Square crop fed to the network; 0: the weights' size (224 for ImageNet nets; 32 small_cnn).
    image_size: int = 0
    # Shorter side before the centre crop; -1: from the weights' crop ratio (else none);
    # 0 resizes straight to image_size (no crop).
    resize_shorter: int = -1
    color_mode: ColorMode = "rgb"
    # Normalisation per channel on the 0..1 scale; empty: the weights' (0.5 without weights).
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    # Empty: the weights' interpolation (bilinear without weights).
    interpolation: Interpolation | Literal[""] = ""
    epochs: int = 10
    batch_size: int = 64
    # Head learning rate; AdamW's default-ish rate for small nets or new heads.
    lr: float = 1e-3
    # The backbone's rate is lr * this once unfrozen (discriminative rates: keep pretrained
    # features close to where they were).
    backbone_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    # SGD momentum (ignored by AdamW).
    momentum: float = 0.9
    # Linear warmup steps, then cosine decay to 0 over the remaining steps (or "step": x0.1 at
    # 1/2 and 3/4 of training).
    warmup_steps: int = 0
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    label_smoothing: float = 0.0
    # "balanced": weight each class by n / (classes * count), for imbalanced data.
    class_weights: Literal["none", "balanced"] = "none"
    # Clip the global gradient norm (0: off).
    clip_grad_norm: float = 0.0
    # Mixed precision on CUDA (ignored on CPU).
    amp: bool = True
    # Transfer schedule: epochs with the backbone frozen (head only); -1: 1 with pretrained
    # weights, 0 without.
    freeze_epochs: int = -1
    # Backbone stages trained after the frozen epochs: -1 all, 0 none (linear probe), K the last K.
    unfreeze: int = -1
    # Stop after this many epochs without a better validation accuracy (0: never); the best
    # weights are restored at the end either way.
    patience: int = 0
    # Share of each class held out for validation when the data is not already split.
    val_fraction: float = 0.2
    seed: int = 0
    # DataLoader worker processes; 0 loads in the training process (best on 2 cores).
    num_workers: int = 0
    # torch intra-op threads (0: torch's default, one per core). On a box shared with other
    # processes 1 can be several times faster: OpenMP threads wait for a busy core.
    threads: int = 0
    # "auto": CUDA when available, else CPU.
    device: str = "auto"
    # Stop each epoch after this many optimizer steps (0: no limit); tests and smoke runs use it.
    max_steps: int = 0
    # A last.pt (or best.pt) to continue from: model, optimizer, scheduler, epoch, history.
    resume: str = ""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    labels: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def save_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
