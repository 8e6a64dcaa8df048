"""The `onyx.v1.Classifier` RPCs. Only request handling lives here; the work is elsewhere."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.errors import InvalidInput, ServeError, status_code
from onyx.serve.inputs import InputLimits, decode_inputs
from onyx.serve.repository import Model, Repository
from onyx.serve.scores import activate, top_k

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


def answers_errors(handler: Handler[Request, Response]) -> Handler[Request, Response]:
    """Answer deliberate errors with their status code, and anything else with INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await handler(self, request, context)
        except ServeError as exc:
            await context.abort(status_code(exc), str(exc))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            log.exception("%s failed", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc}")
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The client's deadline as a `time.monotonic()` instant, if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class ClassifierServicer(api_grpc.ClassifierServicer):
    def __init__(self, repository: Repository, limits: InputLimits, preprocess: Executor) -> None:
        self._repository = repository
        self._limits = limits
        self._preprocess = preprocess

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
        model = self._repository.get(request.model)
        version = model.version(request.version)
        config = model.config
        assert config is not None
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(
            self._preprocess, decode_inputs, request.inputs, config, self._limits,
            version.text_encoder,
        )
        outputs = await version.infer(batch, deadline)
        scores = activate(outputs, config.output_activation)
        k = request.top_k or DEFAULT_TOP_K
        return api.ClassifyResponse(
            model=model.name,
            version=version.version,
            results=[_classification(row, k, config.labels) for row in scores],
        )

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
        classes=[api.ClassScore(label=r.label, index=r.index, score=r.score) for r in top_k(scores, k, labels)]
    )


def model_info(model: Model) -> api.ModelInfo:
    info = api.ModelInfo(name=model.name, ready=model.ready, reason=model.reason)
    if model.config is not None:
        info.config.CopyFrom(model.config)
    for version in sorted(model.versions.values(), key=lambda v: v.version):
        info.versions.add(
            version=version.version,
            state=version.state,
            reason=version.reason,
            providers=version.providers,
        )
    return info
