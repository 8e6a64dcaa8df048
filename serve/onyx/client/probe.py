"""A health probe for container HEALTHCHECKs and scripts: exit 0 when the local server says so.

    python -m onyx.client.probe              # ready? the overall health entry
    python -m onyx.client.probe liveness     # alive? whatever its models
    ONYX_PORT=50052 python -m onyx.client.probe

The port is `ONYX_PORT` (as `onyx serve` reads it), else 50051. Readiness is the standard gRPC
health service's overall entry (""), the one Kubernetes' native gRPC readiness probe asks;
`liveness` is the entry that stays SERVING while the process answers. Plain-text gRPC only: with
--tls-cert, probe from the orchestrator (which can speak TLS) instead. Imports nothing heavy:
it runs every few seconds.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onyx.contract.ports import DEFAULT_PORT

# What to ask -> the health entry that answers it.
_SERVICES = {"": "", "ready": "", "readiness": "", "liveness": "liveness"}


def is_serving(address: str, service: str = "", timeout_s: float = 2.0) -> bool:
    """Whether the server at `address` reports `service` SERVING; False when it cannot say."""
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s)
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    service = _SERVICES.get(args[0] if args else "")
    if service is None or len(args) > 1:
        sys.stderr.write("usage: python -m onyx.client.probe [ready|liveness]\n")
        return 2
    port = os.environ.get("ONYX_PORT") or str(DEFAULT_PORT)
    return 0 if is_serving(f"localhost:{port}", service) else 1


if __name__ == "__main__":
    sys.exit(main())
