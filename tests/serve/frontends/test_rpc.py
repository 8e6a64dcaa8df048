"""The shared gRPC glue, through a real gRPC server on port 0 serving one decorated handler."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import grpc
import pytest

from onyx.contract import errors
from onyx.contract.errors import ServeError
from onyx.serve.frontends.rpc import abort, answers_errors, deadline_of, status_code

SERVICE = "onyx.test.Errors"


def every_error() -> list[type[ServeError]]:
    found, todo = [ServeError], [ServeError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def documented_codes() -> dict[str, str]:
    """The tree at the top of errors.py: class name -> status code name."""
    assert errors.__doc__ is not None
    rows = re.findall(r"^\s+(?:[├└]── )?(\w+)\s+([A-Z_]+)\s", errors.__doc__, re.MULTILINE)
    return dict(rows)


class Raiser:
    """Raises the error named by the request (b"" for none), or answers how long is left."""

    @answers_errors
    async def Raise(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        name = request.decode()
        if name == "ValueError":
            raise ValueError("not planned")
        if name:
            raise getattr(errors, name)(f"raised {name}")
        deadline = deadline_of(context)
        return b"none" if deadline is None else f"{deadline - time.monotonic():.3f}".encode()


async def call(name: str, timeout: float | None = None) -> tuple[grpc.StatusCode, str]:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(Raiser().Raise)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Raise": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method = channel.unary_unary(f"/{SERVICE}/Raise")
            try:
                answer = await method(name.encode(), timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            return grpc.StatusCode.OK, answer.decode()
    finally:
        await server.stop(None)


def test_the_documented_tree_lists_every_error() -> None:
    assert documented_codes() == {cls.__name__: cls.code for cls in every_error()}


@pytest.mark.parametrize("error", every_error(), ids=lambda cls: cls.__name__)
def test_every_error_is_answered_with_its_documented_status(error: type[ServeError]) -> None:
    code, details = asyncio.run(call(error.__name__))
    assert code == grpc.StatusCode[documented_codes()[error.__name__]]
    assert code == status_code(error())
    assert details == f"raised {error.__name__}"


def test_an_unplanned_error_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="onyx.serve.frontends.rpc"):
        code, details = asyncio.run(call("ValueError"))
    assert (code, details) == (grpc.StatusCode.INTERNAL, "internal error: not planned")
    assert status_code(ValueError()) == grpc.StatusCode.INTERNAL
    assert "Raise failed" in caplog.text and "ValueError" in caplog.text


def test_the_deadline_is_the_clients() -> None:
    assert asyncio.run(call("")) == (grpc.StatusCode.OK, "none")
    code, left = asyncio.run(call("", timeout=30))
    assert code == grpc.StatusCode.OK
    assert 25 < float(left) < 31  # the grpc-timeout header rounds it up a little


class ExpiredContext:
    """A call whose deadline is `remaining` seconds away; records what it is answered."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining
        self.aborted: list[tuple[grpc.StatusCode, str]] = []

    def time_remaining(self) -> float | None:
        return self.remaining

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted.append((code, details))
        raise grpc.aio.AbortError()


def test_an_expired_call_is_not_answered_twice() -> None:
    """gRPC answers an expired call DEADLINE_EXCEEDED itself; a second answer would fail in its
    core (an ERROR log per expired call under overload). Live calls are answered as before."""
    expired = ExpiredContext(0.0)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(abort(expired, grpc.StatusCode.RESOURCE_EXHAUSTED, "busy"))  # type: ignore[arg-type]
    assert expired.aborted == []
    for remaining in (None, 0.5):
        live = ExpiredContext(remaining)
        with pytest.raises(grpc.aio.AbortError):
            asyncio.run(abort(live, grpc.StatusCode.RESOURCE_EXHAUSTED, "busy"))  # type: ignore[arg-type]
        assert live.aborted == [(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")]
