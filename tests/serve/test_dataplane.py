"""The data plane every front end calls: requests as wire-free values in, answers out, hooks
called whatever listens; and the REST and gRPC bindings encoding its answers alike.

    python -m pytest tests/serve/test_dataplane.py
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from onyx.contract.errors import ExplainUnavailable, InvalidInput
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.background import ServerThread
from onyx.serve.config import InputLimits
from onyx.serve.dataplane import DataPlane
from onyx.serve.observers import NO_OBSERVERS, Observers
from onyx.serve.pipeline import Pipeline
from onyx.serve.protocol import (
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    RequestedOutput,
    split_bytes,
)
from onyx.serve.repository import Repository
from tests.serve.tiny_models import image_config, random_batch, reference, write_image_model
from tests.serve.triton_json import message_json

Start = Callable[..., ServerThread]


def image_request(batch: np.ndarray, *outputs: RequestedOutput) -> InferenceRequest:
    tensor = InputTensor("image", "FP32", list(batch.shape), batch.astype("<f4").tobytes())
    return InferenceRequest("tiny", "", "r1", [tensor], outputs)


def answer(
    root: Path, requests: list[InferenceRequest], observers: Observers = NO_OBSERVERS
) -> list[InferenceResponse | Exception]:
    """Each request's answer (or error) from a data plane over `root`, with no front end."""

    async def main() -> list[InferenceResponse | Exception]:
        repository = Repository(root, observers=observers)
        await repository.load_all()
        with ThreadPoolExecutor(2) as preprocess:
            pipeline = Pipeline(repository, preprocess, observers)
            dataplane = DataPlane(pipeline, InputLimits(), "none")
            answers: list[InferenceResponse | Exception] = []
            for request in requests:
                try:
                    answers.append(await dataplane.infer(request, deadline=None))
                except Exception as exc:
                    answers.append(exc)
            await repository.close()
        return answers

    return asyncio.run(main())


def test_the_data_plane_answers_wire_free_requests_without_a_front_end(tmp_path: Path) -> None:
    write_image_model(tmp_path, "tiny", 1)
    batch = random_batch(2)
    raw, top2, unknown, saliency = answer(
        tmp_path,
        [
            image_request(batch),
            image_request(batch, RequestedOutput("logits", classification=2)),
            image_request(batch, RequestedOutput("probabilities")),
            image_request(batch, RequestedOutput("saliency")),
        ],
    )
    assert isinstance(raw, InferenceResponse)
    assert (raw.model, raw.version, raw.id) == ("tiny", "1", "r1")
    (logits,) = raw.outputs
    assert (logits.name, logits.datatype, logits.shape) == ("logits", "FP32", [2, 3])
    expected = reference(batch, seed=1)
    assert np.allclose(np.frombuffer(logits.raw, "<f4").reshape(2, 3), expected, atol=1e-5)
    assert isinstance(top2, InferenceResponse)
    (classes,) = top2.outputs
    assert (classes.datatype, classes.shape) == ("BYTES", [2, 2])
    best = [item.decode().split(":")[2] for item in split_bytes(classes.raw)][::2]
    assert best == [image_config().labels[i] for i in expected.argmax(axis=1)]
    assert isinstance(unknown, InvalidInput) and "not 'probabilities'" in str(unknown)
    assert isinstance(saliency, ExplainUnavailable)


class Tracker:
    inputs = 0

    def preprocessed(self, seconds: float) -> None:
        pass


class Recorder:
    """Observers that write down what they are told."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    @contextmanager
    def track(self, model: str, version: int) -> Iterator[Tracker]:
        tracker = Tracker()
        yield tracker
        self.events.append(("request", model, version, tracker.inputs))

    def batches(self, model: str, version: int) -> Recorder:
        self.events.append(("batch observer", model, version))
        return self

    def batch_started(self, size: int, queue_waits_s: Any) -> None:  # noqa: ARG002
        self.events.append(("batch", size))

    def batch_finished(self, size: int, compute_s: float, ok: bool) -> None:
        pass

    def load_started(self, model: str, version: int) -> None:
        self.events.append(("load", model, version))

    def load_succeeded(self, model: str, version: int, seconds: float) -> None:  # noqa: ARG002
        self.events.append(("loaded", model, version))

    def load_failed(self, model: str, version: int, reason: str) -> None:
        self.events.append(("failed", model, version, reason))


def test_the_loader_and_the_pipeline_report_through_the_observers_given(tmp_path: Path) -> None:
    write_image_model(tmp_path, "tiny", 1)
    recorder = Recorder()
    observers = Observers(track=recorder.track, batches=recorder.batches, loads=recorder)
    (response,) = answer(tmp_path, [image_request(random_batch(3))], observers)
    assert isinstance(response, InferenceResponse)
    assert recorder.events == [
        ("load", "tiny", 1),
        ("batch observer", "tiny", 1),
        ("loaded", "tiny", 1),
        ("batch", 3),
        ("request", "tiny", 1, 3),
    ]


def fetch(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def server(tmp_path: Path, start_server: Start) -> ServerThread:
    """Models "tiny" and "fast" (a float16 variant: its config carries parameters), on both
    ports."""
    root = tmp_path / "models"
    write_image_model(root, "tiny", 1)
    variant = image_config("fast")
    variant.variant.precision = pb.PRECISION_FP16  # type: ignore[assignment]
    variant.variant.base_version = 1
    write_image_model(root, "fast", 3, config=variant)
    return start_server(root, http_port=0, metrics=False)


def test_rest_writes_every_description_as_triton_writes_the_grpc_message(
    server: ServerThread,
) -> None:
    assert server.running is not None
    base = f"http://127.0.0.1:{server.running.http_port}/v2"
    kserve = kv2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
    image = kv2.ModelInferRequest.InferInputTensor(
        name="image", datatype="FP32", shape=[1, 3, 8, 8]
    )
    raw = random_batch(1).astype("<f4").tobytes()
    kserve.ModelInfer(
        kv2.ModelInferRequest(model_name="tiny", inputs=[image], raw_input_contents=[raw])
    )
    expected = {
        "": kserve.ServerMetadata(kv2.ServerMetadataRequest()),
        "/models/fast": kserve.ModelMetadata(kv2.ModelMetadataRequest(name="fast")),
        "/models/tiny/stats": kserve.ModelStatistics(kv2.ModelStatisticsRequest(name="tiny")),
        "/models/tiny/config": kserve.ModelConfig(kv2.ModelConfigRequest(name="tiny")).config,
        "/models/fast/config": kserve.ModelConfig(kv2.ModelConfigRequest(name="fast")).config,
    }  # fmt: skip
    for path, message in expected.items():
        assert fetch(base + path) == (200, json.dumps(message_json(message)).encode()), path
    index = kserve.RepositoryIndex(kv2.RepositoryIndexRequest()).models
    written = json.dumps([message_json(entry) for entry in index]).encode()
    assert fetch(base + "/repository/index", b"{}") == (200, written)
    config = json.loads(fetch(base + "/models/fast/config")[1])
    assert config["parameters"]["onyx_variant"] == {"string_value": "fp16"}


def test_a_rest_request_past_its_timeout_answers_504(server: ServerThread) -> None:
    assert server.running is not None
    batch = random_batch(1)
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 3, 8, 8]}
    request = {"inputs": [{**tensor, "data": batch.ravel().tolist()}], "parameters": {"timeout": 1}}
    url = f"http://127.0.0.1:{server.running.http_port}/v2/models/tiny/infer"
    status, body = fetch(url, json.dumps(request).encode())  # 1 µs: spent before the model
    assert status == 504
    assert json.loads(body)["error"].startswith("deadline passed")
