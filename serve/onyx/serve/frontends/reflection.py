"""Server reflection under both names: `grpc.reflection.v1` (stable) and `grpc.reflection.v1alpha`.

grpcio-reflection implements only v1alpha. The two protocols have the same messages with the
same field numbers, so v1 is served by converting each message on the wire to the other's type
and letting grpcio-reflection answer.

    enable_reflection([CLASSIFIER_SERVICE, ...], server)    # grpcurl -plaintext HOST:PORT list
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection as alpha
from grpc_reflection.v1alpha import reflection_pb2 as alpha_pb2

from onyx.proto.reflection.v1 import reflection_pb2 as v1_pb2
from onyx.proto.reflection.v1 import reflection_pb2_grpc as v1_grpc

V1_SERVICE_NAME: str = v1_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1ALPHA_SERVICE_NAME: str = alpha.SERVICE_NAME


class ReflectionV1(v1_grpc.ServerReflectionServicer):  # type: ignore[misc]
    """grpc.reflection.v1, answered by grpcio-reflection's v1alpha servicer."""

    def __init__(self, service_names: Sequence[str]) -> None:
        self._alpha = alpha.aio.ReflectionServicer(service_names)

    async def ServerReflectionInfo(
        self, request_iterator: AsyncIterator[v1_pb2.ServerReflectionRequest], context: Any
    ) -> AsyncIterator[v1_pb2.ServerReflectionResponse]:
        async def as_alpha() -> AsyncIterator[alpha_pb2.ServerReflectionRequest]:
            async for request in request_iterator:
                yield alpha_pb2.ServerReflectionRequest.FromString(request.SerializeToString())

        async for response in self._alpha.ServerReflectionInfo(as_alpha(), context):
            yield v1_pb2.ServerReflectionResponse.FromString(response.SerializeToString())


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serve reflection (both versions) listing `service_names` and the reflection services."""
    names = [*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME]
    alpha.enable_server_reflection(names, server)
    v1_grpc.add_ServerReflectionServicer_to_server(ReflectionV1(names), server)
