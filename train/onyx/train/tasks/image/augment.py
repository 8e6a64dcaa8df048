"""Train-time augmentation on decoded PIL images, ahead of the serving transform.

    augment = build_augment(AugmentConfig(), spec)
    array = preprocess_image(augment(image), crop_spec(spec))   # normalised as the server does

The geometric steps produce an image of exactly the crop size; `crop_spec` then turns the serving
spec's resize into a no-op, so the scaling, mean/std and layout stay the server's own code.
torchvision's transforms draw from torch's global RNG, so `--seed` makes them reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image
from torchvision.transforms import v2 as T

from onyx.contract.preprocess import resize_and_crop
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.config import AugmentConfig

Augment = Callable[[Image.Image], Image.Image]

_INTERPOLATION = {
    pb.INTERPOLATION_NEAREST: T.InterpolationMode.NEAREST,
    pb.INTERPOLATION_BILINEAR: T.InterpolationMode.BILINEAR,
    pb.INTERPOLATION_BICUBIC: T.InterpolationMode.BICUBIC,
    pb.INTERPOLATION_LANCZOS: T.InterpolationMode.LANCZOS,
}


def crop_spec(spec: pb.ImagePreprocessing) -> pb.ImagePreprocessing:
    """The serving spec for an image already at the crop size: resize becomes a no-op."""
    out = pb.ImagePreprocessing()
    out.CopyFrom(spec)
    out.resize_shorter = 0
    return out


Step = Callable[[Image.Image], Image.Image]


def _crop_step(config: AugmentConfig, spec: pb.ImagePreprocessing) -> Step:
    """A random resized crop to the input size, or the serving resize + centre crop."""
    if config.crop_scale_min <= 0:
        return lambda image: resize_and_crop(image, spec)
    return T.RandomResizedCrop(  # type: ignore[no-any-return]
        (spec.crop_height, spec.crop_width),
        scale=(config.crop_scale_min, 1.0),
        interpolation=_INTERPOLATION[spec.interpolation],
        antialias=True,
    )


def build_augment(config: AugmentConfig, spec: pb.ImagePreprocessing) -> Augment:
    """PIL -> PIL of the crop size, randomly transformed per `config`."""
    mode = "L" if spec.color_mode == pb.COLOR_MODE_GRAYSCALE else "RGB"
    steps: list[Step] = [_crop_step(config, spec)]
    if config.hflip:
        steps.append(T.RandomHorizontalFlip())
    if config.rotation_degrees > 0 or config.translate_fraction > 0:
        shift = config.translate_fraction
        translate = (shift, shift) if shift else None
        steps.append(
            T.RandomAffine(
                config.rotation_degrees,
                translate=translate,
                interpolation=T.InterpolationMode.BILINEAR,
            )
        )
    if config.color_jitter > 0:
        jitter = config.color_jitter
        saturation = jitter if mode == "RGB" else 0  # gray images have none
        steps.append(T.ColorJitter(brightness=jitter, contrast=jitter, saturation=saturation))

    def augment(image: Image.Image) -> Image.Image:
        image = image.convert(mode)
        for step in steps:
            image = step(image)
        return image

    return augment
