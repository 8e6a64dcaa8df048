"""The server over real gRPC channels on port 0: results, batching, streams, limits, overload.

python -m pytest tests/serve/test_server.py
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from onyx.contract.preprocess import image_bytes_to_array
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.background import ServerThread
from onyx.serve.config import InputLimits
from tests.serve.tiny_models import (
    image_config,
    png_bytes,
    random_batch,
    reference,
    write_image_model,
    write_version,
)
from tests.serve.wire import BatchSizes, scores_of, softmax, stub, tensor_request

Start = Callable[..., ServerThread]


def test_classify_tensors_matches_the_model(repo: Path, start_server: Start) -> None:
    server = start_server(repo)
    batch = random_batch(5)
    response = stub(server.address).Classify(tensor_request(batch), timeout=30)
    assert (response.model, response.version) == ("tiny", 1)
    expected = softmax(reference(batch, seed=1))
    for row, got in zip(expected, scores_of(response), strict=True):
        assert list(got) == list(np.argsort(-row))  # best first
        np.testing.assert_allclose([got[i] for i in range(3)], row, rtol=1e-5, atol=1e-6)


def test_classify_images_uses_the_model_preprocessing(repo: Path, start_server: Start) -> None:
    server = start_server(repo)
    images = [png_bytes(seed) for seed in range(3)]
    request = api.ClassifyRequest(model="tiny", inputs=[api.Input(image=i) for i in images])
    response = stub(server.address).Classify(request, timeout=30)
    config = image_config()
    batch = np.stack([image_bytes_to_array(i, config.image) for i in images])
    expected = softmax(reference(batch, seed=1))
    for row, got in zip(expected, scores_of(response), strict=True):
        np.testing.assert_allclose([got[i] for i in range(3)], row, rtol=1e-5, atol=1e-6)


def test_bad_tensor_is_invalid_argument_naming_the_input(repo: Path, start_server: Start) -> None:
    server = start_server(repo)
    good = api.Input(tensor=api.Tensor(shape=[3, 8, 8], data=bytes(3 * 8 * 8 * 4)))
    bad = api.Input(tensor=api.Tensor(shape=[3, 8, 9], data=bytes(3 * 8 * 9 * 4)))
    short = api.Input(tensor=api.Tensor(shape=[3, 8, 8], data=bytes(10)))
    cases = [([good, bad], "input 1: tensor shape"), ([short], "input 0: tensor data")]
    for inputs, message in cases:
        with pytest.raises(grpc.RpcError) as info:
            stub(server.address).Classify(api.ClassifyRequest(model="tiny", inputs=inputs))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (info.value.details() or "")


def test_limits_are_named_in_the_answer(repo: Path, start_server: Start) -> None:
    limits = InputLimits(max_inputs_per_request=2, max_image_pixels=50)
    server = start_server(repo, limits=limits, max_message_bytes=64 * 1024)
    client = stub(server.address)
    cases = [
        (tensor_request(random_batch(3)), "max_inputs_per_request"),
        (
            api.ClassifyRequest(model="tiny", inputs=[api.Input(image=png_bytes(0, size=16))]),
            "max_image_pixels",
        ),
    ]
    for request, limit in cases:
        with pytest.raises(grpc.RpcError) as info:
            client.Classify(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert limit in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        client.Classify(api.ClassifyRequest(model="tiny", inputs=[api.Input(image=bytes(100_000))]))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (info.value.details() or "")


def test_concurrent_clients_are_batched_together(tmp_path: Path, start_server: Start) -> None:
    root = tmp_path / "models"
    config = image_config(max_batch_size=8, max_queue_delay_us=50_000)
    write_image_model(root, "tiny", 1, config=config)
    sizes = BatchSizes()
    server = start_server(root, batch_observers=sizes)
    client = stub(server.address)
    batches = [random_batch(1, seed=i) for i in range(16)]
    sizes.sizes.clear()  # warm-up runs are not observed, but be sure
    barrier = threading.Barrier(16)

    def call(batch: np.ndarray) -> api.ClassifyResponse:
        barrier.wait()
        return client.Classify(tensor_request(batch), timeout=30)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(call, batches))
    for batch, response in zip(batches, responses, strict=True):
        expected = softmax(reference(batch, seed=1))[0]
        got = scores_of(response)[0]
        np.testing.assert_allclose([got[i] for i in range(3)], expected, rtol=1e-5, atol=1e-6)
    assert sum(sizes.sizes) == 16
    assert max(sizes.sizes) > 1, f"no request was batched with another: {sizes.sizes}"
    assert len(sizes.sizes) < 16


def test_overload_is_resource_exhausted_then_recovers(tmp_path: Path, start_server: Start) -> None:
    root = tmp_path / "models"
    config = image_config(max_batch_size=1, max_queue_delay_us=0, max_queue_size=2)
    write_image_model(root, "tiny", 1, config=config, hidden_layers=12)
    server = start_server(root)
    client = stub(server.address)

    def call(seed: int) -> grpc.StatusCode:
        try:
            client.Classify(tensor_request(random_batch(1, seed)), timeout=60)
        except grpc.RpcError as exc:
            assert "max_queue_size" in (exc.details() or "")
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(24) as pool:
        codes = list(pool.map(call, range(48)))
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert grpc.StatusCode.OK in codes
    assert call(100) == grpc.StatusCode.OK  # recovered once the queue drained


def test_classify_stream_answers_each_request_with_its_id(repo: Path, start_server: Start) -> None:
    server = start_server(repo)
    batches = {f"req-{i}": random_batch(i % 3 + 1, seed=i) for i in range(12)}
    requests = [
        api.ClassifyStreamRequest(id=k, request=tensor_request(b)) for k, b in batches.items()
    ]
    requests.insert(
        5,
        api.ClassifyStreamRequest(
            id="bad-model", request=tensor_request(random_batch(1), model="nope")
        ),
    )
    requests.insert(
        9,
        api.ClassifyStreamRequest(
            id="bad-input",
            request=api.ClassifyRequest(model="tiny", inputs=[api.Input(image=b"not an image")]),
        ),
    )
    answers = {a.id: a for a in stub(server.address).ClassifyStream(iter(requests), timeout=60)}
    assert set(answers) == {*batches, "bad-model", "bad-input"}
    assert answers["bad-model"].error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answers["bad-input"].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "input 0" in answers["bad-input"].error_message
    for key, batch in batches.items():
        assert answers[key].error_code == 0
        expected = softmax(reference(batch, seed=1))
        got = scores_of(answers[key].response)
        assert [max(g, key=g.__getitem__) for g in got] == list(expected.argmax(axis=1))


def test_unknown_model_and_version(repo: Path, start_server: Start) -> None:
    server = start_server(repo)
    client = stub(server.address)
    with pytest.raises(grpc.RpcError) as info:
        client.Classify(tensor_request(random_batch(1), model="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    request = tensor_request(random_batch(1))
    request.version = 7
    with pytest.raises(grpc.RpcError) as info:
        client.Classify(request)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no version 7" in (info.value.details() or "")


def test_expired_and_cancelled_requests_never_reach_the_model(
    tmp_path: Path, start_server: Start
) -> None:
    root = tmp_path / "models"
    config = image_config(max_batch_size=8, max_queue_delay_us=0)
    write_image_model(root, "tiny", 1, config=config, hidden_layers=12)
    sizes = BatchSizes()
    server = start_server(root, batch_observers=sizes)
    client = stub(server.address)
    # Enough queued work ahead of them that the cancel surely lands while the cancelled request
    # still waits its turn (one request of 256 rows was too little on a fast, idle machine). As
    # batch-sized requests: the chunks of a larger one take turns with later arrivals.
    busy = [
        client.Classify.future(tensor_request(random_batch(8, seed=i)), timeout=120)
        for i in range(96)
    ]
    started = time.monotonic()
    while not sizes.sizes:  # the model is working through the big requests
        assert time.monotonic() - started < 30, "the model never started"
        threading.Event().wait(0.005)
    with pytest.raises(grpc.RpcError) as info:
        client.Classify(tensor_request(random_batch(1)), timeout=0.05)
    # Expired in the queue, or refused at the door because the work ahead cannot finish in time
    # (admission's estimate, once it has seen a few batches): either way it never runs.
    late = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert info.value.code() in late, info.value
    cancelled = client.Classify.future(tensor_request(random_batch(3)), timeout=120)
    threading.Event().wait(0.02)
    assert not busy[-1].done(), "the model finished too fast for this test to mean anything"
    assert cancelled.cancel()
    assert [len(call.result().results) for call in busy] == [8] * 96
    assert sum(sizes.sizes) == 3 * 256  # neither the late nor the cancelled request ran
    assert client.Classify(tensor_request(random_batch(2)), timeout=30).version == 1


def test_versions_can_be_named(tmp_path: Path, start_server: Start) -> None:
    root = tmp_path / "models"
    config = image_config()
    latest_two = pb.VersionPolicy.Latest(num_versions=2)
    config.version_policy.CopyFrom(pb.VersionPolicy(latest=latest_two))
    write_image_model(root, "tiny", 1, config=config, seed=1)
    write_version(root, "tiny", 2, seed=2)
    write_version(root, "tiny", 3, seed=3)
    server = start_server(root)
    client = stub(server.address)
    batch = random_batch(1)
    assert client.Classify(tensor_request(batch), timeout=30).version == 3  # newest ready
    request = tensor_request(batch)
    request.version = 2
    response = client.Classify(request, timeout=30)
    assert response.version == 2
    expected = softmax(reference(batch, seed=2))[0]
    np.testing.assert_allclose([scores_of(response)[0][i] for i in range(3)], expected, atol=1e-6)
    request.version = 1  # on disk, but the policy keeps only the latest two
    with pytest.raises(grpc.RpcError) as info:
        client.Classify(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
