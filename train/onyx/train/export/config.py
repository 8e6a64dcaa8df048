"""What an export is asked for (`ExportConfig`) and what it produced (`ExportResult`), plus the
parts of the ModelConfig that do not depend on the task (batching, export provenance)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import torch

from onyx.proto.v1 import model_config_pb2 as pb


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


@dataclass(frozen=True)
class ExportResult:
    version: int
    model_path: Path
    config: pb.ModelConfig
    max_abs_diff: float


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
