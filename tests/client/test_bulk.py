"""`onyx classify DIR|FILE`: a folder of images or a text file over ClassifyStream, to CSV /
JSON Lines (resumable) or to stdout; retries and the exit status.

python -m pytest tests/client/test_bulk.py
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from onyx.client.classifier import Client
from onyx.client.cli import classify_command
from onyx.serve.background import ServerThread
from tests.serve.tiny_models import png_bytes, write_text_model


def make_folder(root: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = root / f"sub{i % 3}" / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(i))
        paths.append(path)
    (root / "broken.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return paths


def classify(server: ServerThread, *args: str, code: int = 0, model: str = "tiny") -> str:
    result = CliRunner().invoke(
        classify_command, [*args, "--model", model, "--server", server.address]
    )
    assert result.exit_code == code, result.output
    return result.output


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_folder_is_classified_once_and_resumed(
    repo: Path, tmp_path: Path, start_server: Callable[..., ServerThread], suffix: str
) -> None:
    server = start_server(repo)
    images = make_folder(tmp_path / "photos", 7)
    out = tmp_path / f"labels{suffix}"
    output = classify(
        server, str(tmp_path / "photos"), "--out", str(out), "--concurrency", "3", code=1
    )  # a file failed: a script must be able to tell
    assert "7 classified, 0 already done, 1 failed" in output
    assert "broken.png" in output
    rows = read(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in images)
    assert all(r["label"] in {"cat", "dog", "fox"} for r in rows)
    images += make_folder(tmp_path / "photos" / "more", 2)
    output = classify(server, str(tmp_path / "photos"), "--out", str(out), "--resume", code=1)
    assert "2 classified, 7 already done" in output
    assert sorted(r["path"] for r in read(out)) == sorted(str(p) for p in images)


def read(out: Path) -> list[dict[str, str]]:
    with out.open(newline="") as handle:
        if out.suffix == ".csv":
            return list(csv.DictReader(handle))
        return [json.loads(line) for line in handle]


def test_files_still_print_a_table(
    repo: Path, tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(repo)
    (image,) = make_folder(tmp_path, 1)
    output = classify(server, str(image))
    assert output.startswith("model tiny v1")
    assert str(image) in output


def test_a_folder_without_out_prints_a_table_or_json_lines(
    repo: Path, tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(repo)
    images = make_folder(tmp_path / "photos", 3)
    (tmp_path / "photos" / "broken.png").unlink()
    table = classify(server, str(tmp_path / "photos"))
    lines = table.splitlines()
    assert lines[0].split() == ["label", "score", "path"]
    assert sorted(line.split()[2] for line in lines[1:4]) == sorted(str(p) for p in images)
    assert "3 classified" in lines[4]  # the summary (stderr, mixed in by CliRunner)
    records = [json.loads(line) for line in classify(server, str(tmp_path / "photos"), "--json")
               .splitlines() if line.startswith("{")]  # fmt: skip
    assert sorted(r["path"] for r in records) == sorted(str(p) for p in images)
    assert all(len(r["top_k"]) == 3 for r in records)


def write_texts(folder: Path) -> dict[str, Path]:
    texts = ["good good", "bad", "not good at all", "", "bad bad bad"]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "reviews.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "review"])
        writer.writerows([i, t] for i, t in enumerate(texts))
    (folder / "reviews.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    (folder / "reviews.txt").write_text("\n".join(texts) + "\n")
    return {s: folder / f"reviews.{s}" for s in ("csv", "jsonl", "txt")}


def test_a_text_file_is_classified_per_row_and_resumed(
    tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    root = tmp_path / "models"
    write_text_model(root, "words")
    server = start_server(root)
    files = write_texts(tmp_path / "in")
    out = tmp_path / "results.csv"
    output = classify(server, str(files["csv"]), "--text-column", "review", "--out", str(out),
                      model="words")  # fmt: skip
    assert "5 classified, 0 already done, 0 failed" in output
    rows = read(out)
    assert [r["row"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[2]["text"] == "not good at all"
    assert {r["label"] for r in rows} <= {"negative", "positive"}
    with Client(server.address) as client:  # the same answers as unary calls
        direct = client.classify_texts("words", [r["text"] for r in rows], top_k=3)
    assert [r["label"] for r in rows] == [c.classes[0].label for c in direct.results]
    output = classify(server, str(files["csv"]), "--text-column", "review", "--out", str(out),
                      "--resume", model="words")  # fmt: skip
    assert "0 classified, 5 already done" in output
    jsonl = tmp_path / "results.jsonl"
    classify(server, str(files["jsonl"]), "--out", str(jsonl), model="words")
    assert [r["label"] for r in read(jsonl)] == [r["label"] for r in rows]
    # .txt skips the blank line: rows are line numbers.
    table = classify(server, str(files["txt"]), model="words")
    assert [line.split()[2] for line in table.splitlines()[1:5]] == ["1", "2", "3", "5"]


def test_a_missing_text_column_is_a_clear_error(
    tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    root = tmp_path / "models"
    write_text_model(root, "words")
    server = start_server(root)
    files = write_texts(tmp_path / "in")
    output = classify(server, str(files["csv"]), model="words", code=1)
    assert "no column 'text'" in output and "review" in output


def test_a_text_file_that_stops_decoding_fails_the_run_with_a_reason(
    tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    root = tmp_path / "models"
    write_text_model(root, "words")
    server = start_server(root)
    broken = tmp_path / "reviews.txt"
    broken.write_bytes(b"good\nbad\n" + b"x" * 20_000 + b"\n\xff\xfe not utf-8\n")
    output = classify(server, str(broken), model="words", code=1)
    assert "failed" in output and "reading stopped" in output and "utf-8" in output
