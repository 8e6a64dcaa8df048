"""What an export is asked for (`ExportConfig`) and what it produced (`ExportResult`), plus the
parts of the ModelConfig that do not depend on the task (batching, export provenance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import onnxruntime as ort
import torch

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.export.gate import GateFigures


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: Path
    name: str
    repository: Path = Path("models")
    # 18 is the newest opset every ONNX Runtime >= 1.16 runs; newer ones buy nothing here.
    opset: int = 18
    # On logits: float32 reassociation in fused kernels moves values by ~1e-5.
    atol: float = 1e-4
    rtol: float = 1e-3
    # Batching the server applies to this model.
    max_batch_size: int = 8
    # 0: a lone request never waits. Under load batches still form, from the requests that
    # queue while the model is busy; a timer wait would add >= 1 ms (event-loop timer
    # granularity) to every request at low load.
    max_queue_delay_us: int = 0
    # A registry model's ImageNet classifier as published (1000 labels, its recipe's
    # preprocessing) instead of `checkpoint`; see onyx.train.export.pretrained.
    pretrained: str = ""
    # Faster variants (docs/variants.md): published as the next version after the fp32 one,
    # only when they pass the accuracy gate on the validation split.
    variant: Literal["fp32", "int8", "fp16"] = field(
        default="fp32",
        metadata={"help": "Also publish a faster variant, gated on accuracy: int8 (CPU; CNNs "
                  "static, text models dynamic) or fp16 (GPU). fp32: none."},
    )  # fmt: skip
    calibration: Path = field(
        default=Path(),
        metadata={"help": "Folder of images to calibrate int8 on (default: the checkpoint's "
                  "training split)."},
    )  # fmt: skip
    # 256 images pin MinMax ranges as well as thousands do on CNNs; more only costs time.
    calibration_samples: int = field(
        default=256, metadata={"help": "Calibration images drawn (at most).", "min": 1}
    )
    validation: Path = field(
        default=Path(),
        metadata={"help": "Labelled data for the accuracy gate: class folders, or a text file "
                  "(default: the checkpoint's validation split)."},
    )  # fmt: skip
    max_accuracy_drop: float = field(
        default=1.0,
        metadata={"help": "Top-1 accuracy points the variant may lose vs fp32.", "min": 0},
    )
    min_agreement: float = field(
        default=0.99,
        metadata={"help": "Share of validation examples whose top-1 must equal fp32's.",
                  "min": 0, "max": 1},
    )  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    version: int
    model_path: Path
    config: pb.ModelConfig
    max_abs_diff: float
    # With --variant: the variant's version (0: none) and its gate figures.
    variant_version: int = 0
    gate: GateFigures | None = None


def batching_of(export: ExportConfig) -> pb.Batching:
    return pb.Batching(
        max_batch_size=export.max_batch_size, max_queue_delay_us=export.max_queue_delay_us
    )


def export_info(export: ExportConfig, exporter: str, diff: float, ir_version: int) -> pb.ExportInfo:
    """Provenance the server checks at load (an older runtime rejects newer IR versions)."""
    return pb.ExportInfo(
        opset=export.opset,
        ir_version=ir_version,
        onnxruntime_version=ort.__version__,
        torch_version=torch.__version__,
        exporter=exporter,
        parity_max_abs_diff=diff,
    )
