"""Overload is refused fast and counted: the front door's bounds, deadline refusals, metrics.

python -m pytest tests/serve/frontends/test_admission.py
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from onyx.contract.errors import Refused
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.serve.frontends.admission import Admission, AdmissionPolicy
from onyx.serve.metrics import ServerMetrics
from tests.serve.tiny_models import image_config, random_batch, write_image_model
from tests.serve.wire import tensor_request


def refused(metrics: ServerMetrics, model: str, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "onyx_requests_refused_total", {"model": model, "reason": reason}
    )
    return value or 0.0


def admission(**policy: int) -> tuple[Admission, ServerMetrics]:
    metrics = ServerMetrics(CollectorRegistry(), process=False)
    known = {"pets", "digits"}
    return Admission(AdmissionPolicy(**policy), known.__contains__, metrics.refused), metrics


def test_the_server_bound_refuses_at_once_and_frees_on_leave() -> None:
    door, metrics = admission(max_inflight=2)
    first, second = door.enter("pets", None), door.enter("digits", None)
    with pytest.raises(Refused, match="max-inflight-requests") as info:
        door.enter("pets", None)
    assert info.value.code == "RESOURCE_EXHAUSTED" and info.value.reason == "inflight"
    with pytest.raises(Refused):
        door.enter("no such model", None)
    assert refused(metrics, "pets", "inflight") == 1
    assert refused(metrics, "", "inflight") == 1  # an unknown name never becomes a label
    door.leave(first)
    door.leave(door.enter("pets", None))
    door.leave(second)
    assert door.inflight == 0


def test_the_model_bound_leaves_other_models_alone() -> None:
    door, metrics = admission(max_inflight=0, max_inflight_per_model=1)
    held = door.enter("pets", None)
    with pytest.raises(Refused, match="max-inflight-per-model"):
        door.enter("pets", None)
    door.leave(door.enter("digits", None))
    door.leave(held)
    assert refused(metrics, "pets", "model_inflight") == 1


def busy(door: Admission, model: str, seconds: float, count: int) -> None:
    """`count` requests of `model`, one after another, each busy for `seconds`."""
    for _ in range(count):
        with door.admit(model):
            time.sleep(seconds)


def test_a_deadline_too_close_for_the_work_ahead_is_refused_at_once() -> None:
    door, metrics = admission(max_inflight=0)
    busy(door, "pets", 0.02, 3)
    ahead = [door.enter("pets", None) for _ in range(5)]  # about 0.1 s of work
    with pytest.raises(Refused, match="deadline") as info:
        door.enter("pets", 0.05)
    assert info.value.reason == "deadline"
    door.leave(door.enter("pets", 5.0))  # a far deadline is taken
    door.leave(door.enter("digits", 0.05))  # another model's queue is its own
    for load in ahead:
        door.leave(load)
    assert refused(metrics, "pets", "deadline") == 1
    with pytest.raises(Refused):  # a deadline already passed never waits
        door.enter("pets", 0.0)


def test_idle_time_is_not_mistaken_for_work() -> None:
    """At a low rate the model idles between requests: only busy time counts, so a lone
    request with a modest deadline is never refused."""
    door, _ = admission(max_inflight=0)
    for _ in range(3):
        busy(door, "pets", 0.001, 1)
        time.sleep(0.05)
    held = door.enter("pets", None)
    door.leave(door.enter("pets", 0.02))
    door.leave(held)


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[ServerThread, ServerMetrics]]:
    root = tmp_path / "models"
    # One input per batch, a few ms each: requests queue behind each other.
    write_image_model(
        root, "tiny", 1, config=image_config(max_batch_size=1, max_queue_delay_us=0),
        hidden_layers=24,
    )  # fmt: skip
    metrics = ServerMetrics(CollectorRegistry(), process=False)
    config = ServerConfig(repository=root, host="127.0.0.1", port=0, max_inflight_requests=3)
    with ServerThread(config, metrics=metrics) as server:
        yield server, metrics


def test_overload_is_resource_exhausted_at_once_and_counted(
    slow_server: tuple[ServerThread, ServerMetrics],
) -> None:
    server, metrics = slow_server
    channel = grpc.insecure_channel(server.address)
    client = api_grpc.ClassifierStub(channel)
    calls = [
        client.Classify.future(tensor_request(random_batch(16, seed=i)), timeout=60)
        for i in range(12)
    ]
    # Health is never behind the door, however busy the server.
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    codes = [call.exception().code() if call.exception() else grpc.StatusCode.OK for call in calls]
    exhausted = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert exhausted >= 1 and codes.count(grpc.StatusCode.OK) >= 3
    assert exhausted + codes.count(grpc.StatusCode.OK) == len(calls)
    # The server's bound is checked before the request is read: no model name yet.
    assert refused(metrics, "", "inflight") == exhausted
    handled = metrics.registry.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_type": "unary", "grpc_service": "onyx.v1.Classifier", "grpc_method": "Classify",
         "grpc_code": "RESOURCE_EXHAUSTED"},
    )  # fmt: skip
    assert handled == exhausted
    # Back to normal once the load is gone.
    assert len(client.Classify(tensor_request(random_batch(1)), timeout=30).results) == 1


def test_a_request_that_cannot_start_in_time_is_refused_not_left_to_expire(
    slow_server: tuple[ServerThread, ServerMetrics],
) -> None:
    server, metrics = slow_server
    client = api_grpc.ClassifierStub(grpc.insecure_channel(server.address))
    started = time.monotonic()
    for seed in range(3):  # the model's pace is known
        client.Classify(tensor_request(random_batch(16, seed=seed)), timeout=60)
    pace = (time.monotonic() - started) / 3
    ahead = [  # about three requests' worth of work
        client.Classify.future(tensor_request(random_batch(16, seed=i)), timeout=60)
        for i in range(2)
    ]
    time.sleep(0.05)
    with pytest.raises(grpc.RpcError) as info:  # one request's time: it cannot make it
        client.Classify(tensor_request(random_batch(16)), timeout=0.5 * pace)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert refused(metrics, "tiny", "deadline") == 1
    assert all(call.result() for call in ahead)


def test_the_batch_queue_bound_is_counted_as_a_refusal(tmp_path: Path) -> None:
    root = tmp_path / "models"
    config = image_config(max_batch_size=1, max_queue_delay_us=0, max_queue_size=2)
    write_image_model(root, "tiny", 1, config=config, hidden_layers=12)
    metrics = ServerMetrics(CollectorRegistry(), process=False)
    server_config = ServerConfig(repository=root, host="127.0.0.1", port=0, max_inflight_requests=0)
    with ServerThread(server_config, metrics=metrics) as server:
        client = api_grpc.ClassifierStub(grpc.insecure_channel(server.address))
        calls = [
            client.Classify.future(tensor_request(random_batch(1, seed=i)), timeout=60)
            for i in range(24)
        ]
        errors = [call.exception() for call in calls]
    codes = [error.code() for error in errors if error is not None]
    assert codes and set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert refused(metrics, "tiny", "queue_full") == len(codes)
