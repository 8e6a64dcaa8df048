"""bench/perf_analyzer.py: reading perf_analyzer's report, the ratios, and (slow, where the
binary can start) one real perf_analyzer run against a real server over KServe v2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.perf_analyzer import (
    Level,
    Round,
    binary_environment,
    find_binary,
    parse_report,
    run_level,
    summary,
)
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from tests.serve.tiny_models import write_image_model
from tests.tools import missing_tool

# Two rows as perf_analyzer 2.41 writes them with `-f` (latencies in microseconds).
HEADER = "Concurrency,Inferences/Second,Client Send,Client Recv,"
HEADER += "p50 latency,p90 latency,p95 latency,p99 latency"
REPORT = f"""{HEADER}
1,39.644,76,3,24501,27842,28554,36343
16,42.1,80,4,381730,400000,420000,436860
"""


def test_report_rows_become_levels_in_milliseconds() -> None:
    assert parse_report(REPORT) == [
        Level(concurrency=1, inputs_per_s=39.644, p50_ms=24.501, p99_ms=36.343),
        Level(concurrency=16, inputs_per_s=42.1, p50_ms=381.73, p99_ms=436.86),
    ]


def test_summary_is_the_median_over_rounds_of_each_rounds_own_ratio() -> None:
    rounds = [
        Round(20.0, 50.0, 1, [Level(1, 40.0, 21.0, 30.0)]),
        Round(24.0, 40.0, 2, [Level(1, 30.0, 27.0, 35.0)]),
        Round(22.0, 45.0, 1, [Level(1, 36.0, 23.0, 32.0)]),
    ]
    figures = summary(rounds)["c=1"]
    # Each round is compared with the raw figures of the same round: +1, +3, +1 ms.
    assert figures["p50_minus_raw_bs1_ms"] == pytest.approx(1.0)
    assert figures["vs_raw_best"] == pytest.approx(0.8)  # 0.8, 0.75, 0.8
    assert figures["p50_ms"] == pytest.approx(23.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    write_image_model(tmp_path)
    config = ServerConfig(repository=tmp_path, host="127.0.0.1", port=0, metrics=False)
    with ServerThread(config) as running:
        yield running


@pytest.mark.slow
def test_perf_analyzer_measures_onyx_over_kserve(server: ServerThread) -> None:
    binary = find_binary()
    try:
        env = binary_environment(binary)
    except SystemExit as exc:  # libb64 / libcudart missing: an optional tool on this machine
        missing_tool(str(exc))
    level = run_level(binary, env, server.address, "tiny", concurrency=2, window_ms=1000)
    assert level.concurrency == 2
    assert level.inputs_per_s > 10
    assert 0 < level.p50_ms <= level.p99_ms
