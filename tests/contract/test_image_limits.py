"""Image limits (issue 12): `max_image_pixels` decides in both directions, errors carry no
Python reprs, and the preprocessing pool hands the memory of huge images back.

python -m pytest tests/contract/test_image_limits.py
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onyx.contract.errors import InvalidInput, LimitExceeded
from onyx.contract.preprocess import decode_image, image_bytes_to_array
from tests.serve.tiny_models import image_config

PILLOW_ERROR_PIXELS = 2 * 89_478_485  # Pillow's own DecompressionBombError threshold


def png_header(width: int, height: int) -> bytes:
    """A PNG claiming `width` x `height` with no pixel data: sizes are read, nothing decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_the_flag_refuses_below_pillows_limit_and_quotes_its_own_value() -> None:
    with pytest.raises(LimitExceeded, match="max_image_pixels limit of 1000000") as refused:
        decode_image(png_header(2000, 1000), max_pixels=1_000_000)
    assert "178956970" not in str(refused.value)


def test_the_flag_allows_images_above_pillows_limit() -> None:
    """20000 x 10000 = 200 MP is past Pillow's bomb error; with the flag at 300 MP the size
    check passes and decoding fails only because this PNG has no pixel data."""
    assert PILLOW_ERROR_PIXELS < 20_000 * 10_000
    with pytest.raises(LimitExceeded, match="max_image_pixels limit of 40000000"):
        decode_image(png_header(20_000, 10_000), max_pixels=40_000_000)
    with pytest.raises(InvalidInput, match="cannot decode image") as failed:
        decode_image(png_header(20_000, 10_000), max_pixels=300_000_000)
    assert "0x" not in str(failed.value)


def test_undecodable_bytes_are_reported_without_a_python_repr() -> None:
    with pytest.raises(InvalidInput) as failed:
        decode_image(b"not an image at all")
    assert "object at" not in str(failed.value) and "0x" not in str(failed.value)


def _rss_mb() -> int:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc arenas, /proc")
def test_decoding_36_megapixel_jpegs_in_a_pool_returns_the_memory() -> None:
    """Without trimming, 16 decodes of a 36 MP JPEG on 4 threads left ~980 MB resident (glibc
    keeps each thread's freed arena); with `release_memory` after large images, ~1 MB."""
    ramp = np.linspace(0, 255, 6000, dtype=np.uint8)
    pixels = np.stack([np.add.outer(ramp, ramp)] * 3, axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    data = buffer.getvalue()
    del pixels, buffer
    spec = image_config().image
    with ThreadPoolExecutor(4) as pool:
        before = _rss_mb()
        for _ in range(2):
            list(pool.map(lambda _: image_bytes_to_array(data, spec), range(8)))
        grown = _rss_mb() - before
    assert grown < 200, f"{grown} MB still resident after decoding 36 MP JPEGs"
