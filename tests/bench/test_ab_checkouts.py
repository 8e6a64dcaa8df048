"""bench/ab_checkouts.py for real: two servers from checkouts (this one twice, one with other
arguments) and the naive server on the digits model, measured with CPU accounting."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench import ab_checkouts

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_servers_from_checkouts_are_measured_side_by_side(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ab_checkouts.py", f"now={ROOT}", f"one={ROOT}:--intra-op-threads 1", "naive=naive",
            "--model", "digits", "-c", "2", "--reps", "1", "--seconds", "0.5"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    ab_checkouts.main()
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == {"now", "one", "naive"}
    for name, row in rows.items():
        rate, p50, server_cpu, loop_cpu = float(row[2]), float(row[3]), float(row[4]), row[5]
        assert rate > 10 and p50 > 0, (name, row)
        assert 0 < server_cpu < 50, (name, row)  # a real process's CPU, per request
        assert loop_cpu.startswith("(") and float(loop_cpu.strip("()")) <= server_cpu


def test_cpu_seconds_reads_this_process_and_its_main_thread() -> None:
    before = ab_checkouts.cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))  # burn some CPU on this (the main) thread
    after = ab_checkouts.cpu_seconds(os.getpid())
    assert after > before
    assert ab_checkouts.cpu_seconds(os.getpid(), os.getpid()) <= after
