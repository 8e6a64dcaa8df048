"""Requests protobuf cannot parse are answered INVALID_ARGUMENT naming the field, not UNKNOWN.

A `string` field must hold UTF-8 (proto3): protobuf's parser refuses a request with invalid
UTF-8 in, say, `inputs[3].text`, and gRPC answers such a request UNKNOWN before any servicer
sees it. `DecodeErrors` swaps every method's request parser for one that, on failure, walks the
wire bytes to say what is wrong (`inputs[3].text is not valid UTF-8`), and answers that with
INVALID_ARGUMENT (a stream is ended with it).

    server = grpc.aio.server(interceptors=[DecodeErrors()])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from onyx.serve.frontends.wrapping import WrappingInterceptor

Parse = Callable[[bytes], Any]

# Protobuf wire types.
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request that does not parse; the servicer never sees it."""

    message: str


class _Refused(Exception):
    """A streamed request that does not parse: ends the call with INVALID_ARGUMENT."""


def problem(data: bytes, descriptor: Descriptor) -> str:
    """Why `data` is not a valid `descriptor` message, naming the field when it can."""
    try:
        found = _walk(data, descriptor, "")
    except (IndexError, ValueError):
        found = None
    return found or f"request is not a valid {descriptor.name} message"


def _walk(data: bytes, descriptor: Descriptor, prefix: str) -> str | None:
    """The first string field holding invalid UTF-8, as a path (`inputs[3].text`), or None.
    Raises ValueError/IndexError when the bytes are not protobuf wire format at all."""
    counts: dict[int, int] = {}
    offset = 0
    while offset < len(data):
        tag, offset = _varint(data, offset)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            _value, offset = _varint(data, offset)
            continue
        if wire in (_FIXED64, _FIXED32):
            offset += 8 if wire == _FIXED64 else 4
            continue
        if wire != _LENGTH:
            raise ValueError("groups or an unknown wire type")
        size, offset = _varint(data, offset)
        if offset + size > len(data):
            raise ValueError("a field runs past the end")
        payload, offset = data[offset : offset + size], offset + size
        field = descriptor.fields_by_number.get(number)
        if field is None:
            continue
        index = counts.get(number, 0)
        counts[number] = index + 1
        name = f"{prefix}{field.name}"
        if field.is_repeated:
            name += f"[{index}]"
        found = _field_problem(payload, field, name)
        if found:
            return found
    return None


def _field_problem(payload: bytes, field: FieldDescriptor, name: str) -> str | None:
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"{name} is not valid UTF-8 (at byte {exc.start})"
    elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
        return _walk(payload, field.message_type, f"{name}.")
    return None


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def lenient(parse: Parse | None) -> Parse | None:
    """`parse`, answering `Undecodable` instead of raising."""
    descriptor = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    if parse is None or not isinstance(descriptor, Descriptor):
        return parse
    strict, message_type = parse, descriptor

    def parse_or_explain(data: bytes) -> Any:
        try:
            return strict(data)
        except Exception:  # protobuf's DecodeError; any failure here is the client's bytes
            return Undecodable(problem(data, message_type))

    return parse_or_explain


class DecodeErrors(WrappingInterceptor):
    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:  # noqa: ARG002 (every method alike)
        return _wrap(handler)


def _wrap(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    parse, serialize = lenient(handler.request_deserializer), handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary), parse, serialize)
    if handler.unary_stream:
        behaviour = _server_stream(handler.unary_stream)
        return grpc.unary_stream_rpc_method_handler(behaviour, parse, serialize)
    if handler.stream_unary:
        behaviour = _unary(handler.stream_unary, streamed=True)
        return grpc.stream_unary_rpc_method_handler(behaviour, parse, serialize)
    behaviour = _client_stream(handler.stream_stream)
    return grpc.stream_stream_rpc_method_handler(behaviour, parse, serialize)


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            raise _Refused(request.message)
        yield request


def _unary(behaviour: Any, streamed: bool = False) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        try:
            return await behaviour(_checked(request) if streamed else request, context)
        except _Refused as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    return wrapped


def _server_stream(behaviour: Any) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        result = behaviour(request, context)
        if hasattr(result, "__aiter__"):
            async for response in result:
                yield response
        else:  # a coroutine that writes with context.write() (e.g. health Watch)
            await result

    return wrapped


def _client_stream(behaviour: Any) -> Any:
    async def wrapped(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            result = behaviour(_checked(requests), context)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    yield response
            else:
                await result
        except _Refused as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    return wrapped
