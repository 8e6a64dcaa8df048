"""KServe v2's gRPC messages <-> the data plane's values (`onyx.serve.protocol`).

An input tensor comes as `raw_input_contents` (one entry per input) or as typed `contents`; both
reach the data plane unchanged (`InputTensor.raw` / `.values`), which decodes them. The
classification extension's output parameter `classification` (int64 or uint64) becomes
`RequestedOutput.classification`. Outputs go back as `raw_output_contents`.

    request = infer_request(message)                        # an InferenceRequest
    message = infer_message(await dataplane.infer(request, deadline))
    metadata = as_message(kv2.ModelMetadataResponse, value)  # a description value
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.message import Message

from onyx.contract.dtypes import DTYPES
from onyx.contract.errors import InvalidInput
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.serve.protocol import (
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    ModelStatistics,
    RequestedOutput,
    StatisticDuration,
)

M = TypeVar("M", bound=Message)
# The typed `contents` field of each datatype a model takes, and of BYTES (None: raw only).
_CONTENTS = {d.kserve: d.kserve_contents for d in DTYPES.values()} | {"BYTES": "bytes_contents"}


def infer_request(message: kv2.ModelInferRequest) -> InferenceRequest:
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs"
        )
    inputs = [
        _input(tensor, raw[index] if raw else None) for index, tensor in enumerate(message.inputs)
    ]
    outputs = [RequestedOutput(o.name, _classification(o)) for o in message.outputs]
    return InferenceRequest(message.model_name, message.model_version, message.id, inputs, outputs)


def _input(tensor: kv2.ModelInferRequest.InferInputTensor, raw: bytes | None) -> InputTensor:
    if raw is not None:
        return InputTensor(tensor.name, tensor.datatype, tensor.shape, raw)
    field = _CONTENTS.get(tensor.datatype)
    # Any other datatype is refused before its values are read.
    values = getattr(tensor.contents, field) if field is not None else None
    return InputTensor(tensor.name, tensor.datatype, tensor.shape, values=values)


def _classification(wanted: kv2.ModelInferRequest.InferRequestedOutputTensor) -> int | None:
    if "classification" not in wanted.parameters:
        return None
    parameter = wanted.parameters["classification"]
    k = parameter.int64_param if parameter.HasField("int64_param") else parameter.uint64_param
    return int(k)


def infer_message(response: InferenceResponse) -> kv2.ModelInferResponse:
    message = kv2.ModelInferResponse(
        model_name=response.model, model_version=response.version, id=response.id
    )
    for tensor in response.outputs:
        message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        message.raw_output_contents.append(tensor.raw)
    return message


def as_message(kind: Callable[..., M], value: Any) -> M:
    """A description value (`onyx.serve.protocol`) as the KServe message it mirrors."""
    return kind(**dataclasses.asdict(value))


def statistics_message(value: ModelStatistics) -> kv2.ModelStatistics:
    """One version's statistics with what Onyx measures set, and Triton's response-cache and
    per-batch-size input/output times left out (JSON writes them as zeros)."""
    stats = value.inference_stats
    return kv2.ModelStatistics(
        name=value.name,
        version=value.version,
        last_inference=value.last_inference,
        inference_count=value.inference_count,
        execution_count=value.execution_count,
        inference_stats=kv2.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
        ),
        batch_stats=[
            kv2.InferBatchStatistics(
                batch_size=batch.batch_size, compute_infer=_duration(batch.compute_infer)
            )
            for batch in value.batch_stats
        ],
    )


def _duration(duration: StatisticDuration) -> kv2.StatisticDuration:
    return kv2.StatisticDuration(count=duration.count, ns=duration.ns)
