"""Export to ONNX with a parity check, for every task, and publish into the model repository.

    result = export_checkpoint(ExportConfig(checkpoint=Path("runs/digits/best.pt"), name="digits"),
                               work_dir)

Modules: `onnx` (writing, the parity check, the verify-and-fall-back loop), `config` (what is
asked and produced), `image` and `text` (each task's model, inputs and ModelConfig),
`pretrained` (an ImageNet model as-is), `explainable` (CNNs that also output their feature map,
and the head file Grad-CAM needs), `variants`, `quantize` and `gate` (faster versions, published
only if accuracy holds), `publish` (into the repository) and `pipeline` (the one path from
checkpoint to published version).
"""

from __future__ import annotations

from onyx.train.export.config import ExportConfig, ExportResult
from onyx.train.export.onnx import (
    INPUT_NAME,
    OUTPUT_NAME,
    ParityError,
    check_parity,
    export_onnx,
    export_verified,
)
from onyx.train.export.pipeline import export_checkpoint, load_model, model_of

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportConfig",
    "ExportResult",
    "ParityError",
    "check_parity",
    "export_checkpoint",
    "export_onnx",
    "export_verified",
    "load_model",
    "model_of",
]
