"""A gRPC server interceptor recording the conventional `grpc_server_*` metrics for every RPC."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from onyx.serve.frontends.wrapping import WrappingInterceptor
from onyx.serve.metrics import GrpcMetrics


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()  # cancelled by its own deadline: gRPC says so
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "OK" if error is None else "UNKNOWN"


class MetricsInterceptor(WrappingInterceptor):
    def __init__(self, metrics: GrpcMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, "unary", method),
                handler.request_deserializer, handler.response_serializer,
            )  # fmt: skip
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, "client_stream", method),
                handler.request_deserializer, handler.response_serializer,
            )  # fmt: skip
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, "server_stream", method),
                handler.request_deserializer, handler.response_serializer,
            )  # fmt: skip
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.stream_stream, "bidi_stream", method),
            handler.request_deserializer, handler.response_serializer,
        )  # fmt: skip

    @contextlib.contextmanager
    def _recorded(
        self, kind: str, method: str, context: grpc.aio.ServicerContext
    ) -> Iterator[None]:
        """Time one call and count it under the status code it ends with."""
        done = self._metrics.record(kind, method)
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            done(_code_of(context, error))

    def _unary(self, behaviour: Any, kind: str, method: str) -> Any:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._recorded(kind, method, context):
                return await behaviour(request, context)

        return wrapped

    def _streaming(self, behaviour: Any, kind: str, method: str) -> Any:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with self._recorded(kind, method, context):
                result = behaviour(request, context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        yield response
                else:  # a coroutine that writes with context.write() (e.g. health Watch)
                    await result

        return wrapped
