"""Labelled text for the sentiment trainer: CSV/TSV, JSON Lines, or the IMDb folder layout.

    reviews.csv / reviews.tsv   a header row; --text-column and --label-column name the columns
    reviews.jsonl               one JSON object per line, with the same two keys
    aclImdb/                    train/<label>/*.txt and optionally test/<label>/*.txt, one review
                                per file (IMDb's unlabelled train/unsup is skipped)

Without a validation set, a stratified `val_fraction` of the training examples is held out with
the seed. Texts are tokenized by `onyx.contract.text`, the code the server runs. Bad data fails
loudly and says where: an empty text, bytes that are not UTF-8, a missing column or a label
outside the label set are errors naming the file and line (CSV: the line where the row ends).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from onyx.contract.text import TextEncoder, pad_batch
from onyx.train.data.splits import stratified_split

IMDB_SKIPPED = frozenset({"unsup"})
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")


class DataError(ValueError):
    """Unusable training data; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    # "file:line", for error messages.
    source: str


@dataclass(frozen=True)
class TextSplit:
    labels: list[str]
    train: list[Example]
    val: list[Example]
    # IMDb's test/ folder when present: evaluated once, with the best weights.
    test: list[Example]


def read_text_file(path: Path) -> str:
    """UTF-8 (a BOM is allowed); undecodable bytes are an error naming the line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: bytes {raw[exc.start : exc.end]!r} are not UTF-8 (save it as UTF-8)"
        ) from exc


def _example(text: Any, label: Any, source: str) -> Example:
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{source}: empty text")
    if label is None or str(label).strip() == "":
        raise DataError(f"{source}: empty label")
    return Example(text, str(label).strip(), source)


def read_table(path: Path, text_column: str, label_column: str) -> list[Example]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(read_text_file(path), newline=""), delimiter=delimiter)
    missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{path}:1: no column {missing[0]!r}; columns are {reader.fieldnames} "
            f"(choose with --text-column / --label-column)"
        )
    return [
        _example(row[text_column], row[label_column], f"{path}:{reader.line_num}") for row in reader
    ]


def read_jsonl(path: Path, text_column: str, label_column: str) -> list[Example]:
    examples = []
    for number, line in enumerate(read_text_file(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
        if not isinstance(record, dict) or text_column not in record or label_column not in record:
            raise DataError(
                f"{path}:{number}: need an object with {text_column!r} and {label_column!r}"
            )
        examples.append(_example(record[text_column], record[label_column], f"{path}:{number}"))
    return examples


def read_folder(root: Path) -> list[Example]:
    """root/<label>/*.txt: one example per file."""
    folders = sorted(
        p for p in root.iterdir() if p.is_dir() and p.name not in IMDB_SKIPPED and p.name[0] != "."
    )
    if len(folders) < 2:
        raise DataError(f"{root}: need at least 2 label folders, found {[f.name for f in folders]}")
    return [
        _example(read_text_file(path), folder.name, f"{path}:1")
        for folder in folders
        for path in sorted(folder.glob("*.txt"))
    ]


def read_examples(
    path: Path, text_column: str = "text", label_column: str = "label"
) -> list[Example]:
    """One data file (by suffix) or a folder of label folders."""
    if path.is_dir():
        return read_folder(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_table(path, text_column, label_column)
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(path, text_column, label_column)
    raise DataError(f"{path}: unknown data format {suffix!r}; use one of {SUFFIXES} or a folder")


def check_labels(examples: Sequence[Example], labels: Sequence[str]) -> None:
    known = set(labels)
    for example in examples:
        if example.label not in known:
            raise DataError(
                f"{example.source}: unknown label {example.label!r}; labels are {list(labels)}"
            )


def load_text_split(
    data: Path,
    val_data: Path | None,
    labels: Sequence[str],
    val_fraction: float,
    seed: int,
    text_column: str = "text",
    label_column: str = "label",
) -> TextSplit:
    """Train/validation(/test) examples and the label set (given, or sorted from training)."""
    test: list[Example] = []
    if data.is_dir() and (data / "train").is_dir():  # the IMDb layout
        examples = read_folder(data / "train")
        test = read_folder(data / "test") if (data / "test").is_dir() else []
    else:
        examples = read_examples(data, text_column, label_column)
    label_set = list(labels) or sorted({e.label for e in examples})
    if len(label_set) < 2:
        raise DataError(f"{data}: need at least 2 labels, found {label_set}")
    check_labels(examples, label_set)
    if val_data is not None:
        train, val = examples, read_examples(val_data, text_column, label_column)
    else:
        train, val = stratified_split(examples, val_fraction, seed)
    check_labels(val, label_set)
    check_labels(test, label_set)
    return TextSplit(label_set, train, val, test)


class EncodedTexts(Dataset[tuple[np.ndarray, int]]):
    """Examples tokenized once up front with the serving encoder."""

    def __init__(
        self,
        examples: Sequence[Example],
        labels: Sequence[str],
        encoder: TextEncoder,
        tokens: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """`tokens`: the examples' texts already tokenized, when the caller has them."""
        index = {label: i for i, label in enumerate(labels)}
        if tokens is None:
            self.ids = [encoder.encode(e.text) for e in examples]
        else:
            self.ids = [encoder.encode_tokens(t) for t in tokens]
        self.targets = [index[e.label] for e in examples]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.ids[index], self.targets[index]


def collate_padded(items: Sequence[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the batch's longest sequence, as the server's batcher does."""
    ids = pad_batch([ids for ids, _ in items])
    return torch.from_numpy(ids), torch.tensor([target for _, target in items])
