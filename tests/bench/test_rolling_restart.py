"""bench/rolling_restart.py end to end on the tiny model: every replica is restarted under load,
exits 0 on SIGTERM, comes back, and the report counts requests and failures.

Failures are reported, not asserted to be 0 here: that figure is the benchmark's (bench/README.md),
measured on a quiet machine."""

from __future__ import annotations

import re

import pytest

from bench import rolling_restart


def test_target_lists_every_replica_for_round_robin(tmp_path: object) -> None:
    replicas = [rolling_restart.Replica(tmp_path, port, []) for port in (5001, 5002)]  # type: ignore[arg-type]
    assert rolling_restart.round_robin_target(replicas) == "ipv4:127.0.0.1:5001,127.0.0.1:5002"


@pytest.mark.slow
def test_rolling_restart_under_load(capsys: pytest.CaptureFixture[str]) -> None:
    status = rolling_restart.main(
        ["--tiny", "--replicas", "2", "--clients", "2", "--settle-s", "1", "--grace-s", "5"]
    )
    out = capsys.readouterr().out
    found = re.search(r"requests: (\d+)\s+failed: (\d+)", out)
    assert found, out
    requests, failed = int(found.group(1)), int(found.group(2))
    assert requests > 50, out
    restarts = re.findall(r"replica (\d): SIGTERM -> exit (\d+)", out)
    assert restarts == [("0", "0"), ("1", "0")], out
    assert status == (0 if failed == 0 else 1)
