"""Readiness tells the truth: ready only when every configured model can serve (strict), or once
started (--lenient-readiness); liveness stays separate. Real servers on port 0.

python -m pytest tests/serve/frontends/test_health.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.serve.background import ServerThread
from onyx.serve.server import SERVICES
from tests.serve.tiny_models import write_corrupt_version, write_image_model

Start = Callable[..., ServerThread]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_of(channel: grpc.Channel, service: str = "") -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status)


def readiness(server: ServerThread) -> tuple[bool, bool, list[int]]:
    """(KServe ServerLive, ServerReady, health of "" and of each API)."""
    channel = grpc.insecure_channel(server.address)
    kserve = kv2_grpc.GRPCInferenceServiceStub(channel)
    live = kserve.ServerLive(kv2.ServerLiveRequest(), timeout=10).live
    ready = kserve.ServerReady(kv2.ServerReadyRequest(), timeout=10).ready
    return live, ready, [health_of(channel, s) for s in ("", *SERVICES)]


NOT_READY = (True, False, [NOT_SERVING] * 3)
READY = (True, True, [SERVING] * 3)


@pytest.mark.parametrize("layout", ["missing", "empty", "broken", "unparsable"])
def test_not_ready_when_nothing_or_not_everything_can_serve(
    tmp_path: Path, start_server: Start, layout: str
) -> None:
    root = tmp_path / "models"
    if layout != "missing":
        root.mkdir()
    if layout in ("broken", "unparsable"):
        write_image_model(root, "good", 1)
    if layout == "broken":
        write_corrupt_version(root, "bad", 1)
    if layout == "unparsable":
        (root / "bad").mkdir()
        (root / "bad" / "config.pbtxt").write_text("this is { not a config")
    strict = start_server(root)
    assert readiness(strict) == NOT_READY
    if layout in ("broken", "unparsable"):  # the good model still serves, and says so
        channel = grpc.insecure_channel(strict.address)
        assert health_of(channel, "good") == SERVING and health_of(channel, "bad") == NOT_SERVING
        kserve = kv2_grpc.GRPCInferenceServiceStub(channel)
        assert kserve.ModelReady(kv2.ModelReadyRequest(name="good"), timeout=10).ready
    assert readiness(start_server(root, lenient_readiness=True)) == READY


def test_ready_when_every_model_is(tmp_path: Path, start_server: Start) -> None:
    root = tmp_path / "models"
    write_image_model(root, "a", 1)
    write_image_model(root, "b", 2)
    assert readiness(start_server(root)) == READY


def test_explicit_control_waits_only_for_the_models_it_loads(
    tmp_path: Path, start_server: Start
) -> None:
    root = tmp_path / "models"
    write_image_model(root, "wanted", 1)
    write_corrupt_version(root, "unwanted", 1)  # on disk, never asked for
    server = start_server(root, model_control="explicit", startup_models=("wanted",))
    assert readiness(server) == READY
    kserve = kv2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
    kserve.RepositoryModelUnload(kv2.RepositoryModelUnloadRequest(model_name="wanted"), timeout=30)
    # Nothing configured any more: an empty server is not ready.
    assert readiness(server) == NOT_READY


def test_health_watch_ends_at_shutdown(repo: Path, start_server: Start) -> None:
    server = start_server(repo)
    channel = grpc.insecure_channel(server.address)
    stream = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=""), timeout=30
    )
    assert next(stream).status == SERVING
    assert server.running is not None
    server.call(server.running.health.enter_graceful_shutdown(), 10)
    assert [m.status for m in stream] == [NOT_SERVING]  # then the stream ends, well in time
