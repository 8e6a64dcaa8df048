"""KServe v2 REST bodies <-> the data plane's values (`onyx.serve.protocol`), no protobuf between.

An infer request is JSON, optionally followed by binary tensor data (Triton's binary-data
extension): the `Inference-Header-Content-Length` header gives the JSON's length, and each input
with the parameter `binary_data_size` takes that many bytes of what follows, in input order.
Every input becomes raw data (numbers little-endian, BYTES length-prefixed), which the data plane
decodes as it decodes gRPC's. Outputs come back as JSON `data`, or as binary after the JSON when
the output's parameter `binary_data` (or the request's `binary_data_output`) is true.

    parsed = infer_request(body, header_length, "pets", "")     # .request: an InferenceRequest
    body, header_length = infer_response(response, parsed.binary)

Other answers are the data plane's description values as JSON (`as_json`): every field present,
64-bit integers as numbers, as Triton writes them (perf_analyzer reads `count` and `ns` as
integers).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from onyx.contract.errors import InvalidInput
from onyx.serve.protocol import (
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    RequestedOutput,
    join_bytes,
    split_bytes,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
# KServe datatypes with a fixed size, as they travel: little-endian.
NUMERIC: dict[str, np.dtype[Any]] = {
    name: np.dtype(kind).newbyteorder("<")
    for name, kind in {
        "BOOL": np.bool_,
        "UINT8": np.uint8,
        "UINT16": np.uint16,
        "UINT32": np.uint32,
        "UINT64": np.uint64,
        "INT8": np.int8,
        "INT16": np.int16,
        "INT32": np.int32,
        "INT64": np.int64,
        "FP16": np.float16,
        "FP32": np.float32,
        "FP64": np.float64,
    }.items()
}


@dataclass(frozen=True)
class BinaryOutputs:
    """Which outputs the client wants as binary data rather than JSON."""

    default: bool
    named: dict[str, bool]

    def wanted(self, name: str) -> bool:
        return self.named.get(name, self.default)


@dataclass(frozen=True)
class ParsedInfer:
    request: InferenceRequest
    binary: BinaryOutputs
    # The request's `timeout` parameter (tritonclient sends microseconds), in seconds.
    timeout_s: float | None


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON, binary data) of a request or response body."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise InvalidInput(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 <= length <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH} {length} is outside the body's {len(body)} bytes")
    return body[:length], body[length:]


def parse_json(text: bytes) -> dict[str, Any]:
    try:
        header = json.loads(text) if text else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the request is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidInput("the request must be a JSON object")
    return header


def infer_request(body: bytes, header_length: str | None, model: str, version: str) -> ParsedInfer:
    text, binary = split_body(body, header_length)
    header = parse_json(text)
    parameters = _object(header.get("parameters", {}), "parameters")
    inputs = _inputs(_list(header.get("inputs"), "inputs"), binary)
    outputs, binary_named = _outputs(_list(header.get("outputs", []), "outputs"))
    timeout = parameters.get("timeout")
    return ParsedInfer(
        InferenceRequest(model, version, str(header.get("id", "")), inputs, outputs),
        BinaryOutputs(bool(parameters.get("binary_data_output", False)), binary_named),
        None if timeout is None else _integer(timeout, "timeout") / 1e6,
    )


def _inputs(specs: list[Any], binary: bytes) -> list[InputTensor]:
    """Every input, each with its raw data: from JSON, or its share of the binary data."""
    inputs, offset = [], 0
    for index, tensor in enumerate(specs):
        spec = _object(tensor, f"inputs[{index}]")
        raw, offset = _input(spec, binary, offset)
        name, datatype = str(spec.get("name", "")), str(spec.get("datatype", ""))
        inputs.append(InputTensor(name, datatype, _shape(spec.get("shape")), raw))
    if offset != len(binary):
        raise InvalidInput(
            f"the body has {len(binary) - offset} bytes of binary data no input claims"
        )
    return inputs


def _outputs(specs: list[Any]) -> tuple[list[RequestedOutput], dict[str, bool]]:
    """The requested outputs, and whether each is wanted as binary data."""
    outputs, binary = [], {}
    for index, output in enumerate(specs):
        spec = _object(output, f"outputs[{index}]")
        name = str(spec.get("name", ""))
        wanted = _object(spec.get("parameters", {}), f"outputs[{index}].parameters")
        k = wanted.get("classification")
        classification = None if "classification" not in wanted else _integer(k, "classification")
        outputs.append(RequestedOutput(name, classification))
        binary[name] = bool(wanted.get("binary_data", False))
    return outputs, binary


def _input(spec: dict[str, Any], binary: bytes, offset: int) -> tuple[bytes, int]:
    """One input's raw contents, and where the next input's binary data starts."""
    name, datatype = spec.get("name"), spec.get("datatype")
    parameters = _object(spec.get("parameters", {}), f"input {name!r} parameters")
    if "binary_data_size" in parameters:
        size = _integer(parameters["binary_data_size"], "binary_data_size")
        if size < 0 or offset + size > len(binary):
            raise InvalidInput(f"input {name!r}: binary_data_size {size} runs past the body")
        return binary[offset : offset + size], offset + size
    if "data" not in spec:
        raise InvalidInput(f"input {name!r} has neither data nor binary_data_size")
    values = _flatten(spec["data"])
    shape = _shape(spec.get("shape"))
    if len(values) != int(np.prod(shape)):
        raise InvalidInput(f"input {name!r} has {len(values)} values for shape {shape}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise InvalidInput(f"BYTES input {name!r} takes JSON strings")
        return join_bytes([v.encode() for v in values]), offset
    if datatype not in NUMERIC:
        raise InvalidInput(f"input {name!r} has unknown datatype {datatype!r}")
    try:
        array = np.asarray(values, dtype=NUMERIC[str(datatype)])
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"input {name!r}: data is not {datatype}: {exc}") from None
    return array.tobytes(), offset


def infer_response(response: InferenceResponse, binary: BinaryOutputs) -> tuple[bytes, int]:
    """The response body, and the length of its JSON part (the whole body when no binary)."""
    outputs, chunks = [], []
    for tensor in response.outputs:
        raw = tensor.raw
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if binary.wanted(tensor.name):
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif tensor.datatype == "BYTES":
            entry["data"] = [item.decode("utf-8", errors="replace") for item in split_bytes(raw)]
        else:
            entry["data"] = np.frombuffer(raw, dtype=NUMERIC[tensor.datatype]).tolist()
        outputs.append(entry)
    header: dict[str, Any] = {
        "model_name": response.model,
        "model_version": response.version,
        "outputs": outputs,
    }
    if response.id:
        header["id"] = response.id
    text = json.dumps(header).encode()
    return text + b"".join(chunks), len(text)


def as_json(value: Any) -> Any:
    """A data plane description value (`onyx.serve.protocol`) as Triton's REST JSON."""
    return dataclasses.asdict(value)


def _flatten(data: Any) -> list[Any]:
    """JSON tensor data, flat or nested row-major, as one flat list."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat += _flatten(item)
    return flat


def _shape(shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise InvalidInput(f"an input's shape must be a list of integers, got {shape!r}")
    return shape


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {value!r}")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {value!r}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"{what} must be a JSON list, got {value!r}")
    return value
