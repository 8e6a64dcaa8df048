"""A small synchronous client for `onyx.v1.Classifier`, used by `onyx classify` and the demo.

with Client("localhost:50051") as client:
    results = client.classify_images("digits", [Path("3.png")], top_k=3)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import grpc

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc


class Client:
    def __init__(
        self, address: str, timeout_s: float = 30.0, channel: grpc.Channel | None = None
    ) -> None:
        """`channel`: one already open (TLS, retries: `onyx.client.channels`); the caller
        keeps closing it. Without one a plaintext channel to `address` is opened."""
        self.address = address
        self.timeout_s = timeout_s
        self._owned = channel is None
        self._channel = grpc.insecure_channel(address) if channel is None else channel
        self._stub = api_grpc.ClassifierStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._channel.close()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)

    def classify(
        self,
        model: str,
        inputs: Sequence[api.Input],
        top_k: int = 0,
        version: int = 0,
        explain: api.ExplainOptions | None = None,
    ) -> api.ClassifyResponse:
        """`explain`: also explain each input (`ExplainOptions()`: its top-1 class)."""
        request = api.ClassifyRequest(
            model=model, version=version, inputs=inputs, top_k=top_k, explain=explain
        )
        response: api.ClassifyResponse = self._stub.Classify(request, timeout=self.timeout_s)
        return response

    def classify_images(
        self, model: str, paths: Sequence[Path], top_k: int = 0, version: int = 0
    ) -> api.ClassifyResponse:
        inputs = [api.Input(image=path.read_bytes()) for path in paths]
        return self.classify(model, inputs, top_k, version)

    def classify_texts(
        self, model: str, texts: Sequence[str], top_k: int = 0, version: int = 0
    ) -> api.ClassifyResponse:
        return self.classify(model, [api.Input(text=t) for t in texts], top_k, version)

    def list_models(self) -> list[api.ModelInfo]:
        response = self._stub.ListModels(api.ListModelsRequest(), timeout=self.timeout_s)
        return list(response.models)

    def get_model(self, name: str) -> api.ModelInfo:
        info: api.ModelInfo = self._stub.GetModel(
            api.GetModelRequest(name=name), timeout=self.timeout_s
        )
        return info


def format_table(names: Sequence[str], response: api.ClassifyResponse) -> str:
    """One block per input: its name, then rank, label, index and score."""
    lines = [f"model {response.model} v{response.version}"]
    width = max((len(n) for n in names), default=0)
    for name, result in zip(names, response.results, strict=True):
        for rank, cls in enumerate(result.classes, start=1):
            shown = name if rank == 1 else ""
            lines.append(
                f"{shown:<{width}}  {rank:>2}. {cls.label:<20} #{cls.index:<4} {cls.score:.4f}"
            )
    return "\n".join(lines)


def as_json_records(
    names: Sequence[str], response: api.ClassifyResponse
) -> list[dict[str, object]]:
    return [
        {
            "input": name,
            "model": response.model,
            "version": response.version,
            "classes": [{"label": c.label, "index": c.index, "score": c.score} for c in r.classes],
        }
        for name, r in zip(names, response.results, strict=True)
    ]
