"""Export a sentiment checkpoint to ONNX, prove ONNX Runtime agrees with torch, publish it.

    onyx export runs/sentiment/best.pt --name sentiment      (`onyx export` sends text here)

The graph takes one int64 `input` of shape (batch, time), both axes dynamic, and returns
(batch, classes) logits. The vocabulary (`vocab.txt`) is published next to model.onnx and the
config records max length, pad/unk ids and the tokenizer.

Parity: ONNX Runtime is compared with torch on random ids over batch sizes {1, 2, 7} x lengths
{1, 5, 64, max_length}, each batch with rows of mixed real lengths padded to the batch length,
so padding masking is checked too. Tolerance on logits: |ort - torch| <= atol + rtol * |torch|
with atol 1e-4, rtol 1e-3 (float32 LSTM/GRU kernels differ by ~1e-6; the exporter bugs this
guards against, e.g. a GRU exported with the wrong `linear_before_reset` (pytorch #189225) or
a frozen time axis (#191855), miss by 1e-2 or fail outright). The dynamo exporter is tried first;
if it fails or disagrees, the TorchScript exporter is used and checked again; if that disagrees
too, nothing is published. The exporter that produced the file is recorded in the config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnx
import torch

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.text import PAD_ID, UNK_ID, Vocabulary
from onyx.train.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    PARITY_BATCH_SIZES,
    ExportConfig,
    ExportResult,
    ParityError,
    batching_of,
    check_parity,
    export_info,
    ir_version_of,
    publish_export,
    write_onnx,
)
from onyx.train.text_models import TextClassifier, TextModelConfig

log = logging.getLogger(__name__)

VOCABULARY_FILE = "vocab.txt"
PARITY_LENGTHS = (1, 5, 64)
EXPORTERS = ("dynamo", "torchscript")


def text_model_of(checkpoint: dict[str, Any]) -> TextClassifier:
    model = TextClassifier(TextModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def parity_inputs(vocab_size: int, max_length: int, seed: int = 0) -> list[torch.Tensor]:
    """Random ids for every (batch, length) pair; row 0 is full length, the others shorter and
    right-padded, like a server batch."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for length in sorted({*PARITY_LENGTHS, max_length}):
        for batch in PARITY_BATCH_SIZES:
            ids = torch.randint(2, max(vocab_size, 3), (batch, length), generator=generator)
            real = torch.randint(1, length + 1, (batch,), generator=generator)
            real[0] = length
            ids[torch.arange(length).unsqueeze(0) >= real.unsqueeze(1)] = PAD_ID
            batches.append(ids)
    return batches


def export_text_onnx(model: TextClassifier, path: Path, opset: int, exporter: str) -> None:
    """Write the model with dynamic batch and time axes; the example is (2, 8), never size 1."""
    example = torch.randint(2, max(model.config.vocab_size, 3), (2, 8))
    # One self-contained file: RNNs are small.
    write_onnx(model, example, path, opset, exporter, time_axis=True, external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


# The shared check (shape, then closeness); the name stays for the text-side callers.
check_text_parity = check_parity


def export_verified(
    model: TextClassifier,
    path: Path,
    opset: int,
    inputs: list[torch.Tensor],
    atol: float,
    rtol: float,
) -> tuple[str, float]:
    """Try each exporter until one passes parity; (exporter, max diff). Raises ParityError."""
    failures = []
    for exporter in EXPORTERS:
        try:
            export_text_onnx(model, path, opset, exporter)
            return exporter, check_text_parity(model, path, inputs, atol, rtol)
        except ParityError as exc:
            failures.append(f"{exporter}: {exc}")
        except Exception as exc:  # an exporter crash: try the next one
            failures.append(f"{exporter} export failed: {exc}")
        log.warning("%s", failures[-1])
    raise ParityError(
        "no exporter produced a model that agrees with torch; not published: "
        + " | ".join(failures)
    )


def build_text_config(
    export: ExportConfig, checkpoint: dict[str, Any], exporter: str, diff: float, ir_version: int
) -> pb.ModelConfig:
    labels = list(checkpoint["labels"])
    cell = checkpoint["model_config"]["cell"]
    return pb.ModelConfig(
        name=export.name,
        task=pb.TASK_TEXT,
        labels=labels,
        input=pb.TensorSpec(name=INPUT_NAME, dtype=pb.DATA_TYPE_INT64, dims=[-1, -1]),
        output=pb.TensorSpec(name=OUTPUT_NAME, dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, len(labels)]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        text=pb.TextPreprocessing(
            vocabulary_file=VOCABULARY_FILE,
            max_length=checkpoint["max_length"],
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            tokenizer=checkpoint["tokenizer"],
        ),
        batching=batching_of(export),
        export=export_info(export, exporter, diff, ir_version),
        description=f"{cell} sentiment model trained on {checkpoint['config']['data']}",
    )


def export_text_checkpoint(
    export: ExportConfig, work_dir: Path, checkpoint: dict[str, Any]
) -> ExportResult:
    """Export, verify and publish a loaded text checkpoint; `work_dir` holds the files."""
    model = text_model_of(checkpoint)
    onnx_path = work_dir / "model.onnx"
    inputs = parity_inputs(model.config.vocab_size, checkpoint["max_length"])
    exporter, diff = export_verified(
        model, onnx_path, export.opset, inputs, export.atol, export.rtol
    )
    Vocabulary(checkpoint["vocabulary"]).save(work_dir / VOCABULARY_FILE)
    config = build_text_config(export, checkpoint, exporter, diff, ir_version_of(onnx_path))
    return publish_export(export, checkpoint, config, work_dir)
