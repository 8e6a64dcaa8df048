"""Training configuration as dataclasses; the resolved config is saved next to every checkpoint.

    config = ImageTrainConfig(data=Path("data/pets"), model="resnet18", weights="imagenet")
    config = TextTrainConfig(data=Path("reviews.jsonl"), cell="gru", bidirectional=True)

`TrainConfig` holds what every task shares (same names, same defaults); `ImageTrainConfig` and
`TextTrainConfig` add their task's fields. Defaults live only here and every field carries its
help text in `metadata["help"]`: the command-line options are generated from these dataclasses
(the field type gives the option type: `Literal[...]` a choice, `bool` a flag, `Path` a path,
`tuple[...]` a comma-separated list).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

ColorMode = Literal["rgb", "grayscale"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", ""]
Optimizer = Literal["adamw", "sgd"]
Schedule = Literal["cosine", "step", "constant"]
ClassWeights = Literal["none", "balanced"]
AmpDtype = Literal["float16", "bfloat16"]
Cell = Literal["lstm", "gru"]
Pooling = Literal["last", "mean", "max"]


def _help(text: str, **bounds: float | bool) -> dict[str, Any]:
    """A field's help text and allowed range (`min`, `max`, `min_open`, `max_open`): the CLI
    turns the range into click's, and `check_ranges` holds library callers to the same."""
    return {"help": text, **bounds}


def check_ranges(config: object) -> None:
    """Raise ValueError naming the first field (of a config dataclass) outside its range."""
    for spec in fields(config):  # type: ignore[arg-type]
        value, meta = getattr(config, spec.name), spec.metadata
        low, high = meta.get("min"), meta.get("max")
        too_low = low is not None and (value < low or (meta.get("min_open") and value == low))
        too_high = high is not None and (value > high or (meta.get("max_open") and value == high))
        if too_low or too_high:
            left = "(" if meta.get("min_open") else "["
            right = ")" if meta.get("max_open") else "]"
            shown = f"{left}{'' if low is None else low}, {'' if high is None else high}{right}"
            raise ValueError(f"{spec.name} = {value!r} is outside {shown}")


@dataclass
class TrainConfig:
    """What every training task shares; see `ImageTrainConfig` and `TextTrainConfig`."""

    data: Path = field(metadata=_help("Training data (image: a folder; text: a file or folder)."))
    out_dir: Path = field(
        default=Path("runs/train"),
        metadata=_help("Where best.pt, last.pt, config.json, metrics.json and the plots go."),
    )
    epochs: int = field(default=10, metadata=_help("Passes over the training data.", min=1))
    batch_size: int = field(default=64, metadata=_help("Examples per step (per process).", min=1))
    # AdamW's default-ish rate for small nets or new heads.
    lr: float = field(
        default=1e-3,
        metadata=_help("Peak learning rate (image: the head's).", min=0, min_open=True),
    )
    weight_decay: float = field(default=1e-4, metadata=_help("Decoupled weight decay.", min=0))
    optimizer: Optimizer = field(default="adamw", metadata=_help("Optimizer."))
    momentum: float = field(
        default=0.9, metadata=_help("SGD momentum (ignored by AdamW).", min=0, max=1)
    )
    schedule: Schedule = field(
        default="cosine",
        metadata=_help("Rate after the warm-up: cosine decay to 0, step (x0.1 at 1/2 and 3/4), "
                       "or constant."),
    )  # fmt: skip
    # A short warm-up keeps Adam's first, badly estimated steps small; as a share of all steps
    # it means the same for 100 and 100 000 steps.
    warmup_fraction: float = field(
        default=0.05,
        metadata=_help(
            "Linear warm-up over this share of all optimizer steps.", min=0, max=1, max_open=True
        ),
    )
    label_smoothing: float = field(
        default=0.0, metadata=_help("Label smoothing of the loss.", min=0, max=1, max_open=True)
    )
    class_weights: ClassWeights = field(
        default="none",
        metadata=_help("balanced: weight each class by n / (classes * count) (imbalanced data)."),
    )
    clip_grad_norm: float = field(
        default=0.0, metadata=_help("Clip the global gradient norm to this (0: off).", min=0)
    )
    amp: bool = field(default=True, metadata=_help("Mixed precision on CUDA (ignored on CPU)."))
    # float16 needs loss scaling (a GradScaler); bfloat16 has float32's range and does not.
    amp_dtype: AmpDtype = field(default="float16", metadata=_help("Autocast type under --amp."))
    patience: int = field(
        default=0,
        metadata=_help("Stop after this many epochs without a better validation accuracy "
                       "(0: never); the best weights are restored at the end either way.", min=0),
    )  # fmt: skip
    val_fraction: float = field(
        default=0.2,
        metadata=_help(
            "Share of each class held out for validation when the data is not split.",
            min=0,
            max=1,
            min_open=True,
            max_open=True,
        ),
    )
    seed: int = field(
        default=0, metadata=_help("Seeds the split, initialisation, data order and dropout.")
    )
    num_workers: int = field(
        default=0,
        metadata=_help("DataLoader worker processes (0: load in the training process).", min=0),
    )
    # On a box shared with other processes 1 can be several times faster: OpenMP threads wait
    # for a busy core.
    threads: int = field(
        default=0,
        metadata=_help("torch CPU threads (0: one per core; 1 on a busy shared box).", min=0),
    )
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda or cuda:N."))
    max_steps: int = field(
        default=0,
        metadata=_help("Cap on optimizer steps per epoch (0: none); for smoke runs.", min=0),
    )
    resume: str = field(
        default="",
        metadata=_help(
            "Continue from this checkpoint (last.pt, or best.pt): weights, optimizer, "
            "schedule, history."
        ),
    )
    plots: bool = field(
        default=True, metadata=_help("Draw the training curves and confusion matrix as PNGs.")
    )
    labels: tuple[str, ...] = field(
        default=(),
        metadata=_help("Label set and order (text; empty: sorted from the training data). "
                       "Filled in with the labels found, in the saved config."),
    )  # fmt: skip
    # Alphabetical order made `not_cat` the positive class of a cat detector; see
    # onyx.train.engine.metrics.positive_index for the default.
    positive_class: str = field(
        default="",
        metadata=_help("Two classes: the label whose precision/recall/F1/ROC-AUC are reported; "
                       "empty: the label that does not read as negative (not_x, other, ...), "
                       "else the second."),
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_ranges(self)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only (paths as strings): this goes into config.json and checkpoints,
        which `torch.load(weights_only=True)` must read back."""
        data: dict[str, Any] = json.loads(json.dumps(asdict(self), default=str))
        return data


@dataclass
class AugmentConfig:
    """Train-time augmentation of decoded PIL images, before the serving normalisation.
    Each one can be switched off: flips and rotations are wrong where they change the label
    (digits: 6 vs 9)."""

    crop_scale_min: float = field(
        default=0.6,
        metadata=_help("Random crop of at least this share of the area (0: centre crop)."),
    )
    hflip: bool = field(
        default=True, metadata=_help("Random horizontal flips (off where mirroring changes "
                                     "the label).")
    )  # fmt: skip
    rotation_degrees: float = field(default=10.0, metadata=_help("Random rotation, degrees."))
    translate_fraction: float = field(
        default=0.1, metadata=_help("Random shift, as a fraction of the image size.")
    )
    color_jitter: float = field(
        default=0.2, metadata=_help("Brightness/contrast/saturation jitter strength (0: off).")
    )

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
class ImageTrainConfig(TrainConfig):
    """Fine-tuning an image classifier on a folder of class folders."""

    out_dir: Path = field(
        default=Path("runs/image"),
        metadata=_help("Where best.pt, last.pt, config.json, split.json, metrics.json and the "
                       "plots go."),
    )  # fmt: skip
    model: str = field(
        default="small_cnn",
        metadata=_help("Architecture; see onyx.train.tasks.image.models.list_models()."),
    )
    weights: str = field(
        default="none",
        metadata=_help("imagenet, none, or a state-dict file (.safetensors or torch)."),
    )
    image_size: int = field(
        default=0,
        metadata=_help(
            "Square network input; 0: the weights' size (224 for ImageNet nets).", min=0
        ),
    )
    resize_shorter: int = field(
        default=-1,
        metadata=_help("Shorter side before the centre crop; -1: from the weights' crop ratio; "
                       "0: resize straight to image_size."),
    )  # fmt: skip
    color_mode: ColorMode = field(default="rgb", metadata=_help("Colour mode of the input."))
    mean: tuple[float, ...] = field(
        default=(),
        metadata=_help("Per-channel normalisation mean on 0..1; empty: the weights' (or 0.5)."),
    )
    std: tuple[float, ...] = field(
        default=(),
        metadata=_help("Per-channel normalisation std on 0..1; empty: the weights' (or 0.5)."),
    )
    interpolation: Interpolation = field(
        default="", metadata=_help("Resize filter; empty: the weights' (bilinear without).")
    )
    # Discriminative rates: keep pretrained features close to where they were.
    backbone_lr_scale: float = field(
        default=0.1,
        metadata=_help("Backbone rate = lr x this once unfrozen (pretrained weights only).", min=0),
    )
    freeze_epochs: int = field(
        default=-1,
        metadata=_help("Head-only epochs first; -1: 1 with pretrained weights, else 0."),
    )
    unfreeze: int = field(
        default=-1,
        metadata=_help("Backbone stages trained after the frozen epochs: -1 all, 0 none, K the "
                       "last K."),
    )  # fmt: skip
    # Small task batches give noisy, shifted batch statistics: overwriting ImageNet's running
    # ones under a head trained on the old features is what makes unfreezing hurt.
    train_batchnorm: bool = field(
        default=False,
        metadata=_help("Unfrozen pretrained stages also train their BatchNorm statistics "
                       "(batch statistics, running averages updated). Off: they keep the "
                       "pretrained statistics (right for small batches and photo-like data); "
                       "on: large batches (>= 32 per process) from a domain far from ImageNet."),
    )  # fmt: skip
    augment: AugmentConfig = field(
        default_factory=AugmentConfig, metadata=_help("Train-time augmentation.")
    )


@dataclass
class TextTrainConfig(TrainConfig):
    """Training an RNN text classifier on a .csv/.tsv/.jsonl file or an IMDb-style folder."""

    out_dir: Path = field(
        default=Path("runs/text"),
        metadata=_help("Where best.pt, last.pt, config.json, metrics.json and the plots go."),
    )
    # RNNs from scratch like a higher rate than fine-tuned CNNs.
    lr: float = field(default=3e-3, metadata=_help("Peak learning rate.", min=0, min_open=True))
    # RNN gradients occasionally explode; clipping is the standard cure.
    clip_grad_norm: float = field(
        default=1.0, metadata=_help("Clip the global gradient norm to this (0: off).", min=0)
    )
    val_data: str = field(
        default="",
        metadata=_help("A validation file; without one, val_fraction of each label is held out."),
    )
    text_column: str = field(default="text", metadata=_help("CSV/TSV column or JSON key."))
    label_column: str = field(default="label", metadata=_help("CSV/TSV column or JSON key."))
    min_freq: int = field(
        default=1, metadata=_help("Words seen fewer times in training map to <unk>.", min=1)
    )
    max_vocab: int = field(
        default=30_000, metadata=_help("Vocabulary size including <pad> and <unk>.", min=3)
    )
    max_length: int = field(
        default=256,
        metadata=_help("Tokens kept per text, in training and in the server alike.", min=1),
    )
    cell: Cell = field(default="lstm", metadata=_help("Recurrent cell."))
    layers: int = field(default=1, metadata=_help("Stacked recurrent layers.", min=1))
    hidden: int = field(default=128, metadata=_help("Hidden units per direction.", min=1))
    embed_dim: int = field(default=64, metadata=_help("Word embedding width.", min=1))
    bidirectional: bool = field(default=False, metadata=_help("Also read right to left."))
    dropout: float = field(
        default=0.2,
        metadata=_help(
            "Dropout on embeddings, between layers, before the head.", min=0, max=1, max_open=True
        ),
    )
    pooling: Pooling = field(default="last", metadata=_help("How time steps become one vector."))
    vectors: str = field(
        default="",
        metadata=_help("Word vectors, text format ('word v1 v2 ...'); width must be embed_dim."),
    )
    freeze_vectors: bool = field(
        default=False, metadata=_help("Keep the loaded word vectors fixed.")
    )


def save_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
