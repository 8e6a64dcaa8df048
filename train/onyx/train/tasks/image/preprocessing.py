"""The run's serving transform, resolved from the weights and the config.

Values the user left unset come from the weights' own metadata (`weights_preprocessing`), else
from the architecture's defaults; the resolved values are written back into the config so
`config.json` shows what was used, and the `ImagePreprocessing` travels into the export.
"""

from __future__ import annotations

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.config import ImageTrainConfig
from onyx.train.tasks.image.models import model_entry, weights_preprocessing

INTERPOLATIONS = {
    "nearest": pb.INTERPOLATION_NEAREST,
    "bilinear": pb.INTERPOLATION_BILINEAR,
    "bicubic": pb.INTERPOLATION_BICUBIC,
    "lanczos": pb.INTERPOLATION_LANCZOS,
}


def _per_channel(values: tuple[float, ...], channels: int) -> list[float]:
    if len(values) == channels:
        return list(values)
    if channels == 1:  # an RGB recipe on gray input: the average channel
        return [sum(values) / len(values)]
    if len(values) == 1:
        return list(values) * channels
    raise ValueError(f"need 1 or {channels} mean/std values, got {len(values)}")


def resolve_config(config: ImageTrainConfig) -> None:
    """Fill unset preprocessing fields of `config` in place."""
    weights = weights_preprocessing(config.model, config.weights)
    if not config.image_size:
        config.image_size = weights.crop_size if weights else model_entry(config.model).default_size
    if config.resize_shorter < 0:
        # Keep the weights' crop ratio (256/224) at any input size; no weights: resize only.
        ratio = weights.resize_size / weights.crop_size if weights else 0.0
        config.resize_shorter = round(config.image_size * ratio)
    config.mean = config.mean or (weights.mean if weights else (0.5, 0.5, 0.5))
    config.std = config.std or (weights.std if weights else (0.5, 0.5, 0.5))
    if not config.interpolation:
        config.interpolation = weights.interpolation if weights else "bilinear"  # type: ignore[assignment]
    if config.interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {config.interpolation!r}; "
            f"choose one of: {', '.join(INTERPOLATIONS)}"
        )


def image_preprocessing(config: ImageTrainConfig) -> pb.ImagePreprocessing:
    """The serving transform for this run; it travels into the exported model's config."""
    resolve_config(config)
    grayscale = config.color_mode == "grayscale"
    channels = 1 if grayscale else 3
    return pb.ImagePreprocessing(
        resize_shorter=config.resize_shorter,
        crop_height=config.image_size,
        crop_width=config.image_size,
        interpolation=INTERPOLATIONS[config.interpolation],
        color_mode=pb.COLOR_MODE_GRAYSCALE if grayscale else pb.COLOR_MODE_RGB,
        channel_order=pb.CHANNEL_ORDER_RGB,
        layout=pb.LAYOUT_NCHW,
        mean=_per_channel(tuple(config.mean), channels),
        std=_per_channel(tuple(config.std), channels),
    )
