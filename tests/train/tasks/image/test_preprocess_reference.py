"""Onyx's image preprocessing equals torchvision's (PIL path) and timm's eval transform on real
photos: every aspect ratio, portrait and landscape, odd sizes, every interpolation a config allows.

The transform is `onyx.contract.preprocess` (no torch); the reference is the torch pipeline that
pretrained weights were made with, so a pretrained model sees what it was trained on.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from onyx.contract.preprocess import (
    decode_image,
    image_bytes_to_array,
    preprocess_image,
    resized_size,
)
from onyx.proto.v1 import model_config_pb2 as pb
from tests.train.photos import real_photos

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MODES = {
    "nearest": (pb.INTERPOLATION_NEAREST, T.InterpolationMode.NEAREST),
    "bilinear": (pb.INTERPOLATION_BILINEAR, T.InterpolationMode.BILINEAR),
    "bicubic": (pb.INTERPOLATION_BICUBIC, T.InterpolationMode.BICUBIC),
    "lanczos": (pb.INTERPOLATION_LANCZOS, T.InterpolationMode.LANCZOS),
}


def _variants() -> dict[str, Image.Image]:
    """The photos as shipped (landscape and square), turned to portrait, and cut to odd sizes."""
    photos = real_photos()
    out: dict[str, Image.Image] = {}
    for name in ("cat", "china", "flower", "rocket", "astronaut", "hopper", "coffee"):
        photo = photos[name]
        out[name] = photo
        out[f"{name}-portrait"] = photo.transpose(Image.Transpose.ROTATE_90)
    out["odd-wide"] = photos["china"].crop((3, 5, 3 + 517, 5 + 263))  # 517x263
    out["odd-tall"] = photos["hopper"].crop((1, 2, 1 + 301, 2 + 487))  # 301x487
    out["tiny"] = photos["flower"].crop((100, 50, 100 + 181, 50 + 97))  # smaller than the resize
    out["smaller-than-crop"] = photos["cat"].crop((0, 0, 150, 120))  # pads to the crop
    return out


def _spec(shorter: int, crop: int, interpolation: int) -> pb.ImagePreprocessing:
    return pb.ImagePreprocessing(
        resize_shorter=shorter,
        crop_height=crop,
        crop_width=crop,
        interpolation=interpolation,
        color_mode=pb.COLOR_MODE_RGB,
        channel_order=pb.CHANNEL_ORDER_RGB,
        layout=pb.LAYOUT_NCHW,
        mean=list(MEAN),
        std=list(STD),
    )


def _torchvision(shorter: int, crop: int, mode: T.InterpolationMode) -> T.Compose:
    resize = T.Resize(shorter, interpolation=mode) if shorter else T.Resize((crop, crop), mode)
    return T.Compose([resize, T.CenterCrop(crop), T.ToTensor(), T.Normalize(MEAN, STD)])


@pytest.mark.parametrize("mode", list(MODES))
def test_equals_torchvision_on_real_photos_every_shape_and_filter(mode: str) -> None:
    ours, theirs = MODES[mode]
    for shorter, crop in ((256, 224), (0, 224), (73, 64)):
        reference = _torchvision(shorter, crop, theirs)
        for name, photo in _variants().items():
            expected = reference(photo).numpy()
            actual = preprocess_image(photo, _spec(shorter, crop, ours))
            assert actual.shape == expected.shape, (name, shorter)
            diff = float(np.abs(actual - expected).max())
            assert diff <= 1e-6, f"{name} {photo.size} {mode} {shorter}/{crop}: {diff}"


def test_long_side_is_truncated_like_torchvision() -> None:
    # 500x375 (skimage's coffee is 600x400; chelsea 451x300): 256 * 451 / 300 = 384.85 -> 384.
    assert resized_size((451, 300), 256) == (384, 256)
    assert resized_size((300, 451), 256) == (256, 384)
    assert resized_size((640, 427), 256) == (383, 256)  # sklearn's china: 383.7, not 384
    cat = real_photos()["cat"]
    assert T.Resize(256)(cat).size == resized_size(cat.size, 256)


def test_equals_timm_eval_transform_for_lite0() -> None:
    import timm
    from timm.data import create_transform, resolve_data_config

    from onyx.train.config import ImageTrainConfig
    from onyx.train.tasks.image.preprocessing import image_preprocessing

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    reference = create_transform(**resolve_data_config({}, model=model))
    config = ImageTrainConfig(data=".", model="efficientnet_lite0", weights="imagenet")  # type: ignore[arg-type]
    spec = image_preprocessing(config)
    for name, photo in _variants().items():
        expected = reference(photo).numpy()
        diff = float(np.abs(preprocess_image(photo, spec) - expected).max())
        assert diff <= 1e-6, f"{name}: {diff}"


def test_rgb_conversion_and_exif_orientation_of_encoded_photos() -> None:
    """Palette and grayscale files become RGB as `Image.convert("RGB")`; a JPEG whose EXIF says
    "rotate" equals the upright photo through torchvision."""
    photo = real_photos()["rocket"]
    spec = _spec(256, 224, pb.INTERPOLATION_BILINEAR)
    reference = _torchvision(256, 224, T.InterpolationMode.BILINEAR)
    for mode in ("P", "L", "RGBA"):
        buffer = io.BytesIO()
        photo.convert(mode).save(buffer, format="PNG")
        expected = reference(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).numpy()
        assert np.abs(image_bytes_to_array(buffer.getvalue(), spec) - expected).max() <= 1e-6
    # EXIF orientation 6: the viewer turns the stored pixels 90 degrees clockwise.
    stored = photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif)
    upright = Image.open(io.BytesIO(buffer.getvalue())).transpose(Image.Transpose.ROTATE_270)
    assert decode_image(buffer.getvalue()).size == photo.size
    expected = reference(upright.convert("RGB")).numpy()
    assert np.abs(image_bytes_to_array(buffer.getvalue(), spec) - expected).max() <= 1e-6
    assert torch.is_tensor(reference(photo))
