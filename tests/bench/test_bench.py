"""`onyx bench` pieces: bounded load loops, the server-side split, ratios, and a real run."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from onyx.bench.baseline import BaselineResult
from onyx.bench.load import RunResult, closed_loop, open_loop
from onyx.bench.report import median_over_rounds, ratios
from onyx.bench.scrape import server_split
from onyx.cli import main
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig, TlsConfig
from onyx.serve.metrics import ServerMetrics
from tests.serve.test_process import self_signed
from tests.serve.tiny_models import write_image_model, write_text_model


def test_closed_loop_stops_at_the_request_cap() -> None:
    calls = []

    async def send() -> None:
        calls.append(1)
        await asyncio.sleep(0)

    asyncio.run(closed_loop(send, concurrency=4, duration_s=60, max_requests=25, progress=print))
    assert len(calls) == 25


def test_open_loop_drops_beyond_the_inflight_cap() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.5)

    seconds, dropped = asyncio.run(
        open_loop(slow, rate=200, duration_s=0.1, max_requests=20, max_inflight=5, progress=int)
    )
    assert dropped == 15 and seconds >= 0.5


def test_server_split_is_mean_per_request_between_scrapes() -> None:
    labels = frozenset({("model", "m"), ("version", "1")})
    before = {("onyx_queue_duration_seconds_sum", labels): 1.0,
              ("onyx_queue_duration_seconds_count", labels): 10.0}  # fmt: skip
    after = {
        ("onyx_queue_duration_seconds_sum", labels): 1.5,
        ("onyx_queue_duration_seconds_count", labels): 20.0,
        ("onyx_batch_size_sum", labels): 30.0,
        ("onyx_batch_size_count", labels): 10.0,
    }
    assert server_split(before, after, "m") == {"queue_ms": 50.0, "mean_batch_size": 3.0}


def test_ratios_compare_with_raw_best_batch_and_batch_one() -> None:
    run = RunResult("closed", 1, 1, seconds=1.0, latencies=[0.012] * 90)
    raw = [BaselineResult(1, 80.0, 10.0), BaselineResult(8, 100.0, 70.0)]
    assert ratios(run, raw) == {"throughput_vs_raw_best": 0.9, "p50_minus_raw_bs1_ms": 2.0}


def test_median_over_rounds_compares_each_round_with_its_own_baseline() -> None:
    def round_(p50_s: float, raw_bs1_ms: float, raw_best: float) -> tuple[Any, Any]:
        run = RunResult("closed", 1, 1, seconds=1.0, latencies=[p50_s] * 45)
        return [run], [BaselineResult(1, raw_best, raw_bs1_ms)]

    # Server p50 - raw bs1 per round: +2, +4, +1 ms; 45/s over raw best 50, 45, 90.
    rounds = [round_(0.022, 20.0, 50.0), round_(0.030, 26.0, 45.0), round_(0.021, 20.0, 90.0)]
    (level,) = median_over_rounds(rounds)
    assert level["rounds"] == 3 and level["mode"] == "closed"
    assert level["p50_minus_raw_bs1_ms"] == pytest.approx(2.0)
    assert level["throughput_vs_raw_best"] == pytest.approx(0.9)  # of 0.9, 1.0, 0.5
    assert level["p50_ms"] == pytest.approx(22.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    write_image_model(tmp_path)
    metrics = ServerMetrics(CollectorRegistry(), process=False)
    config = ServerConfig(repository=tmp_path, host="127.0.0.1", port=0, metrics_port=0)
    with ServerThread(config, metrics=metrics) as running:
        yield running


def test_bench_command_against_a_real_server(server: ServerThread, tmp_path: Path) -> None:
    assert server.running is not None
    args = [
        "bench", "--server", server.address, "--model", "tiny", "-c", "1,3", "--rate", "50",
        "--duration", "0.3", "--repository", str(tmp_path), "--baseline",
        "--baseline-batches", "1,4", "--json",
        "--metrics-url", f"http://127.0.0.1:{server.running.metrics_port}/metrics",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert [b["batch_size"] for b in report["baseline"]] == [1, 4]
    assert [(r["mode"], r["level"]) for r in report["runs"]] == [
        ("closed", 1.0), ("closed", 3.0), ("open", 50.0),
    ]  # fmt: skip
    for run in report["runs"]:
        assert run["requests_ok"] > 0 and run["errors"] == {}
        assert run["server"]["mean_batch_size"] >= 1
        assert isinstance(run["throughput_vs_raw_best"], float)


def test_bench_rounds_report_each_round_and_the_median(
    server: ServerThread, tmp_path: Path
) -> None:
    args = [
        "bench", "--server", server.address, "--model", "tiny", "-c", "2", "--duration", "0.2",
        "--repository", str(tmp_path), "--baseline", "--baseline-batches", "1,2",
        "--rounds", "2", "--json",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert len(report["rounds"]) == 2
    for one in report["rounds"]:
        assert [b["batch_size"] for b in one["baseline"]] == [1, 2]
        assert one["runs"][0]["requests_ok"] > 0
    (level,) = report["median"]
    assert level["rounds"] == 2 and level["level"] == 2.0
    assert level["throughput_vs_raw_best"] > 0


def test_bench_text_baseline_uses_the_models_vocabulary(tmp_path: Path) -> None:
    write_text_model(tmp_path)
    config = ServerConfig(repository=tmp_path, host="127.0.0.1", port=0)
    with ServerThread(config, metrics=ServerMetrics(CollectorRegistry(), process=False)) as server:
        args = [
            "bench", "--server", server.address, "--model", "words", "-c", "2",
            "--duration", "0.3", "--text", "not good", "--repository", str(tmp_path),
            "--baseline", "--baseline-batches", "1", "--json",
        ]  # fmt: skip
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["runs"][0]["requests_ok"] > 0 and report["runs"][0]["errors"] == {}
    assert report["baseline"][0]["batch_size"] == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_bench_reaches_a_mutual_tls_server_by_dns_name(tmp_path: Path) -> None:
    write_image_model(tmp_path)
    server_cert, server_key = self_signed(tmp_path, "localhost")
    client_cert, client_key = self_signed(tmp_path, "client")
    tls = TlsConfig(server_cert, server_key, client_ca=client_cert)
    config = ServerConfig(repository=tmp_path, host="127.0.0.1", port=0, tls=tls, metrics=False)
    with ServerThread(config) as server:
        base = ["bench", "--server", f"dns:///localhost:{server.port}", "--model", "tiny",
                "-c", "2", "--duration", "0.3", "--json"]  # fmt: skip
        trusted = ["--tls-ca", str(server_cert), "--tls-cert", str(client_cert),
                   "--tls-key", str(client_key)]  # fmt: skip
        result = CliRunner().invoke(main, [*base, *trusted])
        assert result.exit_code == 0, result.output
        (run,) = json.loads(result.output[result.output.index("{") :])["runs"]
        assert run["requests_ok"] > 0 and run["errors"] == {}
        half = CliRunner().invoke(main, [*base, "--tls-cert", str(client_cert)])
        assert half.exit_code == 2 and "--tls-key" in half.output
