"""Labelled data and the served preprocessing, as the evaluator and the variant gate read them.

`labelled_samples` and `labelled_texts` read a test or validation set labelled with a model's own
label indices; `image_prepare` and `text_prepare` turn a batch of its items (image paths, texts)
into the model's input exactly as the server would (onyx.contract's transform and tokenizer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onyx.contract.preprocess import decode_image, preprocess_image
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.tasks.image.data import Sample, scan

# A batch of items (image paths, or texts) -> the model's input batch
Prepare = Callable[[Sequence[Any]], np.ndarray]


def image_prepare(spec: pb.ImagePreprocessing) -> Prepare:
    def prepare(paths: Sequence[Any]) -> np.ndarray:
        return np.stack([preprocess_image(decode_image(Path(p).read_bytes()), spec) for p in paths])

    return prepare


def text_prepare(encoder: Any) -> Prepare:
    """`encoder`: an onyx.contract.text.TextEncoder; rows right-padded as the server pads them."""
    from onyx.contract.text import pad_batch

    def prepare(texts: Sequence[Any]) -> np.ndarray:
        return pad_batch([encoder.encode(str(t)) for t in texts])

    return prepare


def labelled_samples(data_dir: Path, labels: Sequence[str]) -> list[Sample]:
    """Images under data_dir/<label>/ (or its test/ or val/), labelled with the model's indices."""
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: an image model is scored on a folder of class folders")
    for part in ("test", "val"):
        if (data_dir / part).is_dir():
            data_dir = data_dir / part
            break
    folders = sorted(
        p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    unknown = [f for f in folders if f not in labels]
    if unknown or not folders:
        raise ValueError(
            f"{data_dir}: class folders {unknown or folders} are not among the "
            f"model's labels; allowed: {', '.join(labels)}"
        )
    found = scan(data_dir, folders)
    return [Sample(s.path, list(labels).index(folders[s.label])) for s in found]


def labelled_texts(
    data: Path, labels: Sequence[str], columns: tuple[str, str]
) -> tuple[list[str], list[int], list[str]]:
    """(texts, label indices, "file:line" sources) from a CSV/TSV/JSONL file or a folder of
    label folders (an IMDb-style root: its test/, else val/). Unknown labels are an error."""
    from onyx.train.tasks.text.data import check_labels, read_examples, read_folder

    if data.is_dir():
        part = next((data / p for p in ("test", "val") if (data / p).is_dir()), data)
        examples = read_folder(part)
    else:
        examples = read_examples(data, *columns)
    check_labels(examples, labels)
    return (
        [e.text for e in examples],
        [list(labels).index(e.label) for e in examples],
        [e.source for e in examples],
    )
