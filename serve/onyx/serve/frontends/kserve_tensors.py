"""KServe v2 tensors in and out: the model's input array from an InferInputTensor, and outputs.

Inputs come as the model's own dtype (FP32, INT64, ...: `raw_input_contents` or typed
`contents`, shape [n, ...] checked against the config) or as BYTES of shape [n] or [n, 1]
(encoded images for image models, UTF-8 text for text models), decoded exactly like onyx.v1
inputs. Outputs are the raw model tensor, or with the classification extension BYTES strings
"score:index:label". Raw BYTES use KServe's layout: a 4-byte little-endian length, then the data.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from onyx.contract.dtypes import DTYPES, wire_dtype
from onyx.contract.errors import InvalidInput, quoted
from onyx.contract.scores import activate, top_k
from onyx.contract.text import TextEncoder
from onyx.proto.kserve import grpc_service_pb2 as kv2
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.inputs import (
    InputLimits,
    check_element_count,
    check_input_count,
    decode_inputs,
    dims_fit,
    element_count,
    shown_shape,
)


def raw_input(request: kv2.ModelInferRequest) -> bytes | None:
    if not request.raw_input_contents:
        return None
    if len(request.raw_input_contents) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(request.raw_input_contents)} entries for "
            f"{len(request.inputs)} inputs"
        )
    return request.raw_input_contents[0]


def decode_tensor(
    tensor: kv2.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    config: pb.ModelConfig,
    limits: InputLimits,
    encoder: TextEncoder | None = None,
) -> np.ndarray:
    """The model's input array from one KServe input tensor (BYTES are decoded like onyx.v1;
    text models need the `encoder` of the version that will run them)."""
    shape = list(tensor.shape)
    name = quoted(tensor.name)
    if not shape or shape[0] < 1:
        raise InvalidInput(f"input {name} shape {shown_shape(shape)} needs a batch axis >= 1")
    count = element_count(shape, f"input {name}")
    check_input_count(shape[0], limits)
    if tensor.datatype == "BYTES":
        return _decode_bytes(tensor, raw, shape, config, limits, encoder)
    check_element_count(count, limits)
    array = _decode_numeric(tensor, raw, shape, count, config)
    if encoder is not None:  # token ids outside the vocabulary would fail the whole batch
        encoder.check_ids(array)
    return array


def _decode_numeric(
    tensor: kv2.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    shape: list[int],
    count: int,
    config: pb.ModelConfig,
) -> np.ndarray:
    """`count` is the element count of `shape`, checked (positive, within the limits)."""
    spec = config.input
    name = quoted(tensor.name)
    expected = DTYPES[spec.dtype].kserve
    contents = DTYPES[spec.dtype].kserve_contents
    if tensor.name != spec.name:
        raise InvalidInput(f"model {quoted(config.name)} has input {spec.name!r}, not {name}")
    if tensor.datatype != expected:
        raise InvalidInput(
            f"input {name} is {quoted(tensor.datatype)}; the model takes {expected} "
            "(or BYTES: encoded images / UTF-8 text)"
        )
    dims = list(spec.dims)
    if not dims_fit([-1, *dims[1:]], shape):  # the batch axis was checked by the caller
        raise InvalidInput(
            f"input {name} shape {shown_shape(shape)} does not match the model's {dims}"
        )
    dtype = wire_dtype(spec.dtype)
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InvalidInput(
                f"input {name} has {len(raw)} bytes; shape {shape} of {expected} needs "
                f"{count * dtype.itemsize}"
            )
        array = np.frombuffer(raw, dtype=dtype)
    elif contents is None:
        raise InvalidInput(f"send {expected} input {name} as raw_input_contents")
    else:
        values = getattr(tensor.contents, contents)
        if len(values) != count:
            raise InvalidInput(f"input {name} has {len(values)} values for shape {shape}")
        try:
            array = np.asarray(values, dtype=dtype)
        except OverflowError as exc:  # e.g. a uint64 content beyond the model's int64
            raise InvalidInput(f"input {name} has a value out of {expected}'s range") from exc
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _decode_bytes(
    tensor: kv2.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    shape: list[int],
    config: pb.ModelConfig,
    limits: InputLimits,
    encoder: TextEncoder | None,
) -> np.ndarray:
    name = quoted(tensor.name)
    if len(shape) > 2 or shape[1:] not in ([], [1]):
        raise InvalidInput(
            f"BYTES input {name} needs shape [n] or [n, 1], got {shown_shape(shape)}"
        )
    items = split_bytes(raw) if raw is not None else list(tensor.contents.bytes_contents)
    if len(items) != shape[0]:
        raise InvalidInput(f"BYTES input {name} has {len(items)} elements for {shape}")
    if config.task == pb.TASK_TEXT:
        inputs = [api.Input(text=_utf8(item, index)) for index, item in enumerate(items)]
    else:
        inputs = [api.Input(image=item) for item in items]
    return decode_inputs(inputs, config, limits, encoder)


def _utf8(item: bytes, index: int) -> str:
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"input {index}: text is not valid UTF-8 (at byte {exc.start})") from exc


def split_bytes(raw: bytes) -> list[bytes]:
    """KServe's raw BYTES layout: each element is a 4-byte little-endian length, then the data."""
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


def add_output(
    response: kv2.ModelInferResponse,
    wanted: kv2.ModelInferRequest.InferRequestedOutputTensor,
    outputs: np.ndarray,
    config: pb.ModelConfig,
) -> None:
    if wanted.name != config.output.name:
        raise InvalidInput(
            f"model {config.name!r} has output {config.output.name!r}, not {wanted.name!r}"
        )
    k = _classification_count(wanted)
    tensor = response.outputs.add(name=wanted.name)
    if k:
        scores = activate(outputs, config.output_activation)
        rows = [
            [f"{r.score:f}:{r.index}:{r.label}".encode() for r in top_k(row, k, config.labels)]
            for row in scores
        ]
        tensor.datatype, tensor.shape[:] = "BYTES", [len(rows), len(rows[0])]
        response.raw_output_contents.append(join_bytes([item for row in rows for item in row]))
        return
    array = np.ascontiguousarray(outputs, dtype=wire_dtype(config.output.dtype))
    tensor.datatype, tensor.shape[:] = DTYPES[config.output.dtype].kserve, list(array.shape)
    response.raw_output_contents.append(array.tobytes())


def _classification_count(wanted: kv2.ModelInferRequest.InferRequestedOutputTensor) -> int:
    if "classification" not in wanted.parameters:
        return 0
    parameter = wanted.parameters["classification"]
    k = parameter.int64_param if parameter.HasField("int64_param") else parameter.uint64_param
    if k < 1:
        raise InvalidInput(f"classification must be a positive integer, got {k}")
    return int(k)
