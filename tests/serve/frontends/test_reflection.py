"""Server reflection answers under grpc.reflection.v1 and v1alpha alike (real server, port 0).

python -m pytest tests/serve/frontends/test_reflection.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as alpha_grpc

from onyx.proto.reflection.v1 import reflection_pb2 as v1_pb2
from onyx.proto.reflection.v1 import reflection_pb2_grpc as v1_grpc
from onyx.serve.background import ServerThread

VERSIONS = {"v1": (v1_pb2, v1_grpc), "v1alpha": (alpha_pb2, alpha_grpc)}


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_reflection_lists_services_and_describes_them(
    repo: Path, start_server: Callable[..., ServerThread], version: str
) -> None:
    messages, stubs = VERSIONS[version]
    server = start_server(repo)
    stub: Any = stubs.ServerReflectionStub(grpc.insecure_channel(server.address))
    requests = [
        messages.ServerReflectionRequest(list_services=""),
        messages.ServerReflectionRequest(file_containing_symbol="onyx.v1.Classifier"),
    ]
    listed, described = list(stub.ServerReflectionInfo(iter(requests), timeout=10))
    names = {service.name for service in listed.list_services_response.service}
    assert {
        "onyx.v1.Classifier", "inference.GRPCInferenceService", "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
    } <= names  # fmt: skip
    files = described.file_descriptor_response.file_descriptor_proto
    protos = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
    assert any(s.name == "Classifier" for p in protos for s in p.service)
