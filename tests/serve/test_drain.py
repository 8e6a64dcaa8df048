"""SIGTERM drains as Kubernetes expects: a real `onyx serve` process, a real signal.

python -m pytest tests/serve/test_drain.py
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from tests.serve.test_process import start_process
from tests.serve.tiny_models import image_config, random_batch, write_image_model
from tests.serve.wire import tensor_request

IN_FLIGHT = 16
DRAIN_DELAY_S = 3.0


def watch_health(channel: grpc.Channel, seen: list[tuple[float, int | None]]) -> threading.Thread:
    """Follow the overall health in a thread: (time, status) per message, (time, None) at end."""
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))

    def follow() -> None:
        try:
            for message in stream:
                seen.append((time.monotonic(), message.status))
        except grpc.RpcError as exc:
            seen.append((time.monotonic(), -exc.code().value[0]))
            return
        seen.append((time.monotonic(), None))

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_sigterm_flips_health_keeps_accepting_then_finishes_every_request(tmp_path: Path) -> None:
    root = tmp_path / "models"
    # One row per batch, so the 16 requests queue behind each other and are still in flight
    # when the signal comes.
    write_image_model(
        root, "tiny", 1, config=image_config(max_batch_size=4, max_queue_delay_us=0),
        hidden_layers=24,
    )  # fmt: skip
    process, port = start_process(
        root, "--grace", "60", "--drain-delay", str(DRAIN_DELAY_S), "--max-inflight-requests", "0"
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        seen: list[tuple[float, int | None]] = []
        watcher = watch_health(channel, seen)
        client = api_grpc.ClassifierStub(channel)
        calls = [
            client.Classify.future(tensor_request(random_batch(64, seed=i)), timeout=120)
            for i in range(IN_FLIGHT)
        ]
        time.sleep(0.3)
        assert not all(call.done() for call in calls), "too fast to test draining"
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        # Health says NOT_SERVING at once, yet a request sent during the delay is served.
        health = health_pb2_grpc.HealthStub(channel)
        time.sleep(0.5)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        late = client.Classify(tensor_request(random_batch(1)), timeout=60)
        assert len(late.results) == 1
        watcher.join(DRAIN_DELAY_S)
        codes = [call.exception() for call in calls]
        assert [c.code() for c in codes if c is not None] == []  # none cancelled
        assert all(len(call.result().results) == 64 for call in calls)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        log = process.stderr.read()
        process.stderr.close()
    assert "stopped" in log
    statuses = [status for _, status in seen]
    assert statuses == [health_pb2.HealthCheckResponse.SERVING,
                        health_pb2.HealthCheckResponse.NOT_SERVING, None]  # fmt: skip
    ended = seen[-1][0] - signalled
    assert ended < DRAIN_DELAY_S - 1.0, f"the Watch stream ended {ended:.2f}s after SIGTERM"


@pytest.mark.slow
def test_requests_sent_just_before_sigterm_are_finished_not_cancelled(tmp_path: Path) -> None:
    """No drain delay: calls gRPC has received but not yet handed over must not be cancelled
    when it stops (it cancels those: the server waits until no call has arrived for a while)."""
    root = tmp_path / "models"
    write_image_model(
        root, "tiny", 1, config=image_config(max_batch_size=4, max_queue_delay_us=0),
        hidden_layers=24,
    )  # fmt: skip
    process, port = start_process(root, "--grace", "60", "--max-inflight-requests", "0")
    try:
        client = api_grpc.ClassifierStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        client.Classify(tensor_request(random_batch(1)), timeout=60)  # connected
        calls = [
            client.Classify.future(tensor_request(random_batch(16, seed=i)), timeout=120)
            for i in range(IN_FLIGHT)
        ]
        time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        errors = [call.exception() for call in calls]
        assert [e.code() for e in errors if e is not None] == []
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
