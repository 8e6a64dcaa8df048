"""Reading labelled text: CSV/TSV, JSON Lines, IMDb folders, and errors that say where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onyx.train.tasks.text.data import DataError, load_text_split, read_examples, stratified_split


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_named_columns_and_multiline_quoted_text(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", 'id,review,stars\n1,"great, really\ngreat",pos\n2,awful,neg\n')
    examples = read_examples(path, text_column="review", label_column="stars")
    assert [(e.text, e.label) for e in examples] == [
        ("great, really\ngreat", "pos"),
        ("awful", "neg"),
    ]
    assert examples[1].source == f"{path}:4"


def test_tsv_and_jsonl(tmp_path: Path) -> None:
    tsv = write(tmp_path / "r.tsv", "text\tlabel\nfine film\t1\nbad film\t0\n")
    assert [e.label for e in read_examples(tsv)] == ["1", "0"]
    jsonl = write(
        tmp_path / "r.jsonl",
        json.dumps({"text": "ok", "label": 1})
        + "\n\n"
        + json.dumps({"text": "meh", "label": "0"})
        + "\n",
    )
    assert [(e.text, e.label) for e in read_examples(jsonl)] == [("ok", "1"), ("meh", "0")]


def test_imdb_layout_splits_train_and_keeps_test(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            for i in range(5):
                write(tmp_path / split / label / f"{i}_7.txt", f"{label} review {i}<br />end")
    write(tmp_path / "train" / "unsup" / "0_0.txt", "no label")
    split = load_text_split(tmp_path, None, [], 0.2, seed=0)
    assert split.labels == ["neg", "pos"]
    assert (len(split.train), len(split.val), len(split.test)) == (8, 2, 10)
    assert sorted(e.label for e in split.val) == ["neg", "pos"]  # stratified


def test_split_is_reproducible_with_the_seed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.jsonl",
        "".join(json.dumps({"text": f"t{i}", "label": i % 3}) + "\n" for i in range(60)),
    )
    examples = read_examples(path)
    first, again = stratified_split(examples, 0.25, 1), stratified_split(examples, 0.25, 1)
    other = stratified_split(examples, 0.25, 2)
    assert first == again
    assert first != other
    assert len(first[1]) == 15


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("r.csv", "text,label\ngood,pos\n  ,neg\n", r"r.csv:3: empty text"),
        (
            "r.jsonl",
            '{"text": "ok", "label": "a"}\n{"text": "", "label": "b"}\n',
            r"r.jsonl:2: empty text",
        ),
        ("r.jsonl", '{"text": "ok", "label": "a"}\n{"text": "x"\n', r"r.jsonl:2: not valid JSON"),
        ("r.csv", b"text,label\ngood,pos\nna\xefve,neg\n", r"r.csv:3: bytes b'\\xef.*not UTF-8"),
        (
            "r.csv",
            "body,label\nx,y\n",
            r"r.csv:1: no column 'text'; columns are \['body', 'label'\]",
        ),
        ("r.txt", "x", r"unknown data format '.txt'"),
    ],
)
def test_bad_data_names_file_and_line(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        read_examples(write(tmp_path / name, content))


def test_undecodable_review_file_is_named(tmp_path: Path) -> None:
    write(tmp_path / "train" / "pos" / "1.txt", "fine")
    write(tmp_path / "train" / "neg" / "2.txt", b"line one\nbad \xff byte")
    with pytest.raises(DataError, match=r"neg/2.txt:2: bytes"):
        load_text_split(tmp_path, None, [], 0.5, seed=0)


def test_unknown_labels_are_named_with_their_line(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\nc,pos\n")
    val = write(tmp_path / "val.csv", "text,label\na,pos\nb,neutral\n")
    with pytest.raises(
        DataError, match=r"val.csv:3: unknown label 'neutral'; labels are \['neg', 'pos'\]"
    ):
        load_text_split(train, val, [], 0.2, seed=0)
    with pytest.raises(DataError, match=r"train.csv:3: unknown label 'neg'"):
        load_text_split(train, None, ["pos", "other"], 0.2, seed=0)
