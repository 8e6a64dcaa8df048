"""The data plane's requests and answers: Open Inference Protocol (KServe v2) values, wire-free.

Every front end decodes its wire format into these and encodes these into its wire format; the
data plane (`dataplane.py`) never sees a protobuf message or a JSON body. Tensors travel as
KServe's raw layout: numbers little-endian, BYTES elements each a 4-byte little-endian length
then the data (`join_bytes`, `split_bytes`).

The description types (metadata, config, index, statistics) mirror the KServe v2 messages of the
same meaning field for field, names and order, so `dataclasses.asdict(value)` is Triton's REST
JSON and `Message(**asdict(value))` the gRPC message (a test holds the two equal).

    request = InferenceRequest("pets", "", inputs=[InputTensor("image", "FP32", [1, 3, 8, 8], raw)])
    response = await dataplane.infer(request, deadline=None)
    response.outputs[0].raw                                   # the logits, little-endian FP32
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from onyx.contract.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class InputTensor:
    """One input tensor as the client sent it."""

    name: str
    datatype: str  # KServe's name: "FP32", "INT64", "BYTES", ...
    shape: Sequence[int]
    # Its data in the raw layout, when sent so;
    raw: bytes | None = None
    # else its values (KServe's typed contents), None when the datatype has no typed form.
    values: Sequence[Any] | None = None


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    # The classification extension's top-k ("score:index:label" strings); None: the raw tensor.
    classification: int | None = None


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    model: str
    version: str  # as sent: "" is the newest ready version
    id: str = ""
    inputs: Sequence[InputTensor] = ()
    # None named: the model's output.
    outputs: Sequence[RequestedOutput] = ()


@dataclass(frozen=True, slots=True)
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    raw: bytes


@dataclass(frozen=True, slots=True)
class InferenceResponse:
    model: str
    version: str
    id: str
    outputs: list[OutputTensor]


def split_bytes(raw: bytes) -> list[bytes]:
    """The elements of raw BYTES: each a 4-byte little-endian length, then the data."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput("BYTES raw contents end inside an element's length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput("BYTES raw contents end inside an element")
        items.append(raw[offset : offset + length])
        offset += length
    return items


def join_bytes(items: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


# --- descriptions: KServe v2's messages, field for field -------------------------------------


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: list[str]


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


@dataclass(frozen=True)
class TritonInput:
    name: str
    data_type: str  # Triton's enum by name: "TYPE_FP32"
    dims: list[int]  # without the batch axis
    optional: bool = False


@dataclass(frozen=True)
class TritonOutput:
    name: str
    data_type: str
    dims: list[int]


@dataclass(frozen=True)
class DynamicBatching:
    max_queue_delay_microseconds: int


@dataclass(frozen=True)
class ModelParameter:
    string_value: str


@dataclass(frozen=True)
class TritonConfig:
    """A model's config as Triton describes one (KServe's `ModelConfig`)."""

    name: str
    platform: str
    max_batch_size: int
    input: list[TritonInput]
    output: list[TritonOutput]
    dynamic_batching: DynamicBatching
    parameters: dict[str, ModelParameter]
    backend: str


@dataclass(frozen=True)
class ModelIndex:
    """One entry of the repository index: a loaded version, or a model with none."""

    name: str
    version: str
    state: str
    reason: str


@dataclass(frozen=True)
class StatisticDuration:
    count: int = 0
    ns: int = 0


@dataclass(frozen=True)
class InferStatistics:
    success: StatisticDuration
    fail: StatisticDuration
    queue: StatisticDuration
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration
    # Triton's response cache; Onyx has none.
    cache_hit: StatisticDuration = field(default_factory=StatisticDuration)
    cache_miss: StatisticDuration = field(default_factory=StatisticDuration)


@dataclass(frozen=True)
class InferBatchStatistics:
    batch_size: int
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration


@dataclass(frozen=True)
class ModelStatistics:
    name: str
    version: str
    last_inference: int  # ms since the epoch
    inference_count: int
    execution_count: int
    inference_stats: InferStatistics
    batch_stats: list[InferBatchStatistics]
