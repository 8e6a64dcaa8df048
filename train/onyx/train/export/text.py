"""The text half of export: rebuild the RNN from a checkpoint, its parity inputs, its ModelConfig.

The graph takes one int64 `input` of shape (batch, time), both axes dynamic, and returns
(batch, classes) logits. The vocabulary (`vocab.txt`) is published next to model.onnx and the
config records max length, pad/unk ids and the tokenizer.

Parity: ONNX Runtime is compared with torch on random ids over batch sizes {1, 2, 7} x lengths
{1, 5, 64, max_length}, each batch with rows of mixed real lengths padded to the batch length,
so padding masking is checked too. Tolerance on logits: |ort - torch| <= atol + rtol * |torch|
with atol 1e-4, rtol 1e-3 (float32 LSTM/GRU kernels differ by ~1e-6; the exporter bugs this
guards against, e.g. a GRU exported with the wrong `linear_before_reset` (pytorch #189225) or
a frozen time axis (#191855), miss by 1e-2 or fail outright). `export_verified` in
`onyx.train.export.onnx` tries the exporters in turn; the one that produced the file is recorded
in the config.
"""

from __future__ import annotations

from typing import Any

import torch

from onyx.contract.text import PAD_ID, UNK_ID
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.export.config import ExportConfig, batching_of, export_info
from onyx.train.export.onnx import INPUT_NAME, OUTPUT_NAME, PARITY_BATCH_SIZES
from onyx.train.tasks.text.models import TextClassifier, TextModelConfig

VOCABULARY_FILE = "vocab.txt"
PARITY_LENGTHS = (1, 5, 64)


def text_model_of(checkpoint: dict[str, Any]) -> TextClassifier:
    model = TextClassifier(TextModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def example_ids(vocab_size: int) -> torch.Tensor:
    """(2, 8) ids to trace with: never an axis of size 1, which dynamo would specialise."""
    return torch.randint(2, max(vocab_size, 3), (2, 8))


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
