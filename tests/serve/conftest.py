"""Fixtures for serving tests: a model repository of tiny ONNX models and servers on port 0."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import random_batch, write_image_model

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig


class BatchSizes:
    """A BatchObserver factory recording the size of every batch any model version ran."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, model: str, version: int) -> BatchSizes:  # noqa: ARG002
        return self

    def batch_started(self, size: int, queue_waits_s: Sequence[float]) -> None:  # noqa: ARG002
        self.sizes.append(size)

    def batch_finished(self, size: int, compute_s: float, ok: bool) -> None:
        pass

    def queue_changed(self, queued_rows: int) -> None:
        pass


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository holding model "tiny" version 1."""
    root = tmp_path / "models"
    write_image_model(root, "tiny", 1)
    return root


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(repository: Path, observers: Any = None, **options: Any) -> ServerThread:
        config = ServerConfig(repository=repository, host="127.0.0.1", port=0, **options)
        server = ServerThread(config, observers=observers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.running is not None:
            server.stop()


def stub(address: str) -> api_grpc.ClassifierStub:
    return api_grpc.ClassifierStub(grpc.insecure_channel(address))


def tensor_request(batch: np.ndarray, model: str = "tiny", top_k: int = 3) -> api.ClassifyRequest:
    inputs = [
        api.Input(tensor=api.Tensor(shape=list(row.shape), data=row.astype("<f4").tobytes()))
        for row in batch
    ]
    return api.ClassifyRequest(model=model, inputs=inputs, top_k=top_k)


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))


def scores_of(response: api.ClassifyResponse) -> list[dict[int, float]]:
    return [{c.index: c.score for c in r.classes} for r in response.results]


__all__ = ["BatchSizes", "random_batch", "scores_of", "softmax", "stub", "tensor_request"]
