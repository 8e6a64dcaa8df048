"""Image-folder datasets: one sub-folder per class, split stratified into train and validation.

    data/cat/001.jpg, data/dog/002.png, ...          -> split by --val-fraction with --seed
    data/train/cat/..., data/val/cat/... [data/test/] -> used as given

Every file is decoded once up front (`scan`): unreadable ones are reported by path and skipped,
so an epoch never meets a broken file. The split is written to `split.json` and can be read back
(`load_split_file`) to reproduce a run exactly. Images go through `onyx.contract.preprocess`, the
same code the server runs; augmentation (train only) happens on the PIL image before it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from onyx.contract.errors import ServeError
from onyx.contract.preprocess import IMAGE_SUFFIXES, decode_image, preprocess_image
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.data.splits import stratified_split
from onyx.train.tasks.image.augment import Augment, crop_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class Split:
    labels: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample] = field(default_factory=list)
    # Files that could not be decoded, with the reason.
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise ValueError(
            f"{root}: need at least 2 class folders (one sub-folder of images per class), "
            f"found {[f.name for f in folders]}"
        )
    return folders


def readable(path: Path) -> str:
    """'' when the server's decoder can read `path`, else why not."""
    try:
        decode_image(path.read_bytes())
    except (ServeError, OSError) as exc:
        return str(exc)
    return ""


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    ignored = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if ignored:
        log.warning("%s: ignoring %d non-image files (e.g. %s)", folder, len(ignored), ignored[0])
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]


def scan(
    root: Path, labels: Sequence[str], skipped: list[tuple[Path, str]] | None = None
) -> list[Sample]:
    """Every readable image under root/<label>/, sorted; unreadable ones go to `skipped`."""
    samples = []
    for index, label in enumerate(labels):
        good = 0
        for path in image_files(root / label):
            reason = readable(path)
            if reason:
                log.warning("skipping unreadable image %s: %s", path, reason)
                if skipped is not None:
                    skipped.append((path, reason))
                continue
            samples.append(Sample(path, index))
            good += 1
        if not good:
            raise ValueError(
                f"{root / label}: class folder has no readable images "
                f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
    return samples


def load_split(root: Path, val_fraction: float, seed: int) -> Split:
    """Use root/train and root/val (and root/test) when present, else split root per class."""
    skipped: list[tuple[Path, str]] = []
    if (root / "train").is_dir() and (root / "val").is_dir():
        labels = [f.name for f in class_folders(root / "train")]
        test = scan(root / "test", labels, skipped) if (root / "test").is_dir() else []
        return Split(
            labels,
            scan(root / "train", labels, skipped),
            scan(root / "val", labels, skipped),
            test,
            skipped,
        )
    labels = [f.name for f in class_folders(root)]
    train, val = stratified_split(scan(root, labels, skipped), val_fraction, seed)
    return Split(labels, train, val, [], skipped)


def save_split(split: Split, path: Path) -> None:
    def files(samples: list[Sample]) -> list[list[Any]]:
        return [[str(s.path), s.label] for s in samples]

    data = {
        "labels": split.labels,
        "train": files(split.train),
        "val": files(split.val),
        "test": files(split.test),
        "skipped": [[str(p), r] for p, r in split.skipped],
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def load_split_file(path: Path) -> Split:
    """A split written by `save_split`: the same files in the same roles."""
    data = json.loads(path.read_text())

    def samples(key: str) -> list[Sample]:
        return [Sample(Path(p), int(label)) for p, label in data[key]]

    return Split(list(data["labels"]), samples("train"), samples("val"), samples("test"))


class ImageFolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """Decodes one image per item; augments it (train) then applies the serving transform."""

    def __init__(
        self, samples: Sequence[Sample], spec: pb.ImagePreprocessing, augment: Augment | None = None
    ) -> None:
        self.samples = list(samples)
        self.spec = spec
        self.augment = augment
        self.augmented_spec = crop_spec(spec)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # `scan` decoded every file up front; one that breaks later (deleted, rewritten) is
        # reported and replaced by the next readable one rather than ending the epoch.
        for attempt in range(len(self.samples)):
            sample = self.samples[(index + attempt) % len(self.samples)]
            try:
                return self._load(sample)
            except (ServeError, OSError) as exc:
                log.warning("skipping %s, unreadable since the scan: %s", sample.path, exc)
        raise RuntimeError("no readable image left in the dataset")

    def _load(self, sample: Sample) -> tuple[torch.Tensor, int]:
        # The server's decoder (EXIF orientation, first frame), on the file's bytes.
        image = decode_image(sample.path.read_bytes())
        if self.augment is None:
            array = preprocess_image(image, self.spec)
        else:
            array = preprocess_image(self.augment(image), self.augmented_spec)
        return torch.from_numpy(np.ascontiguousarray(array)), sample.label
