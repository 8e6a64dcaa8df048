"""Image preprocessing shared by training and serving: encoded bytes -> normalised float32 array.

The steps and their parameters come from the model's `ImagePreprocessing` config, so a model is
served with exactly the transform it was trained with:

    decode (EXIF orientation applied, first frame) -> colour mode -> resize shorter side
    (long side truncated, as torchvision) -> centre crop (zero-padded if too small)
    -> scale to 0..1 -> (x - mean) / std -> channel order -> layout

Only numpy and Pillow: this module is imported by `onyx.train` too and must never import torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import re
import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from onyx.contract.errors import InvalidInput, LimitExceeded
from onyx.proto.v1 import model_config_pb2 as pb

_RESAMPLE = {
    pb.INTERPOLATION_NEAREST: Image.Resampling.NEAREST,
    pb.INTERPOLATION_BILINEAR: Image.Resampling.BILINEAR,
    pb.INTERPOLATION_BICUBIC: Image.Resampling.BICUBIC,
    pb.INTERPOLATION_LANCZOS: Image.Resampling.LANCZOS,
}

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
# Decoding an image this large makes the decoding thread hand its freed memory back to the
# system afterwards (glibc keeps it in the thread's arena otherwise); trimming costs little next
# to such a decode. Figures: bench/README.md, "Large images: memory after decoding".
TRIM_AFTER_PIXELS = 4_000_000
# Python reprs with heap addresses (`<_io.BytesIO object at 0x7f...>`) Pillow puts in messages.
_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
# File suffixes treated as images when walking folders (training data, dedup, bulk classify).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode encoded image bytes, refusing images larger than `max_pixels` before decoding them."""
    if not data:
        raise InvalidInput("image is empty (0 bytes)")
    _raise_pillow_limit(max_pixels)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns; our explicit limit below is the one that decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise LimitExceeded(
                    f"image is {width}x{height} = {width * height} pixels, "
                    f"over the max_image_pixels limit of {max_pixels}"
                )
            image.load()
            return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise LimitExceeded(
            f"image is over twice the max_image_pixels limit of {max_pixels} pixels"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        # Pillow reports unknown formats and truncated files with these.
        reason = _REPR.sub("the data", str(exc))
        raise InvalidInput(f"cannot decode image ({len(data)} bytes): {reason}") from exc


def _raise_pillow_limit(max_pixels: int) -> None:
    """Pillow refuses images over twice `Image.MAX_IMAGE_PIXELS` (179 MP) inside `Image.open`,
    before our own check: raise its limit to ours, so `max_image_pixels` decides both ways."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and limit < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc `malloc_trim`; a no-op elsewhere)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def preprocess_image(image: Image.Image, spec: pb.ImagePreprocessing) -> np.ndarray:
    """Transform a decoded image into the model's input layout, without a batch axis."""
    image = image.convert("L" if spec.color_mode == pb.COLOR_MODE_GRAYSCALE else "RGB")
    image = resize_and_crop(image, spec)
    array = np.asarray(image, dtype=np.float32) / np.float32(255.0)  # as ToTensor: x.div(255)
    if array.ndim == 2:
        array = array[:, :, None]  # (H, W) -> (H, W, 1)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    array = (array - mean) / std  # (H, W, C)
    if spec.channel_order == pb.CHANNEL_ORDER_BGR:
        array = array[:, :, ::-1]
    if spec.layout == pb.LAYOUT_NCHW:
        array = array.transpose(2, 0, 1)  # (C, H, W)
    return np.ascontiguousarray(array, dtype=np.float32)


def resize_and_crop(image: Image.Image, spec: pb.ImagePreprocessing) -> Image.Image:
    """torchvision's `Resize(resize_shorter)` then `CenterCrop((crop_h, crop_w))` on a PIL image,
    bit for bit (timm's eval transform is the same two steps); `resize_shorter` 0 resizes
    straight to the crop size, like `Resize((crop_h, crop_w))`.

    Pillow's resize always antialiases when it shrinks, as torchvision's PIL path does for every
    interpolation, so the filters need no extra flag.
    """
    resample = _RESAMPLE[spec.interpolation]
    crop_w, crop_h = spec.crop_width, spec.crop_height
    if spec.resize_shorter <= 0:
        size = (crop_w, crop_h)
    else:
        size = resized_size(image.size, spec.resize_shorter)
    if size != image.size:
        image = image.resize(size, resample)
    return center_crop(image, crop_w, crop_h)


def resized_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to `shorter`: the long side is
    truncated, `int(shorter * long / short)`, exactly as torchvision's
    `_compute_resized_output_size` (rounding it instead moves a 500x375 photo by one pixel and
    its pretrained probabilities by up to 0.05)."""
    width, height = size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shorter * long / short)
    return (shorter, new_long) if width <= height else (new_long, shorter)


def center_crop(image: Image.Image, crop_w: int, crop_h: int) -> Image.Image:
    """torchvision's `center_crop`: zero padding first where the image is smaller than the crop
    (left/top get the smaller half), then the offset `round((side - crop) / 2)` (Python's round,
    half to even, as torchvision's `int(round(...))`)."""
    width, height = image.size
    if crop_w > width or crop_h > height:
        pad_left = (crop_w - width) // 2 if crop_w > width else 0
        pad_top = (crop_h - height) // 2 if crop_h > height else 0
        padded = Image.new(image.mode, (max(width, crop_w), max(height, crop_h)))  # zeros
        padded.paste(image, (pad_left, pad_top))
        image, width, height = padded, padded.width, padded.height
    left = round((width - crop_w) / 2.0)
    top = round((height - crop_h) / 2.0)
    return image.crop((left, top, left + crop_w, top + crop_h))


def image_bytes_to_array(
    data: bytes, spec: pb.ImagePreprocessing, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
    image = decode_image(data, max_pixels)
    large = image.width * image.height >= TRIM_AFTER_PIXELS
    array = preprocess_image(image, spec)
    del image  # freed before trimming
    if large:
        release_memory()
    return array
