"""A real-photo transfer set from photos that ship inside installed packages (no downloads).

    root = build_photo_dataset(Path("data/photos"))               # 6 classes
    root = build_photo_dataset(Path("data/cat"), binary=True)     # cat / not_cat

Each class is one real photo (scikit-image's chelsea, coffee, rocket, astronaut; scikit-learn's
china and flower; matplotlib's grace_hopper for the binary negatives). Training crops come from
the left half of each photo, validation crops from the disjoint right half, so a model must
recognise parts of a scene it never saw: a leak-free split that a linear probe on ImageNet
features passes and a network trained from scratch on a few dozen crops mostly does not.
The result is a class-folder dataset, `root/train/<class>/*.jpg` and `root/val/<class>/*.jpg`
(plus `root/heldout/<class>/*.jpg`, more right-half crops for classifying after export), which
`onyx train image root` reads as an explicit split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# The multiclass set: distinct scenes, each large enough for dozens of crops per half.
MULTICLASS = ("astronaut", "cat", "china", "coffee", "flower", "rocket")
# Binary: the cat against every other photo.
POSITIVE = "cat"
NEGATIVE = "not_cat"
SPLITS = ("train", "val", "heldout")


@dataclass(frozen=True)
class PhotoSetSizes:
    """Crops per class and split; `size` is the saved square crop's side in pixels."""

    train: int = 24
    val: int = 12
    heldout: int = 4
    size: int = 96


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        image: np.ndarray = getattr(data, name)()
        return image

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        image: np.ndarray = load_sample_image(name)
        return image

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(str(path)) as image:
        return np.asarray(image.convert("RGB"))


SOURCES: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "cat": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "hopper": _grace_hopper,
}


def load_photo(name: str) -> Image.Image:
    """One of `SOURCES` as an RGB PIL image."""
    return Image.fromarray(np.asarray(SOURCES[name]())).convert("RGB")


def half_crops(
    photo: Image.Image, count: int, size: int, rng: np.random.Generator, right: bool
) -> list[Image.Image]:
    """`count` square crops lying wholly in the left (or right) half of `photo`, each a third to
    two thirds of the half's shorter side, resized to `size`."""
    width, height = photo.size
    left, stop = (width // 2, width) if right else (0, width // 2)
    short = min(height, stop - left)
    crops = []
    for _ in range(count):
        side = int(rng.integers(short // 3, 2 * short // 3 + 1))
        x = int(rng.integers(left, stop - side + 1))
        y = int(rng.integers(0, height - side + 1))
        crop = photo.crop((x, y, x + side, y + side))
        crops.append(crop.resize((size, size), Image.Resampling.BICUBIC))
    return crops


def _class_sources(binary: bool) -> dict[str, list[str]]:
    if not binary:
        return {name: [name] for name in MULTICLASS}
    others = [name for name in SOURCES if name != POSITIVE]
    return {POSITIVE: [POSITIVE], NEGATIVE: others}


def _split_counts(binary: bool, sizes: PhotoSetSizes, photos: int) -> dict[str, int]:
    """Crops per photo in each split; binary negatives share the class's count among photos."""
    counts = {"train": sizes.train, "val": sizes.val, "heldout": sizes.heldout}
    if binary and photos > 1:
        return {split: max(1, -(-n // photos)) for split, n in counts.items()}
    return counts


def build_photo_dataset(
    root: Path,
    *,
    binary: bool = False,
    sizes: PhotoSetSizes | None = None,
    seed: int = 0,
) -> Path:
    """Write the photo set under `root` (see the module docstring) and return `root`.

    binary: two classes, `cat` (crops of chelsea) and `not_cat` (crops of the other photos);
    else one class per photo of `MULTICLASS`. Deterministic for a `seed`; about a second.
    """
    sizes = sizes or PhotoSetSizes()
    rng = np.random.default_rng(seed)
    for label, names in _class_sources(binary).items():
        counts = _split_counts(binary, sizes, len(names))
        for name in names:
            photo = load_photo(name)
            for split in SPLITS:
                folder = root / split / label
                folder.mkdir(parents=True, exist_ok=True)
                crops = half_crops(photo, counts[split], sizes.size, rng, right=split != "train")
                for i, crop in enumerate(crops):
                    crop.save(folder / f"{name}-{i:03d}.jpg", quality=90)
    return root
