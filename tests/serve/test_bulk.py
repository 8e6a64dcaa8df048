"""`onyx classify DIR`: a folder over ClassifyStream to CSV / JSON Lines, resumable.

python -m pytest tests/serve/test_bulk.py
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from onyx.serve.background import ServerThread
from onyx.serve.cli import classify_command
from tests.serve.tiny_models import png_bytes


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


def classify(server: ServerThread, *args: str) -> str:
    result = CliRunner().invoke(
        classify_command, [*args, "--model", "tiny", "--server", server.address]
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_folder_is_classified_once_and_resumed(
    repo: Path, tmp_path: Path, start_server: Callable[..., ServerThread], suffix: str
) -> None:
    server = start_server(repo)
    images = make_folder(tmp_path / "photos", 7)
    out = tmp_path / f"labels{suffix}"
    output = classify(server, str(tmp_path / "photos"), "--out", str(out), "--concurrency", "3")
    assert "7 classified, 0 already done, 1 failed" in output
    assert "broken.png" in output
    rows = read(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in images)
    assert all(r["label"] in {"cat", "dog", "fox"} for r in rows)
    images += make_folder(tmp_path / "photos" / "more", 2)
    output = classify(server, str(tmp_path / "photos"), "--out", str(out), "--resume")
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
