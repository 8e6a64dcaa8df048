"""What bulk classify reads: the images of a folder, or the texts of one file, as keyed items.

    items = image_items(Path("photos"))                    # key: the file's path
    items = text_items(Path("reviews.csv"), column="text") # key: the row number

Text files, by suffix: `.csv`/`.tsv` (a header row; the text is in `column`), `.jsonl`/`.ndjson`
(one object per line; the text under the key `column`), `.txt` (one text per non-empty line).
The key is stable across runs (the file's path; the row number, counted from 1 after the header,
or for .jsonl/.txt the line number), so an interrupted run resumes by key. Items are produced
lazily: a million-row file is never held in memory as requests.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from onyx.contract.preprocess import IMAGE_SUFFIXES
from onyx.proto.v1 import classifier_pb2 as api

TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".txt")


class SourceError(ValueError):
    """A text file that cannot be read as asked; the message names the file and line."""


@dataclass(frozen=True)
class Item:
    key: str
    # None: the item could not be read; `error` says why.
    input: api.Input | None
    text: str = ""
    error: str = ""


def is_text_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in TEXT_SUFFIXES


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, in a stable order."""
    files = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(p for p in files if p.is_file())


def image_items(paths: list[Path]) -> Iterator[Item]:
    for path in paths:
        try:
            yield Item(str(path), api.Input(image=path.read_bytes()))
        except OSError as exc:
            yield Item(str(path), None, error=f"unreadable: {exc.strerror or exc}")


def text_items(path: Path, column: str = "text") -> Iterator[Item]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _table_items(path, column, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_items(path, column)
    if suffix == ".txt":
        return _line_items(path)
    raise SourceError(f"{path}: not a text file; use one of {', '.join(TEXT_SUFFIXES)}")


def _item(key: str, text: str) -> Item:
    return Item(key, api.Input(text=text), text=text)


def _table_items(path: Path, column: str, delimiter: str) -> Iterator[Item]:
    handle = path.open(encoding="utf-8-sig", newline="")
    reader = csv.DictReader(handle, delimiter=delimiter)
    if column not in (reader.fieldnames or []):
        handle.close()
        raise SourceError(
            f"{path}:1: no column {column!r}; columns are {reader.fieldnames} "
            "(choose with --text-column)"
        )

    def rows() -> Iterator[Item]:
        with handle:
            for number, row in enumerate(reader, start=1):
                yield _item(str(number), row[column] or "")

    return rows()


def _jsonl_items(path: Path, key: str) -> Iterator[Item]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Item(str(number), None, error=f"{path}:{number}: not JSON: {exc.msg}")
                continue
            if not isinstance(record, dict) or not isinstance(record.get(key), str):
                yield Item(str(number), None, error=f"{path}:{number}: no text under {key!r}")
                continue
            yield _item(str(number), record[key])


def _line_items(path: Path) -> Iterator[Item]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield _item(str(number), text)
