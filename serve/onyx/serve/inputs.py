"""Turn the inputs of a request into one model-ready array, validating each against the model.

Every error names the offending input by its index, so a client sending 50 images learns which
one was bad. Blocking (image decoding): call from an executor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from onyx.contract.dtypes import wire_dtype
from onyx.contract.errors import InvalidInput, LimitExceeded, ServeError
from onyx.contract.preprocess import image_bytes_to_array
from onyx.contract.text import TextEncoder, pad_batch
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.config import InputLimits

_KIND_FOR_TASK = {pb.TASK_IMAGE: "image", pb.TASK_TEXT: "text"}
_ARTICLE = {"image": "an", "text": "a"}


def decode_inputs(
    inputs: Sequence[api.Input],
    config: pb.ModelConfig,
    limits: InputLimits,
    encoder: TextEncoder | None = None,
) -> np.ndarray:
    """All inputs of one request as one (n, ...) array in the model's input layout; text models
    need the `encoder` of the version that will run them."""
    if not inputs:
        raise InvalidInput("request has no inputs")
    check_input_count(len(inputs), limits)
    arrays = [_decode_one(i, item, config, limits, encoder) for i, item in enumerate(inputs)]
    # Checked before stacking: text pads every input to the longest, so this is what the model
    # (and the batch it joins) will process.
    check_element_count(len(arrays) * max(a.size for a in arrays), limits)
    return stack(arrays, config)


def check_input_count(count: int, limits: InputLimits) -> None:
    if count > limits.max_inputs_per_request:
        raise LimitExceeded(
            f"request has {count} inputs, over the max_inputs_per_request limit of "
            f"{limits.max_inputs_per_request}"
        )


def element_count(shape: Sequence[int], what: str = "tensor") -> int:
    """The number of elements of `shape`, refusing zero and negative sizes; computed with
    Python ints, so `[4, 2**62]` is 2**64 elements, never an int64 that wrapped to 0."""
    if any(int(s) < 1 for s in shape):
        raise InvalidInput(f"{what} shape {shown_shape(shape)} has a size < 1; each needs >= 1")
    return math.prod(int(s) for s in shape)


def check_element_count(count: int, limits: InputLimits, what: str = "request") -> None:
    if count > limits.max_request_elements:
        raise LimitExceeded(
            f"{what} has {count} tensor elements, over the max_request_elements limit of "
            f"{limits.max_request_elements}"
        )


def dims_fit(dims: Sequence[int], shape: Sequence[int]) -> bool:
    """Whether `shape` matches `dims`, where -1 is a dynamic axis."""
    return len(shape) == len(dims) and all(d in (-1, s) for d, s in zip(dims, shape, strict=True))


def stack(arrays: Sequence[np.ndarray], config: pb.ModelConfig) -> np.ndarray:
    """Stack per-input arrays; token sequences are right-padded to the longest."""
    if config.task == pb.TASK_TEXT:
        return pad_batch(arrays, int(config.text.pad_id))
    if len(arrays) == 1:  # the common single-input request: a view, not a copy
        return arrays[0][None]
    return np.stack(arrays)


def _decode_one(
    index: int,
    item: api.Input,
    config: pb.ModelConfig,
    limits: InputLimits,
    encoder: TextEncoder | None,
) -> np.ndarray:
    kind = item.WhichOneof("kind")
    try:
        if kind == "tensor":
            array = tensor_to_array(item.tensor, config.input, limits)
            if encoder is not None:
                encoder.check_ids(array)
            return array
        if kind is None:
            raise InvalidInput("has no content (set image, text or tensor)")
        expected = _KIND_FOR_TASK[config.task]
        if kind != expected:
            raise InvalidInput(
                f"is {kind} but model {config.name!r} is {_ARTICLE[expected]} {expected} model; "
                f"send {expected} (or a preprocessed tensor)"
            )
        if kind == "image":
            return image_bytes_to_array(item.image, config.image, limits.max_image_pixels)
        return text_to_ids(item.text, config, limits, encoder)
    except ServeError as exc:
        raise type(exc)(f"input {index}: {exc}") from exc


def text_to_ids(
    text: str, config: pb.ModelConfig, limits: InputLimits, encoder: TextEncoder | None
) -> np.ndarray:
    """(time,) int64 ids: tokenized with the version's vocabulary, truncated to max_length."""
    if len(text) > limits.max_text_chars:
        raise LimitExceeded(
            f"text has {len(text)} characters, over the max_text_chars limit of "
            f"{limits.max_text_chars}"
        )
    if encoder is None:  # the repository builds one for every text version; never expected
        raise ServeError(f"model {config.name!r} has no text encoder loaded")
    return encoder.encode(text)


def tensor_to_array(
    tensor: api.Tensor, spec: pb.TensorSpec, limits: InputLimits | None = None
) -> np.ndarray:
    """Validate a raw tensor against the input spec (batch axis excluded) and wrap its bytes."""
    expected = list(spec.dims[1:])
    shape = list(tensor.shape)
    if not dims_fit(expected, shape):
        raise InvalidInput(
            f"tensor shape {shown_shape(shape)} does not match the model input {expected}"
        )
    count = element_count(shape)
    check_element_count(count, limits or InputLimits(), "tensor")
    dtype = wire_dtype(spec.dtype)
    size = count * dtype.itemsize
    if len(tensor.data) != size:
        raise InvalidInput(
            f"tensor data is {len(tensor.data)} bytes, shape {shape} of {dtype.name} needs {size}"
        )
    array = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    # A view of the request's bytes on little-endian hosts (no copy); byte-swapped elsewhere.
    return array.astype(dtype.newbyteorder("="), copy=False)


def shown_shape(shape: Sequence[int], limit: int = 8) -> str:
    """A client's shape for an error message: at most `limit` axes (a shape may have thousands)."""
    head = ", ".join(str(s) for s in shape[:limit])
    return f"[{head}, ... ({len(shape)} axes)]" if len(shape) > limit else f"[{head}]"
