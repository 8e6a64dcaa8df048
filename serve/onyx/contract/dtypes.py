"""The model config's tensor dtypes (`onyx.v1.DataType`) and what each is called elsewhere.

One row per dtype: its numpy type, its KServe v2 datatype name ("FP32", also Triton's config
enum `TYPE_FP32`), the typed `InferTensorContents` field KServe clients may send it in, and the
type ONNX Runtime reports for a graph input or output of it.

    DTYPES[config.input.dtype].numpy             # np.float32
    DTYPES[pb.DATA_TYPE_INT64].kserve            # "INT64"
    wire_dtype(config.output.dtype)              # np.dtype("<f4"): how tensors travel
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onyx.proto.v1 import model_config_pb2 as pb


@dataclass(frozen=True)
class DType:
    numpy: type[np.generic]
    kserve: str  # KServe v2 `datatype`
    onnx: str  # onnxruntime NodeArg.type
    # The typed InferTensorContents field; None where KServe has none (FP16 goes raw only).
    kserve_contents: str | None

    @property
    def name(self) -> str:
        """numpy's name for it ("float32"), for messages."""
        return np.dtype(self.numpy).name


DTYPES: dict[int, DType] = {
    pb.DATA_TYPE_FLOAT32: DType(np.float32, "FP32", "tensor(float)", "fp32_contents"),
    pb.DATA_TYPE_INT64: DType(np.int64, "INT64", "tensor(int64)", "int64_contents"),
    pb.DATA_TYPE_FLOAT16: DType(np.float16, "FP16", "tensor(float16)", None),
    pb.DATA_TYPE_INT32: DType(np.int32, "INT32", "tensor(int32)", "int_contents"),
}


def wire_dtype(dtype: int) -> np.dtype[Any]:
    """A model dtype as it travels in requests and responses: little-endian."""
    return np.dtype(DTYPES[dtype].numpy).newbyteorder("<")
