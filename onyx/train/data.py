"""Image-folder datasets: one sub-folder per class, split stratified into train and validation.

    data/cat/001.jpg, data/dog/002.png, ...          -> split by --val-fraction with --seed
    data/train/cat/..., data/val/cat/...             -> used as given

Images go through `onyx.serve.preprocess`, the same code the server runs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.preprocess import decode_image, preprocess_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class Split:
    labels: list[str]
    train: list[Sample]
    val: list[Sample]


def class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise ValueError(
            f"{root}: need at least 2 class folders, found {[f.name for f in folders]}"
        )
    return folders


def scan(root: Path, labels: Sequence[str]) -> list[Sample]:
    """Every image under root/<label>/ for the given labels, sorted for determinism."""
    samples = []
    for index, label in enumerate(labels):
        files = sorted(p for p in (root / label).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(
                f"{root / label}: class folder has no images ({sorted(IMAGE_SUFFIXES)})"
            )
        samples += [Sample(path, index) for path in files]
    return samples


def load_split(root: Path, val_fraction: float, seed: int) -> Split:
    """Use root/train and root/val when present, else split root's class folders per class."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        labels = [f.name for f in class_folders(root / "train")]
        return Split(labels, scan(root / "train", labels), scan(root / "val", labels))
    labels = [f.name for f in class_folders(root)]
    train, val = stratified_split(scan(root, labels), val_fraction, seed)
    return Split(labels, train, val)


def stratified_split(
    samples: Sequence[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Hold out `val_fraction` of every class (at least one image each), reproducibly."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = random.Random(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted({s.label for s in samples}):
        members = [s for s in samples if s.label == label]
        rng.shuffle(members)
        count = max(1, round(len(members) * val_fraction))
        if count >= len(members):
            raise ValueError(f"class {label} has {len(members)} images: too few to split")
        val += members[:count]
        train += members[count:]
    return train, val


class ImageFolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """Decodes and preprocesses one image per item with the serving transform."""

    def __init__(self, samples: Sequence[Sample], spec: pb.ImagePreprocessing) -> None:
        self.samples = list(samples)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        # The server's decoder (EXIF orientation, first frame), on the file's bytes.
        array = preprocess_image(decode_image(sample.path.read_bytes()), self.spec)
        return torch.from_numpy(np.ascontiguousarray(array)), sample.label
