"""What every gRPC servicer shares: errors answered as status codes, and the client's deadline.

Both `onyx_v1.py` (onyx.v1) and `kserve.py` (KServe v2) decorate their unary RPCs with
`answers_errors`; `status_code` is the one place a `ServeError` becomes a `grpc.StatusCode`.

    @answers_errors
    async def Classify(self, request, context):
        return await self.classify(request, deadline_of(context))
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from onyx.contract.errors import ServeError, code_name

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


def status_code(error: BaseException) -> grpc.StatusCode:
    """The gRPC status code `error` is answered with (INTERNAL for anything unplanned)."""
    return grpc.StatusCode[code_name(error)]


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    """End the call with `code`, unless its deadline has passed: gRPC answers such a call
    DEADLINE_EXCEEDED itself, and a second answer fails inside gRPC's core (logged there as an
    error on every expired call under overload). The call is then left as cancelled."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise asyncio.CancelledError(f"deadline passed before the answer ({details})")
    await context.abort(code, details)
    raise AssertionError("unreachable: context.abort raises")


def answers_errors(handler: Handler[Request, Response]) -> Handler[Request, Response]:
    """Answer deliberate errors with their status code, and anything else with INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await handler(self, request, context)
        except ServeError as exc:
            await abort(context, status_code(exc), str(exc))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            log.exception("%s failed", handler.__name__)
            await abort(context, grpc.StatusCode.INTERNAL, f"internal error: {exc}")

    return wrapper


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The client's deadline as a `time.monotonic()` instant, if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def log_if_unplanned(error: BaseException, what: str) -> None:
    """Log, with its traceback, a stream request's failure that no ServeError explains; the
    stream answers it in band and goes on. Call it from the `except` block."""
    if not isinstance(error, ServeError):
        log.exception("%s failed", what)
