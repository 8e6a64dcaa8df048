"""A registry model with its published ImageNet weights, as a checkpoint that export takes as is.

    onyx export --pretrained efficientnet_lite0 --name lite0

No training and no head replacement: the 1000-class ImageNet classifier with its 1000 labels
(`imagenet_classes.txt`) and its recipe's preprocessing (the weights' own metadata, resolved as
for `onyx train image --weights imagenet`), so the served model equals the reference pipeline.
Only weights available offline are used (see `onyx.train.tasks.image.weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import text_format

from onyx.train.config import ImageTrainConfig
from onyx.train.engine import checkpoint as ckpt
from onyx.train.tasks.image.models import get_model, list_models, model_entry
from onyx.train.tasks.image.preprocessing import image_preprocessing
from onyx.train.tasks.image.weights import imagenet_categories


def pretrained_models() -> list[str]:
    """The registry models that have ImageNet weights (whether cached here or not)."""
    return [name for name in list_models() if model_entry(name).imagenet is not None]


def pretrained_checkpoint(arch: str) -> dict[str, Any]:
    """`arch` with its ImageNet weights and labels, in the checkpoint schema export reads."""
    if arch not in pretrained_models():
        raise ValueError(f"--pretrained {arch!r}: choose one of: {', '.join(pretrained_models())}")
    config = ImageTrainConfig(
        data=Path("imagenet"), out_dir=Path(), model=arch, weights="imagenet", epochs=1
    )
    spec = image_preprocessing(config)  # resolves size, mean/std, filter into config
    labels = imagenet_categories()
    config.labels = tuple(labels)
    model = get_model(arch, len(labels), weights="imagenet")
    return {
        "format": ckpt.FORMAT,
        "task": "image",
        "model": model.state_dict(),
        "labels": labels,
        "config": config.to_json(),
        "metrics": {},
        "epoch": 0,
        "preprocessing": text_format.MessageToString(spec),
    }
