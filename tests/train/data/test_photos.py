"""The real-photo transfer set: class folders, crops from disjoint halves, reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from onyx.train.data.photos import (
    MULTICLASS,
    NEGATIVE,
    POSITIVE,
    PhotoSetSizes,
    build_photo_dataset,
    half_crops,
    load_photo,
)

SMALL = PhotoSetSizes(train=12, val=8, heldout=2, size=64)


def test_multiclass_and_binary_class_folders(tmp_path: Path) -> None:
    multi = build_photo_dataset(tmp_path / "multi", sizes=SMALL)
    for split, count in (("train", 12), ("val", 8), ("heldout", 2)):
        folders = sorted(p.name for p in (multi / split).iterdir())
        assert folders == sorted(MULTICLASS)
        assert all(len(list((multi / split / f).glob("*.jpg"))) == count for f in folders)
    binary = build_photo_dataset(tmp_path / "binary", binary=True, sizes=SMALL)
    assert sorted(p.name for p in (binary / "train").iterdir()) == [POSITIVE, NEGATIVE]
    negatives = list((binary / "train" / NEGATIVE).glob("*.jpg"))
    assert len({p.name.split("-")[0] for p in negatives}) >= 5  # drawn from several photos
    with Image.open(negatives[0]) as image:
        assert image.size == (64, 64)


def test_train_and_validation_crops_come_from_disjoint_halves() -> None:
    photo = load_photo("coffee")
    width = photo.width
    rng = np.random.default_rng(0)
    # Mark each half, then check every crop holds only its own half's marker.
    marked = Image.new("RGB", photo.size, (255, 0, 0))
    marked.paste((0, 0, 255), (width // 2, 0, width, photo.height))
    left = half_crops(marked, 20, 32, rng, right=False)
    right = half_crops(marked, 20, 32, rng, right=True)
    assert all(np.asarray(c)[..., 2].max() == 0 for c in left)
    assert all(np.asarray(c)[..., 0].max() == 0 for c in right)


def test_same_seed_same_set(tmp_path: Path) -> None:
    a = build_photo_dataset(tmp_path / "a", sizes=SMALL, seed=3)
    b = build_photo_dataset(tmp_path / "b", sizes=SMALL, seed=3)
    for path in sorted(a.rglob("*.jpg"))[:10]:
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes()
