"""bench/handrolled.py end to end on the tiny model: both servers answer, the report has both."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import handrolled
from tests.serve.tiny_models import write_image_model


@pytest.mark.slow
def test_onyx_and_the_handrolled_server_are_measured_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_image_model(tmp_path)
    argv = ["handrolled.py", "-r", str(tmp_path), "-m", "tiny", "-c", "2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--rounds", "2", "--seconds", "0.3"])
    handrolled.main()
    report = capsys.readouterr().out
    assert "c=2, 2 rounds of 0.3 s; raw session.run p50" in report
    for server in ("onyx", "hand-rolled"):
        line = next(line for line in report.splitlines() if line.strip().startswith(server))
        assert float(line.split()[1]) > 10  # requests per second, both servers answered
