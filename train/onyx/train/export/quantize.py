"""Faster variants of a verified fp32 ONNX file, with ONNX Runtime's own tools.

    prepare_for_quantization(fp32, prepared)               # shape inference + ORT optimisation
    quantize_int8_static(prepared, int8, batches, Int8Format("qdq", "uint8"))   # CNNs
    quantize_int8_dynamic(fp32, int8)                      # RNN text models
    convert_fp16(fp32, fp16)                               # GPU serving

Static int8 (CNNs): activations' ranges are calibrated (MinMax) on real inputs run through the
served preprocessing; weights are int8 per output channel (a per-tensor scale loses the small
channels of depthwise convolutions). The layout (QDQ or QOperator) and the activation type
(uint8: "U8S8", int8: "S8S8") were chosen by measurement (`bench/quant_formats.py`,
bench/README.md): on AVX-512 VNNI CPUs, QDQ U8S8 is the fastest; S8S8 pays for a shift to
unsigned inside the VNNI kernels.

Dynamic int8 (text): weights of LSTM, MatMul/Gemm and the embedding Gather are int8, activations
are quantized on the fly per batch. ONNX Runtime has no quantized GRU, so a GRU's recurrence
stays float32 (`FP32_PARTS`).

fp16: every float tensor inside the graph becomes float16, the graph's inputs and outputs stay
float32 (clients and the server's preprocessing keep sending float32).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

log = logging.getLogger(__name__)

Layout = Literal["qdq", "qoperator"]
Activations = Literal["uint8", "int8"]
# ONNX Runtime quantizes these in a recurrent text model; anything else stays float32.
DYNAMIC_OP_TYPES = ("LSTM", "MatMul", "Gemm", "Gather")
# What stays float32 in a dynamically quantized model of each cell (ORT has no int8 GRU).
FP32_PARTS = {"gru": "GRU recurrence (ONNX Runtime has no int8 GRU)", "lstm": ""}


@dataclass(frozen=True)
class Int8Format:
    """How a static int8 model is laid out; weights are always int8 ("S8"), per channel."""

    # qdq: QuantizeLinear/DequantizeLinear pairs that ORT fuses into int8 kernels at load;
    # qoperator: QLinearConv/QLinearMatMul written into the file.
    layout: Layout = "qdq"
    activations: Activations = "uint8"

    def describe(self) -> str:
        pair = "U8S8" if self.activations == "uint8" else "S8S8"
        return f"{self.layout.upper()} {pair}"


# The measured winner on this CPU (bench/README.md, "int8 formats").
DEFAULT_INT8_FORMAT = Int8Format("qdq", "uint8")


def prepare_for_quantization(source: Path, target: Path) -> None:
    """ONNX Runtime's pre-processing: symbolic + ONNX shape inference and graph optimisation
    (BatchNorm folded into Conv, constants folded), so every tensor to quantize has a shape."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(source), str(target), skip_symbolic_shape=False, auto_merge=True)
    if not target.is_file():
        raise RuntimeError(f"ONNX Runtime's quantization pre-processing wrote no {target}")


class _Batches(CalibrationDataReader):  # type: ignore[misc]
    """Calibration inputs for ONNX Runtime: (B, ...) float32 batches of the graph's one input."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self._input_name = input_name
        self._batches = batches
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {self._input_name: self._batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0


def quantize_int8_static(
    source: Path,
    target: Path,
    input_name: str,
    batches: Sequence[np.ndarray],
    fmt: Int8Format = DEFAULT_INT8_FORMAT,
    fp32_nodes: Sequence[str] = (),
) -> None:
    """Static int8 of a prepared fp32 file, calibrated on `batches` (MinMax, per-channel);
    the nodes named in `fp32_nodes` stay float32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = _Batches(input_name, batches)
    quantize_static(
        str(source),
        str(target),
        reader,
        quant_format=QuantFormat.QDQ if fmt.layout == "qdq" else QuantFormat.QOperator,
        per_channel=True,
        activation_type=QuantType.QUInt8 if fmt.activations == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=list(fp32_nodes),
    )


def leading_convolutions(path: Path, count: int) -> list[str]:
    """Names of the first `count` Conv nodes, in graph (topological) order."""
    model = onnx.load(str(path), load_external_data=False)
    return [node.name for node in model.graph.node if node.op_type == "Conv"][:count]


def quantize_int8_dynamic(source: Path, target: Path) -> None:
    """Dynamic int8: int8 weights for LSTM, MatMul/Gemm and Gather; activations per batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=list(DYNAMIC_OP_TYPES),
        per_channel=False,  # ORT's DynamicQuantizeLSTM takes one scale per weight
        weight_type=QuantType.QInt8,
    )


def convert_fp16(source: Path, target: Path) -> None:
    """float16 inside, float32 at the edges (keep_io_types): clients send float32 as before."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(converted, str(target))


def quantized_node_count(path: Path) -> int:
    """How many nodes of the file run in int8 (a quantized file with none is no variant)."""
    model = onnx.load(str(path), load_external_data=False)
    int8_ops = {
        "QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
        "ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM",
    }  # fmt: skip
    return sum(node.op_type in int8_ops for node in model.graph.node)
