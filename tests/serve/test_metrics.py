"""Metric values move exactly as known traffic says they should (fresh registry per test)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from prometheus_client import CollectorRegistry

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.serve.metrics import RepositoryCollector, ServerMetrics
from onyx.serve.repository import Model, Repository
from tests.serve.tiny_models import png_bytes, write_image_model

MODEL = {"model": "tiny", "version": "1"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerThread, ServerMetrics]]:
    write_image_model(tmp_path)
    metrics = ServerMetrics(CollectorRegistry(), process=False)
    config = ServerConfig(repository=tmp_path, host="127.0.0.1", port=0, metrics_port=0)
    with ServerThread(config, metrics=metrics) as server:
        yield server, metrics


def _value(metrics: ServerMetrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _settled(metrics: ServerMetrics, name: str, labels: dict[str, str], expected: float) -> float:
    # An aborted RPC's status reaches the client before the server's interceptor finishes;
    # give it a bounded moment, as a scrape would.
    deadline = time.monotonic() + 5
    while _value(metrics, name, labels) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return _value(metrics, name, labels)


def test_counts_and_histograms_follow_known_traffic(
    served: tuple[ServerThread, ServerMetrics],
) -> None:
    server, metrics = served
    with grpc.insecure_channel(server.address) as channel:
        stub = api_grpc.ClassifierStub(channel)
        for seed in range(5):
            one = [api.Input(image=png_bytes(seed))]
            stub.Classify(api.ClassifyRequest(model="tiny", inputs=one))
        many = [api.Input(image=png_bytes(s)) for s in range(3)]
        stub.Classify(api.ClassifyRequest(model="tiny", inputs=many))
        with pytest.raises(grpc.RpcError):
            stub.Classify(api.ClassifyRequest(model="tiny", inputs=[api.Input(image=b"junk")]))
        with pytest.raises(grpc.RpcError):
            stub.Classify(api.ClassifyRequest(model="unknown", inputs=[api.Input(image=b"x")]))

    assert _value(metrics, "onyx_requests_total", {**MODEL, "code": "OK"}) == 6
    assert _settled(metrics, "onyx_requests_total", {**MODEL, "code": "INVALID_ARGUMENT"}, 1) == 1
    assert _value(metrics, "onyx_inputs_total", MODEL) == 8
    assert _value(metrics, "onyx_request_duration_seconds_count", MODEL) == 7
    assert _value(metrics, "onyx_preprocess_duration_seconds_count", MODEL) == 6
    # Every classified input went through exactly one batch; warm-up runs bypass the batcher.
    batches = _value(metrics, "onyx_batch_size_count", MODEL)
    assert _value(metrics, "onyx_batch_size_sum", MODEL) == 8
    assert 1 <= batches <= 6
    assert _value(metrics, "onyx_compute_duration_seconds_count", MODEL) == batches
    assert _value(metrics, "onyx_queue_duration_seconds_count", MODEL) == 6
    assert _value(metrics, "onyx_inflight_requests", MODEL) == 0
    assert _value(metrics, "onyx_queue_depth", MODEL) == 0
    assert _value(metrics, "onyx_model_ready", MODEL) == 1
    assert _value(metrics, "onyx_model_load_duration_seconds", MODEL) > 0
    grpc_labels = {
        "grpc_type": "unary",
        "grpc_service": "onyx.v1.Classifier",
        "grpc_method": "Classify",
    }
    assert _value(metrics, "grpc_server_started_total", grpc_labels) == 8
    assert _value(metrics, "grpc_server_handled_total", {**grpc_labels, "grpc_code": "OK"}) == 6
    assert (
        _settled(metrics, "grpc_server_handled_total", {**grpc_labels, "grpc_code": "NOT_FOUND"}, 1)
        == 1
    )
    assert _settled(metrics, "grpc_server_handling_seconds_count", grpc_labels, 8) == 8
    # Unknown model names never become label values.
    assert (
        _value(
            metrics,
            "onyx_requests_total",
            {"model": "unknown", "version": "0", "code": "NOT_FOUND"},
        )
        == 0
    )


def test_streaming_rpcs_are_counted_when_they_end(
    served: tuple[ServerThread, ServerMetrics],
) -> None:
    server, metrics = served
    labels = {
        "grpc_type": "bidi_stream",
        "grpc_service": "onyx.v1.Classifier",
        "grpc_method": "ClassifyStream",
    }
    one = api.ClassifyRequest(model="tiny", inputs=[api.Input(image=png_bytes(0))])
    with grpc.insecure_channel(server.address) as channel:
        stub = api_grpc.ClassifierStub(channel)
        requests = [api.ClassifyStreamRequest(id=str(i), request=one) for i in range(3)]
        assert len(list(stub.ClassifyStream(iter(requests)))) == 3
        assert _value(metrics, "grpc_server_started_total", labels) == 1
        assert len(list(stub.ClassifyStream(iter(requests[:1])))) == 1
    assert _value(metrics, "grpc_server_started_total", labels) == 2
    assert _settled(metrics, "grpc_server_handled_total", {**labels, "grpc_code": "OK"}, 2) == 2
    assert _settled(metrics, "grpc_server_handling_seconds_count", labels, 2) == 2


def test_metrics_are_served_over_http(served: tuple[ServerThread, ServerMetrics]) -> None:
    server, _ = served
    assert server.running is not None and server.running.metrics_port
    url = f"http://127.0.0.1:{server.running.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read().decode()
    assert 'onyx_model_ready{model="tiny",version="1"} 1.0' in body
    assert "onyx_request_duration_seconds_bucket" in body


class SwappingVersion:
    """A loaded version whose scrape coincides with the event loop swapping in another: reading
    it adds a version to its model, as a poll on the loop thread would meanwhile."""

    ready, batcher = True, None

    def __init__(self, model: Model, version: int) -> None:
        self.model, self.version = model, version

    @property
    def load_seconds(self) -> float:
        self.model.versions.setdefault(self.version + 1, self.model.versions[self.version])
        return 0.5


def test_a_scrape_during_a_version_swap_does_not_fail(tmp_path: Path) -> None:
    model = Model("tiny", tmp_path)
    model.versions[1] = cast("Any", SwappingVersion(model, 1))

    class OneModel:
        def models(self) -> list[Model]:
            return [model]

    families = list(RepositoryCollector(cast(Repository, OneModel())).collect())
    ready = next(f for f in families if f.name.endswith("_model_ready"))
    assert [s.labels["version"] for s in ready.samples] == ["1"]
