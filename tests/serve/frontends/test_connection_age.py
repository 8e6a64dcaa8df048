"""--max-connection-age reaches gRPC core: an aged connection gets GOAWAY and the client's
channel reconnects by itself, every call succeeding (how L4 load balancing gets to spread
long-lived channels over new pods)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.serve.server import connection_age_options


def _connections_during(config: ServerConfig, seconds: float) -> tuple[int, int]:
    """(calls that succeeded, connections the channel made) over `seconds` of steady calls."""
    with ServerThread(config) as server, grpc.insecure_channel(server.address) as channel:
        states: list[grpc.ChannelConnectivity] = []
        channel.subscribe(states.append, try_to_connect=True)
        stub = health_pb2_grpc.HealthStub(channel)
        calls, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)  # raises if one fails
            calls += 1
            time.sleep(0.05)
        channel.unsubscribe(states.append)
    return calls, states.count(grpc.ChannelConnectivity.READY)


def test_aged_connections_are_replaced_transparently(tmp_path: Path) -> None:
    config = ServerConfig(repository=tmp_path, host="127.0.0.1", port=0, metrics=False,
                          max_connection_age_s=0.4, max_connection_age_grace_s=0.5)  # fmt: skip
    calls, connections = _connections_during(config, 2.5)
    assert calls > 10
    # ~6 ages fit in 2.5 s; gRPC jitters the age by ±10 % and reconnects lazily.
    assert connections >= 3, connections


def test_age_zero_keeps_one_connection(tmp_path: Path) -> None:
    config = ServerConfig(repository=tmp_path, host="127.0.0.1", port=0, metrics=False,
                          max_connection_age_s=0)  # fmt: skip
    assert connection_age_options(config) == []
    _, connections = _connections_during(config, 1.5)
    assert connections == 1


def test_default_age_is_minutes_with_a_grace() -> None:
    options = dict(connection_age_options(ServerConfig()))
    assert 60_000 <= options["grpc.max_connection_age_ms"] <= 30 * 60_000
    assert options["grpc.max_connection_age_grace_ms"] > 0
