"""KServe v2 / Open Inference Protocol: `inference.GRPCInferenceService` on the Onyx port.

Standard clients work unchanged, e.g. with `tritonclient[grpc]`:

    client = tritonclient.grpc.InferenceServerClient("localhost:50051")
    x = tritonclient.grpc.InferInput("image", [1, 3, 224, 224], "FP32")
    x.set_data_from_numpy(batch)
    out = tritonclient.grpc.InferRequestedOutput("logits", class_count=3)
    client.infer("pets", [x], outputs=[out]).as_numpy("logits")   # [[b"0.91:2:cat", ...]]

ModelInfer (and the streaming ModelStreamInfer) take the model's one input as a tensor of its
dtype or as BYTES (encoded images / UTF-8 text). They answer the model's output tensor (raw
values), or with the classification extension (output parameter `classification` = k) BYTES
strings "score:index:label" of shape [n, k], scores after the model's output activation. Also
here: ModelConfig (a Triton-shaped subset, for perf_analyzer), Triton's statistics extension
(ModelStatistics) and the model-repository extension (index, load, unload; load/unload need
`--model-control explicit`).

Each RPC decodes its message (`kserve_tensors.py`), calls the data plane (`onyx.serve.dataplane`),
which decides everything above, and encodes the answer; errors become status codes (`rpc.py`).
"""

# gRPC servicer methods must take (request, context) whether they use them or not.
# ruff: noqa: ARG002

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.serve.dataplane import DataPlane
from onyx.serve.frontends.kserve_tensors import (
    as_message,
    infer_message,
    infer_request,
    statistics_message,
)
from onyx.serve.frontends.rpc import answers_errors, deadline_of, log_if_unplanned
from onyx.serve.frontends.streams import answer_concurrently

SERVICE_NAME = kv2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
Context: TypeAlias = grpc.aio.ServicerContext


class KServeServicer(kv2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, stream_window: int) -> None:
        self._dataplane = dataplane
        self._stream_window = stream_window

    async def ServerLive(self, request: kv2.ServerLiveRequest, context: Context) -> Any:
        return kv2.ServerLiveResponse(live=self._dataplane.live())

    async def ServerReady(self, request: kv2.ServerReadyRequest, context: Context) -> Any:
        return kv2.ServerReadyResponse(ready=self._dataplane.ready())

    @answers_errors
    async def ModelReady(self, request: kv2.ModelReadyRequest, context: Context) -> Any:
        ready = self._dataplane.model_ready(request.name, request.version)
        return kv2.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: kv2.ServerMetadataRequest, context: Context) -> Any:
        return as_message(kv2.ServerMetadataResponse, self._dataplane.server_metadata())

    @answers_errors
    async def ModelMetadata(self, request: kv2.ModelMetadataRequest, context: Context) -> Any:
        metadata = self._dataplane.model_metadata(request.name, request.version)
        return as_message(kv2.ModelMetadataResponse, metadata)

    @answers_errors
    async def ModelStatistics(self, request: kv2.ModelStatisticsRequest, context: Context) -> Any:
        entries = self._dataplane.statistics(request.name, request.version)
        return kv2.ModelStatisticsResponse(model_stats=[statistics_message(e) for e in entries])

    @answers_errors
    async def ModelInfer(self, request: kv2.ModelInferRequest, context: Context) -> Any:
        return await self.infer(request, deadline_of(context))

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[kv2.ModelInferRequest], context: Context
    ) -> AsyncIterator[kv2.ModelStreamInferResponse]:
        deadline = deadline_of(context)

        async def answer(request: kv2.ModelInferRequest) -> kv2.ModelStreamInferResponse:
            try:
                response = await self.infer(request, deadline)
            except Exception as exc:
                log_if_unplanned(exc, f"ModelStreamInfer request {request.id!r}")
                return kv2.ModelStreamInferResponse(
                    error_message=str(exc),
                    infer_response=kv2.ModelInferResponse(
                        model_name=request.model_name, id=request.id
                    ),
                )
            return kv2.ModelStreamInferResponse(infer_response=response)

        async for response in answer_concurrently(request_iterator, answer, self._stream_window):
            yield response

    async def infer(
        self, request: kv2.ModelInferRequest, deadline: float | None
    ) -> kv2.ModelInferResponse:
        response = await self._dataplane.infer(infer_request(request), deadline)
        return infer_message(response)

    @answers_errors
    async def ModelConfig(self, request: kv2.ModelConfigRequest, context: Context) -> Any:
        config = self._dataplane.model_config(request.name, request.version)
        return kv2.ModelConfigResponse(config=as_message(kv2.ModelConfig, config))

    @answers_errors
    async def RepositoryIndex(self, request: kv2.RepositoryIndexRequest, context: Context) -> Any:
        entries = self._dataplane.repository_index(ready_only=request.ready)
        return kv2.RepositoryIndexResponse(
            models=[as_message(kv2.RepositoryIndexResponse.ModelIndex, e) for e in entries]
        )

    @answers_errors
    async def RepositoryModelLoad(
        self, request: kv2.RepositoryModelLoadRequest, context: Context
    ) -> Any:
        await self._dataplane.load(request.model_name)
        return kv2.RepositoryModelLoadResponse()

    @answers_errors
    async def RepositoryModelUnload(
        self, request: kv2.RepositoryModelUnloadRequest, context: Context
    ) -> Any:
        await self._dataplane.unload(request.model_name)
        return kv2.RepositoryModelUnloadResponse()
