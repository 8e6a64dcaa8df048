"""KServe v2 tensors in and out: the model's input array from an input tensor, and outputs.

Inputs come as the model's own dtype (FP32, INT64, ...: raw, or typed values; shape [n, ...]
checked against the config) or as BYTES of shape [n] or [n, 1] (encoded images for image
models, UTF-8 text for text models), decoded exactly like onyx.v1 inputs. Outputs are the raw
model tensor, or with the classification extension BYTES strings "score:index:label".

    batch = decode_tensor(InputTensor("image", "FP32", [1, 3, 8, 8], raw), config, limits)
    logits = output_tensor(RequestedOutput("logits", classification=3), outputs, config)
"""

from __future__ import annotations

import numpy as np

from onyx.contract.dtypes import DTYPES, wire_dtype
from onyx.contract.errors import InvalidInput, quoted
from onyx.contract.scores import activate, top_k
from onyx.contract.text import TextEncoder
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.config import InputLimits
from onyx.serve.inputs import (
    check_element_count,
    check_input_count,
    decode_inputs,
    dims_fit,
    element_count,
    shown_shape,
)
from onyx.serve.protocol import InputTensor, OutputTensor, RequestedOutput, join_bytes, split_bytes


def decode_tensor(
    tensor: InputTensor,
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
        return _decode_bytes(tensor, shape, config, limits, encoder)
    check_element_count(count, limits)
    array = _decode_numeric(tensor, shape, count, config)
    if encoder is not None:  # token ids outside the vocabulary would fail the whole batch
        encoder.check_ids(array)
    return array


def _decode_numeric(
    tensor: InputTensor, shape: list[int], count: int, config: pb.ModelConfig
) -> np.ndarray:
    """`count` is the element count of `shape`, checked (positive, within the limits)."""
    spec = config.input
    name = quoted(tensor.name)
    expected = DTYPES[spec.dtype].kserve
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
    if tensor.raw is not None:
        if len(tensor.raw) != count * dtype.itemsize:
            raise InvalidInput(
                f"input {name} has {len(tensor.raw)} bytes; shape {shape} of {expected} needs "
                f"{count * dtype.itemsize}"
            )
        array = np.frombuffer(tensor.raw, dtype=dtype)
    elif tensor.values is None:
        raise InvalidInput(f"send {expected} input {name} as raw_input_contents")
    else:
        if len(tensor.values) != count:
            raise InvalidInput(f"input {name} has {len(tensor.values)} values for shape {shape}")
        try:
            array = np.asarray(tensor.values, dtype=dtype)
        except OverflowError as exc:  # e.g. a uint64 content beyond the model's int64
            raise InvalidInput(f"input {name} has a value out of {expected}'s range") from exc
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _decode_bytes(
    tensor: InputTensor,
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
    items = split_bytes(tensor.raw) if tensor.raw is not None else list(tensor.values or ())
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


def output_tensor(
    wanted: RequestedOutput, logits: np.ndarray, config: pb.ModelConfig
) -> OutputTensor:
    """The model's output as `wanted` asks: the raw tensor, or its top classes as BYTES."""
    if wanted.name != config.output.name:
        raise InvalidInput(
            f"model {config.name!r} has output {config.output.name!r}, not {wanted.name!r}"
        )
    k = wanted.classification
    if k is None:
        array = np.ascontiguousarray(logits, dtype=wire_dtype(config.output.dtype))
        datatype = DTYPES[config.output.dtype].kserve
        return OutputTensor(wanted.name, datatype, list(array.shape), array.tobytes())
    if k < 1:
        raise InvalidInput(f"classification must be a positive integer, got {k}")
    scores = activate(logits, config.output_activation)
    rows = [
        [f"{r.score:f}:{r.index}:{r.label}".encode() for r in top_k(row, k, config.labels)]
        for row in scores
    ]
    raw = join_bytes([item for row in rows for item in row])
    return OutputTensor(wanted.name, "BYTES", [len(rows), len(rows[0])], raw)


def float32_tensor(name: str, array: np.ndarray) -> OutputTensor:
    """An FP32 output that is not the model's own (e.g. saliency maps)."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return OutputTensor(name, "FP32", list(data.shape), data.tobytes())
