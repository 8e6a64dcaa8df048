"""The `onyx.v1.Classifier` RPCs. Only request handling lives here; the work is elsewhere.

ClassifyStream answers each request as soon as it completes, tagged with the client's id; a
request that fails is answered with `error_code`/`error_message` and the stream goes on (see
`streams.py` for the flow control).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from onyx.contract.errors import InvalidInput
from onyx.contract.scores import activate, top_k
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.config import InputLimits
from onyx.serve.explain.classify import classify_explained
from onyx.serve.frontends.rpc import answers_errors, deadline_of, log_if_unplanned, status_code
from onyx.serve.frontends.streams import answer_concurrently
from onyx.serve.inputs import decode_inputs
from onyx.serve.pipeline import Pipeline
from onyx.serve.repository import Model

DEFAULT_TOP_K = 5


class ClassifierServicer(api_grpc.ClassifierServicer):
    def __init__(self, pipeline: Pipeline, limits: InputLimits, stream_window: int) -> None:
        self._pipeline = pipeline
        self._repository = pipeline.repository
        self._limits = limits
        self._stream_window = stream_window

    @answers_errors
    async def Classify(
        self, request: api.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> api.ClassifyResponse:
        return await self.classify(request, deadline_of(context))

    async def classify(
        self, request: api.ClassifyRequest, deadline: float | None
    ) -> api.ClassifyResponse:
        if request.top_k < 0:
            raise InvalidInput(f"top_k must be >= 0, got {request.top_k}")
        if request.HasField("explain"):
            k = request.top_k or DEFAULT_TOP_K
            return await classify_explained(self._pipeline, request, deadline, self._limits, k)
        inputs, limits = request.inputs, self._limits
        # Raw tensors only need wrapping: decoding them inline saves a thread hop.
        offload = any(item.WhichOneof("kind") != "tensor" for item in inputs)
        result = await self._pipeline.run(
            request.model,
            request.version,
            lambda config, encoder: decode_inputs(inputs, config, limits, encoder),
            deadline,
            offload,
        )
        scores = activate(result.logits, result.config.output_activation)
        k = request.top_k or DEFAULT_TOP_K
        return api.ClassifyResponse(
            model=result.model,
            version=result.version,
            results=[_classification(row, k, result.config.labels) for row in scores],
        )

    async def ClassifyStream(
        self,
        request_iterator: AsyncIterator[api.ClassifyStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[api.ClassifyStreamResponse]:
        deadline = deadline_of(context)

        async def answer(item: api.ClassifyStreamRequest) -> api.ClassifyStreamResponse:
            try:
                response = await self.classify(item.request, deadline)
            except Exception as exc:
                log_if_unplanned(exc, f"ClassifyStream request {item.id!r}")
                return api.ClassifyStreamResponse(
                    id=item.id, error_code=status_code(exc).value[0], error_message=str(exc)
                )
            return api.ClassifyStreamResponse(id=item.id, response=response)

        async for response in answer_concurrently(request_iterator, answer, self._stream_window):
            yield response

    @answers_errors
    async def ListModels(
        self, request: api.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> api.ListModelsResponse:
        return api.ListModelsResponse(models=[model_info(m) for m in self._repository.models()])

    @answers_errors
    async def GetModel(
        self, request: api.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> api.ModelInfo:
        return model_info(self._repository.get(request.name))


def _classification(scores: Any, k: int, labels: Any) -> api.Classification:
    return api.Classification(
        classes=[
            api.ClassScore(label=r.label, index=r.index, score=r.score)
            for r in top_k(scores, k, labels)
        ]
    )


def model_info(model: Model) -> api.ModelInfo:
    info = api.ModelInfo(name=model.name, ready=model.ready, reason=model.reason)
    config = model.describe()
    if config is not None:
        info.config.CopyFrom(config)
    for version in sorted(model.versions.values(), key=lambda v: v.version):
        info.versions.add(
            version=version.version,
            state=version.state,
            reason=version.reason,
            providers=version.providers,
        )
        if version.config is not None and version.config.HasField("variant"):
            info.versions[-1].variant.CopyFrom(version.config.variant)
    return info
