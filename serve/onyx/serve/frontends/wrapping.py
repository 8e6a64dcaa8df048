"""Server interceptors that wrap each method's handler once.

A method's handler never changes, so an interceptor wraps it on the first call and answers every
later call from a cache. Only methods the server has are cached: unknown names come from
clients and are unbounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method: str = details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if handler is None:
            return None
        self._wrapped[method] = wrapped = self.wrap(handler, method)
        return wrapped

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """`handler` (of `method`) with this interceptor's behaviour around it."""
        raise NotImplementedError
