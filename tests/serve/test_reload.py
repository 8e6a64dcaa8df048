"""Model lifecycle over real channels: hot reload under load, failed loads, explicit control.

python -m pytest tests/serve/test_reload.py
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onyx.contract.layout import CONFIG_FILE
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.background import ServerThread
from tests.serve.tiny_models import (
    image_config,
    random_batch,
    reference,
    write_corrupt_version,
    write_image_model,
    write_model_config,
    write_version,
)
from tests.serve.wire import scores_of, softmax, stub, tensor_request

Start = Callable[..., ServerThread]
POLL = {"model_control": "poll", "poll_interval_s": 0.05}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Load:
    """Client threads classifying without pause; every answer is checked against its version."""

    def __init__(self, address: str, clients: int = 4) -> None:
        self._stub = stub(address)
        self.clients = clients
        self._stop = threading.Event()
        self.failures: list[str] = []
        self.seen: list[tuple[int, str]] = []  # (version, top label)
        self._pool = ThreadPoolExecutor(clients)
        self._futures = [self._pool.submit(self._loop, i) for i in range(clients)]

    def _loop(self, seed: int) -> None:
        batch = random_batch(2, seed)
        while not self._stop.is_set():
            try:
                response = self._stub.Classify(tensor_request(batch), timeout=30)
            except grpc.RpcError as exc:
                self.failures.append(f"{exc.code().name}: {exc.details()}")
                continue
            expected = softmax(reference(batch, seed=response.version))  # seed == version
            got = scores_of(response)[0]
            if not np.allclose([got[i] for i in range(3)], expected[0], atol=1e-5):
                self.failures.append(f"v{response.version} answered wrong scores")
            self.seen.append((response.version, response.results[0].classes[0].label))

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out; failures: {self.failures[:3]}"
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()


def versions_of(server: ServerThread) -> dict[int, int]:
    info = stub(server.address).GetModel(api.GetModelRequest(name="tiny"), timeout=10)
    return {v.version: v.state for v in info.versions}


def test_hot_reload_under_load_has_no_failed_requests(repo: Path, start_server: Start) -> None:
    server = start_server(repo, **POLL)
    load = Load(server.address)
    try:
        load.wait_for(lambda: len(load.seen) > 5)
        write_version(repo, "tiny", 2, seed=2)  # new version: loaded, warmed, switched in
        load.wait_for(lambda: any(v == 2 for v, _ in load.seen[-3:]))
        load.wait_for(lambda: versions_of(server) == {2: api.VERSION_STATE_READY})
        # An edited policy (config.pbtxt) loads the whole model afresh, then swaps it in.
        write_model_config(repo, image_config(max_batch_size=4))
        load.wait_for(lambda: served_batch_size(server) == 4)
        assert loads_of(server, 2) == 2  # loaded for the new version, then for the new policy
        count = len(load.seen) + load.clients
        load.wait_for(lambda: len(load.seen) > count + 5)
    finally:
        load.stop()
    assert load.failures == []
    assert {v for v, _ in load.seen[count:]} == {2}


def served_batch_size(server: ServerThread) -> int:
    info = stub(server.address).GetModel(api.GetModelRequest(name="tiny"), timeout=10)
    return int(info.config.batching.max_batch_size)


def loads_of(server: ServerThread, version: int, model: str = "tiny") -> float:
    """How often `version` was loaded, from the server's Prometheus registry."""
    assert server.running is not None and server.running.metrics is not None
    labels = {"model": model, "version": str(version)}
    value = server.running.metrics.registry.get_sample_value("onyx_model_loads_total", labels)
    return value or 0.0


def test_a_corrupt_new_version_keeps_the_old_one_serving(repo: Path, start_server: Start) -> None:
    server = start_server(repo, **POLL)
    load = Load(server.address, clients=2)
    try:
        write_corrupt_version(repo, "tiny", 2)
        load.wait_for(lambda: versions_of(server).get(2) == api.VERSION_STATE_FAILED)
        count = len(load.seen)  # v2 never served, so every answer is from v1
        load.wait_for(lambda: len(load.seen) > count + 5)
        assert {v for v, _ in load.seen[count:]} == {1}
        info = stub(server.address).GetModel(api.GetModelRequest(name="tiny"), timeout=10)
        failed = next(v for v in info.versions if v.version == 2)
        assert "ONNX Runtime cannot load it" in failed.reason
        shutil.rmtree(repo / "tiny" / "2")
        write_version(repo, "tiny", 3, seed=3)  # a good one after it takes over
        load.wait_for(lambda: versions_of(server) == {3: api.VERSION_STATE_READY})
    finally:
        load.stop()
    assert load.failures == []


def test_a_removed_version_is_drained_then_unloaded(repo: Path, start_server: Start) -> None:
    config = image_config()
    config.version_policy.CopyFrom(pb.VersionPolicy(all=pb.VersionPolicy.All()))
    write_model_config(repo, config)
    write_version(repo, "tiny", 2, seed=2)
    server = start_server(repo, **POLL)
    assert versions_of(server) == {1: api.VERSION_STATE_READY, 2: api.VERSION_STATE_READY}
    request = tensor_request(random_batch(1))
    request.version = 1
    assert stub(server.address).Classify(request, timeout=10).version == 1
    load = Load(server.address, clients=2)
    try:
        shutil.rmtree(repo / "tiny" / "2")
        load.wait_for(lambda: versions_of(server) == {1: api.VERSION_STATE_READY})
        count = len(load.seen) + load.clients  # requests in flight may still finish on v2
        load.wait_for(lambda: len(load.seen) > count + 5)
    finally:
        load.stop()
    assert load.failures == []
    assert {v for v, _ in load.seen[count:]} == {1}


def model_reason(server: ServerThread) -> str:
    info = stub(server.address).GetModel(api.GetModelRequest(name="tiny"), timeout=10)
    return str(info.reason)


def health_of(address: str, service: str) -> int:
    """The service's health status; -1 while health has never heard of it."""
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    try:
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return -1
        raise
    return int(answer.status)


def test_explicit_load_and_unload(repo: Path, start_server: Start) -> None:
    server = start_server(repo, model_control="explicit")
    kserve = kv2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
    index = kserve.RepositoryIndex(kv2.RepositoryIndexRequest(), timeout=10)
    assert [(m.name, m.state, m.reason) for m in index.models] == [
        ("tiny", "UNAVAILABLE", "not loaded")
    ]
    kserve.RepositoryModelLoad(kv2.RepositoryModelLoadRequest(model_name="tiny"), timeout=60)
    assert kserve.ModelReady(kv2.ModelReadyRequest(name="tiny"), timeout=10).ready
    assert health_of(server.address, "tiny") == health_pb2.HealthCheckResponse.SERVING
    assert stub(server.address).Classify(tensor_request(random_batch(1)), timeout=10).version == 1
    kserve.RepositoryModelUnload(kv2.RepositoryModelUnloadRequest(model_name="tiny"), timeout=60)
    assert not kserve.ModelReady(kv2.ModelReadyRequest(name="tiny"), timeout=10).ready
    assert health_of(server.address, "tiny") == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as info:
        stub(server.address).Classify(tensor_request(random_batch(1)), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as info:
        kserve.RepositoryModelLoad(kv2.RepositoryModelLoadRequest(model_name="nope"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_load_and_unload_need_explicit_control(repo: Path, start_server: Start) -> None:
    server = start_server(repo)
    kserve = kv2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
    with pytest.raises(grpc.RpcError) as info:
        kserve.RepositoryModelUnload(kv2.RepositoryModelUnloadRequest(model_name="tiny"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--model-control explicit" in (info.value.details() or "")


def test_a_broken_config_edit_keeps_the_model_serving(repo: Path, start_server: Start) -> None:
    server = start_server(repo, **POLL)
    load = Load(server.address, clients=2)
    try:
        (repo / "tiny" / CONFIG_FILE).write_text("name: 'tiny' labels: 'only-one'")
        load.wait_for(lambda: "reload failed" in model_reason(server))
        count = len(load.seen)
        load.wait_for(lambda: len(load.seen) > count + 5)
    finally:
        load.stop()
    assert load.failures == []
    assert health_of(server.address, "tiny") == health_pb2.HealthCheckResponse.SERVING


def test_models_appear_and_disappear_with_their_folders(repo: Path, start_server: Start) -> None:
    server = start_server(repo, **POLL)
    staging = repo.parent / "staging"
    write_image_model(staging, "other", 1, config=image_config("other"))
    (staging / "other").rename(repo / "other")
    client = stub(server.address)
    load = Load(server.address, clients=1)  # keeps "tiny" busy throughout
    try:
        load.wait_for(lambda: health_of(server.address, "other") == SERVING)
        response = client.Classify(tensor_request(random_batch(1), model="other"), timeout=10)
        assert response.version == 1
        shutil.rmtree(repo / "other")
        load.wait_for(lambda: health_of(server.address, "other") == NOT_SERVING)
    finally:
        load.stop()
    with pytest.raises(grpc.RpcError) as info:
        client.Classify(tensor_request(random_batch(1), model="other"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert load.failures == []
