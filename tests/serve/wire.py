"""Helpers for serving tests over real channels: stubs, tensor requests, expected scores."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import numpy as np

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc


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
