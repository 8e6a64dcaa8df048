"""Shared fixtures for the training tests: small real image folders written on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHAPES = ("circle", "square", "triangle")


CLASS_COLOURS = {"circle": (230, 60, 60), "square": (60, 220, 60), "triangle": (70, 90, 240)}


def draw_shape(
    kind: str, size: int, rng: np.random.Generator, colour_of: str | None = None
) -> Image.Image:
    """A shape at a random place and size on a noisy background; with `colour_of`, the colour
    of that shape's class (jittered)."""
    from PIL import ImageDraw

    background = tuple(int(v) for v in rng.integers(0, 90, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    radius = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(radius, size - radius, 2))
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    if colour_of is not None:
        base = np.array(CLASS_COLOURS[colour_of])
        colour = tuple(int(v) for v in np.clip(base + rng.integers(-25, 25, 3), 0, 255))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon(
            [(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour
        )
    noise = rng.integers(-20, 20, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.int64) + noise, 0, 255).astype(np.uint8))


def write_shapes(
    root: Path,
    per_class: int,
    size: int = 32,
    seed: int = 0,
    classes: tuple[str, ...] = SHAPES,
    suffix: str = ".png",
    coloured: bool = True,
) -> Path:
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        kind = name if name in SHAPES else SHAPES[index % len(SHAPES)]
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = draw_shape(kind, size, rng, kind if coloured else None)
            image.save(root / name / f"{name}_{i:03d}{suffix}")
    return root


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """One intra-op thread: on a 2-core box shared with other processes, OpenMP's second thread
    waits for a busy core and makes eager torch ~10x slower, not faster."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 40 images of 32 px coloured shapes (a learnable synthetic task)."""
    return write_shapes(tmp_path_factory.mktemp("shapes"), per_class=40)
