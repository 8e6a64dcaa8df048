"""bench/small_models.py (issue 13's table) and its naive KServe v2 server, end to end on the tiny
model: every server answers, the table has a row per server and concurrency."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bench import small_models
from tests.serve.tiny_models import write_image_model


@pytest.mark.slow
def test_onyx_with_and_without_workers_and_the_naive_server_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_image_model(tmp_path)
    argv = ["small_models.py", "--model", "tiny", "-r", str(tmp_path), "-c", "1,2"]
    flags = ["--servers", "onyx,onyx-w2,naive", "--reps", "1", "--seconds", "0.3"]
    monkeypatch.setattr(sys, "argv", [*argv, *flags])
    small_models.main()
    report = capsys.readouterr().out
    assert "tiny: 1 reps; raw ORT best" in report
    rows = [line.split() for line in report.splitlines() if line.split()[:1] in (
        ["onyx"], ["onyx-w2"], ["naive"])]  # fmt: skip
    assert [(row[0], row[1]) for row in rows] == [
        (server, c) for server in ("onyx", "onyx-w2", "naive") for c in ("1", "2")
    ]
    assert all(float(row[2]) > 10 for row in rows)  # inputs/s: every server answered
    assert all(row[5] == "1.00" for row in rows if row[0] == "naive")


def test_raw_text_batches_are_padded_to_their_longest_and_can_be_sorted() -> None:
    inputs = [np.full((1, n), 7, np.int64) for n in (5, 2, 9, 3)]
    workload = small_models.Workload("t", Path("m.onnx"), Path(), "input", inputs)
    arrival = small_models.raw_batches(workload, 2, sorted_by_length=False)
    assert [b.shape for b in arrival] == [(2, 5), (2, 9)]
    ordered = small_models.raw_batches(workload, 2, sorted_by_length=True)
    assert [b.shape for b in ordered] == [(2, 3), (2, 9)]
    assert int((ordered[0] == 7).sum()) == 2 + 3  # the rest is padding
