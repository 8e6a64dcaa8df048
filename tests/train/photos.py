"""Real photos that ship with scikit-image, scikit-learn and matplotlib (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def real_photos() -> dict[str, Image.Image]:
    """Eight real RGB photos, by name."""
    import matplotlib.cbook
    from skimage import data
    from sklearn.datasets import load_sample_image

    photos = {
        "cat": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "astronaut": data.astronaut(),
        "motorcycle": data.stereo_motorcycle()[0],
        "china": load_sample_image("china.jpg"),
        "flower": load_sample_image("flower.jpg"),
    }
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        photos["hopper"] = np.asarray(Image.open(file).convert("RGB"))
    return {name: Image.fromarray(np.asarray(p)).convert("RGB") for name, p in photos.items()}


def random_crops(
    photo: Image.Image, count: int, size: int, rng: np.random.Generator, half: str
) -> list[Image.Image]:
    """`count` square crops (a quarter to half of the height) from the left or right half."""
    width, height = photo.size
    left, right = (0, width // 2) if half == "left" else (width // 2, width)
    crops = []
    for _ in range(count):
        side = int(rng.integers(min(height, right - left) // 4, min(height, right - left) // 2))
        x = int(rng.integers(left, right - side))
        y = int(rng.integers(0, height - side))
        crops.append(photo.crop((x, y, x + side, y + side)).resize((size, size)))
    return crops


def write_photo_crops(root: Path, train: int, val: int, size: int = 64, seed: int = 0) -> Path:
    """root/train/<photo>/ from each photo's left half, root/val/<photo>/ from its right half:
    telling photos apart from crops never seen needs features that generalise."""
    rng = np.random.default_rng(seed)
    for name, photo in real_photos().items():
        for split, count, half in (("train", train, "left"), ("val", val, "right")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, crop in enumerate(random_crops(photo, count, size, rng, half)):
                crop.save(folder / f"{i:03d}.png")
    return root
