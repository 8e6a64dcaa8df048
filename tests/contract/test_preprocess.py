from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from onyx.contract.errors import InvalidInput, LimitExceeded
from onyx.contract.preprocess import decode_image, image_bytes_to_array, preprocess_image
from onyx.proto.v1 import model_config_pb2 as pb


def _png(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save)
    return buffer.getvalue()


def _spec(**overrides: object) -> pb.ImagePreprocessing:
    spec = pb.ImagePreprocessing(
        resize_shorter=0,
        crop_height=2,
        crop_width=2,
        interpolation=pb.INTERPOLATION_NEAREST,
        color_mode=pb.COLOR_MODE_RGB,
        channel_order=pb.CHANNEL_ORDER_RGB,
        layout=pb.LAYOUT_NCHW,
        mean=[0.5, 0.5, 0.5],
        std=[0.5, 0.25, 0.5],
    )
    for key, value in overrides.items():
        if isinstance(value, list):
            field = getattr(spec, key)
            del field[:]
            field.extend(value)
        else:
            setattr(spec, key, value)
    return spec


def test_normalises_per_channel_in_nchw() -> None:
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # red channel full
    array = preprocess_image(Image.fromarray(pixels), _spec())
    assert array.shape == (3, 2, 2) and array.dtype == np.float32
    np.testing.assert_allclose(array[0], 1.0)  # (1 - 0.5) / 0.5
    np.testing.assert_allclose(array[1], -2.0)  # (0 - 0.5) / 0.25
    np.testing.assert_allclose(array[2], -1.0)


def test_bgr_and_nhwc() -> None:
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    array = preprocess_image(
        Image.fromarray(pixels), _spec(channel_order=pb.CHANNEL_ORDER_BGR, layout=pb.LAYOUT_NHWC)
    )
    assert array.shape == (2, 2, 3)
    np.testing.assert_allclose(array[..., 2], 1.0)  # red is now last


def test_resize_shorter_side_then_centre_crop() -> None:
    # 8x4 image: left half black, right half white; shorter side 4 -> 2 gives 4x2, crop 2x2 centre.
    pixels = np.zeros((4, 8), dtype=np.uint8)
    pixels[:, 4:] = 255
    spec = _spec(resize_shorter=2, color_mode=pb.COLOR_MODE_GRAYSCALE, mean=[0.0], std=[1.0])
    array = preprocess_image(Image.fromarray(pixels), spec)
    assert array.shape == (1, 2, 2)
    np.testing.assert_allclose(array[0], [[0.0, 1.0], [0.0, 1.0]])


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (4, 2))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    assert decode_image(buffer.getvalue()).size == (2, 4)


def test_gif_first_frame_and_grayscale_to_rgb() -> None:
    frames = [Image.new("L", (2, 2), 255), Image.new("L", (2, 2), 0)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    array = image_bytes_to_array(buffer.getvalue(), _spec(mean=[0, 0, 0], std=[1, 1, 1]))
    np.testing.assert_allclose(array, 1.0)


def test_undecodable_bytes_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="cannot decode image"):
        decode_image(b"definitely not an image")
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"")


def test_pixel_limit_is_checked_before_decoding() -> None:
    data = _png(Image.new("L", (100, 100)))
    with pytest.raises(LimitExceeded, match="max_image_pixels limit of 9999"):
        decode_image(data, max_pixels=9999)
    assert decode_image(data, max_pixels=10_000).size == (100, 100)
