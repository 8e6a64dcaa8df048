"""The image half of export: rebuild the CNN from a checkpoint, its parity inputs, its ModelConfig.

The graph takes one float32 `input` (batch, channels, height, width), batch dynamic, and returns
(batch, classes) logits; the run's `ImagePreprocessing` travels into the config.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.engine import checkpoint as ckpt
from onyx.train.export.config import ExportConfig, batching_of, export_info
from onyx.train.export.onnx import INPUT_NAME, OUTPUT_NAME, PARITY_BATCH_SIZES
from onyx.train.tasks.image.models import get_model
from onyx.train.tasks.image.task import in_channels


def image_model_of(checkpoint: dict[str, Any]) -> nn.Module:
    spec = ckpt.preprocessing_of(checkpoint)
    model = get_model(checkpoint["config"]["model"], len(checkpoint["labels"]), in_channels(spec))
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def example_input(spec: pb.ImagePreprocessing, batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(
        batch, in_channels(spec), spec.crop_height, spec.crop_width, generator=generator
    )


def parity_inputs(spec: pb.ImagePreprocessing) -> list[torch.Tensor]:
    return [example_input(spec, b, seed=b) for b in PARITY_BATCH_SIZES]


def build_model_config(
    export: ExportConfig,
    checkpoint: dict[str, Any],
    exporter: str,
    diff: float,
    ir_version: int,
) -> pb.ModelConfig:
    spec = ckpt.preprocessing_of(checkpoint)
    channels = in_channels(spec)
    labels = list(checkpoint["labels"])
    train = checkpoint["config"]
    return pb.ModelConfig(
        name=export.name,
        task=pb.TASK_IMAGE,
        labels=labels,
        input=pb.TensorSpec(
            name=INPUT_NAME,
            dtype=pb.DATA_TYPE_FLOAT32,
            dims=[-1, channels, spec.crop_height, spec.crop_width],
        ),
        output=pb.TensorSpec(name=OUTPUT_NAME, dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, len(labels)]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        image=spec,
        batching=batching_of(export),
        export=export_info(export, exporter, diff, ir_version),
        description=f"{train['model']} trained on {train['data']}",
    )
