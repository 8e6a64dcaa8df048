"""The sentiment trainer's configuration; the resolved config is saved next to every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TextTrainConfig:
    # A .csv/.tsv/.jsonl file, or an IMDb-style folder (train/pos, train/neg, test/...).
    data: str
    out_dir: str = "runs/text"
    # A separate validation file; without one, val_fraction of every class is held out.
    val_data: str = ""
    text_column: str = "text"
    label_column: str = "label"
    # Fixes the label set and its order; empty: the sorted labels found in the training data.
    labels: list[str] = field(default_factory=list)
    # Words seen fewer times in the training split map to <unk>; max_vocab counts <pad>, <unk>.
    min_freq: int = 1
    max_vocab: int = 30_000
    # Longer texts keep their first max_length tokens, in training and in the server alike.
    max_length: int = 256
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 128
    embed_dim: int = 64
    bidirectional: bool = False
    dropout: float = 0.2
    pooling: str = "last"
    # A text-format word-vectors file ("word v1 v2 ..."); its width must equal embed_dim.
    vectors: str = ""
    freeze_vectors: bool = False
    epochs: int = 10
    batch_size: int = 64
    # AdamW; RNNs from scratch like a higher rate than fine-tuned CNNs.
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # Linear warm-up over this share of all steps, then cosine decay to 0.
    warmup_fraction: float = 0.05
    # Stop after this many epochs without a better validation accuracy (0: never).
    patience: int = 3
    # Clip the gradient norm: RNNs occasionally explode.
    grad_clip: float = 1.0
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    # Continue from this checkpoint (last.pt): model, optimizer, scheduler, epoch, history.
    resume: str = ""
    # Draw loss/accuracy curves and the confusion matrix as PNGs.
    plots: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
