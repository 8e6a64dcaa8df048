"""Export a checkpoint (image or text) to ONNX, prove ONNX Runtime agrees with torch, publish it.

    onyx export runs/digits/best.pt --name digits --repository models
    onyx export --pretrained efficientnet_lite0 --name lite0     # ImageNet, as published

One path for both tasks: the checkpoint's task (`onyx.train.export.image`, `.text`) supplies the
model, a tracing example and the parity inputs; `export_verified` writes with the dynamo
exporter, falls back to the TorchScript one when it crashes or disagrees with torch, and raises
`ParityError` when neither agrees, in which case nothing is published. The task then builds the
ModelConfig and writes any side files (text: the vocabulary) next to model.onnx.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from google.protobuf import text_format
from torch import nn

from onyx.contract.text import Vocabulary
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.config import save_json
from onyx.train.engine import checkpoint as ckpt
from onyx.train.export import image, text
from onyx.train.export.config import ExportConfig, ExportResult
from onyx.train.export.explainable import explainable
from onyx.train.export.onnx import (
    OUTPUT_NAME,
    check_parity,
    export_verified,
    ir_version_of,
    write_onnx,
)
from onyx.train.export.pretrained import pretrained_checkpoint
from onyx.train.export.publish import publish
from onyx.train.export.variants import build_variant, keep_fp32_served, publish_variant

log = logging.getLogger(__name__)

BuildConfig = Callable[[ExportConfig, dict[str, Any], str, float, int], pb.ModelConfig]


@dataclass
class Exportable:
    """What one task contributes to the shared export path."""

    model: nn.Module
    example: torch.Tensor
    inputs: list[torch.Tensor]
    build_config: BuildConfig
    # Sequences: a dynamic time axis too; and one self-contained file (RNNs are small).
    time_axis: bool = False
    external_data: bool = True
    side_files: Callable[[Path], None] = field(default=lambda _: None)
    # Image models also output their last feature map, for explanations
    # (`onyx.train.export.explainable`).
    output_names: tuple[str, ...] = (OUTPUT_NAME,)


def model_of(checkpoint: dict[str, Any]) -> nn.Module:
    """The checkpoint's model in eval mode on CPU, rebuilt without any pretrained file."""
    if checkpoint["task"] == "text":
        return text.text_model_of(checkpoint)
    return image.image_model_of(checkpoint)


def load_model(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, checkpoint) for a checkpoint written by `onyx train`."""
    checkpoint = ckpt.load_checkpoint(path)
    return model_of(checkpoint), checkpoint


def exportable(checkpoint: dict[str, Any]) -> Exportable:
    if checkpoint["task"] == "text":
        model = text.text_model_of(checkpoint)
        vocabulary = Vocabulary(checkpoint["vocabulary"])
        return Exportable(
            model,
            text.example_ids(model.config.vocab_size),
            text.parity_inputs(model.config.vocab_size, checkpoint["max_length"]),
            text.build_text_config,
            time_axis=True,
            external_data=False,
            side_files=lambda folder: vocabulary.save(folder / text.VOCABULARY_FILE),
        )
    return _image_exportable(checkpoint)


def _image_exportable(checkpoint: dict[str, Any]) -> Exportable:
    """The CNN, with its last feature map as a second output when it can explain itself."""
    spec = ckpt.preprocessing_of(checkpoint)
    model, example = image.image_model_of(checkpoint), image.example_input(spec, 2)
    explained = explainable(checkpoint["config"]["model"], model, example, image.build_model_config)
    if explained is None:
        return Exportable(model, example, image.parity_inputs(spec), image.build_model_config)
    wrapped, build_config, side_files, output_names = explained
    return Exportable(
        wrapped,
        example,
        image.parity_inputs(spec),
        build_config,
        side_files=side_files,
        output_names=output_names,
    )


def export_checkpoint(export: ExportConfig, work_dir: Path) -> ExportResult:
    """Export, verify and publish; `work_dir` holds the files until they are published."""
    if export.pretrained:
        checkpoint = pretrained_checkpoint(export.pretrained)
    else:  # read once: it holds optimizer state
        checkpoint = ckpt.load_checkpoint(export.checkpoint)
    task = exportable(checkpoint)
    onnx_path = work_dir / "model.onnx"
    exporter, diff = export_verified(
        task.model,
        onnx_path,
        export.opset,
        task.inputs,
        export.atol,
        export.rtol,
        example=task.example,
        time_axis=task.time_axis,
        external_data=task.external_data,
        output_names=task.output_names,
    )
    task.side_files(work_dir)
    config = task.build_config(export, checkpoint, exporter, diff, ir_version_of(onnx_path))
    if export.variant == "fp32":
        return publish_export(export, checkpoint, config, work_dir)
    # Built and gated before anything is published: a refused variant publishes nothing.
    variant = build_variant(export, checkpoint, config, work_dir, task.side_files)
    keep_fp32_served(export, config)
    result = publish_export(export, checkpoint, config, work_dir)
    number = publish_variant(export, provenance_of(export, checkpoint), variant, result.version)
    log.info("published the %s variant as version %d", export.variant, number)
    return replace(result, variant_version=number, gate=variant.figures)


def provenance_of(export: ExportConfig, checkpoint: dict[str, Any]) -> dict[str, Any]:
    return {
        "export": {k: str(v) for k, v in asdict(export).items()},
        "train": checkpoint["config"],
        "train_metrics": checkpoint.get("metrics", {}),
    }


def publish_export(
    export: ExportConfig, checkpoint: dict[str, Any], config: pb.ModelConfig, work_dir: Path
) -> ExportResult:
    """Record provenance beside the verified file, then publish it as the next version."""
    info = config.export
    log.info(
        "exported with the %s exporter; ONNX Runtime vs torch max |diff| %.2g",
        info.exporter, info.parity_max_abs_diff,
    )  # fmt: skip
    save_json(provenance_of(export, checkpoint), work_dir / "export.json")
    version, model_path = publish(export.repository, config, work_dir)
    return ExportResult(version, model_path, config, info.parity_max_abs_diff)


def export_explainable(
    model: nn.Module,
    arch: str,
    labels: list[str],
    spec: pb.ImagePreprocessing,
    export: ExportConfig,
    work_dir: Path,
    exporter: str = "",
) -> ExportResult:
    """Export and publish an in-memory registry CNN (e.g. ImageNet Lite0 with its 1000 classes)
    the way `onyx export` publishes a checkpoint: verified, with its feature map and head.
    `exporter` ("dynamo" or "torchscript") skips the fall-back order (tests: the faster one)."""
    checkpoint = {
        "labels": labels,
        "config": {"model": arch, "data": "memory"},
        "preprocessing": text_format.MessageToString(spec),
    }
    example = image.example_input(spec, 2)
    explained = explainable(arch, model.eval(), example, image.build_model_config)
    if explained is None:
        raise ValueError(f"{arch} has no known feature-map split")
    wrapped, build_config, side_files, output_names = explained
    path, inputs = work_dir / "model.onnx", image.parity_inputs(spec)
    if exporter:
        write_onnx(wrapped, example, path, export.opset, exporter, output_names=output_names)
        diff = check_parity(wrapped, path, inputs, export.atol, export.rtol)
    else:
        exporter, diff = export_verified(
            wrapped, path, export.opset, inputs, export.atol, export.rtol,
            example=example, output_names=output_names,
        )  # fmt: skip
    side_files(work_dir)
    config = build_config(export, checkpoint, exporter, diff, ir_version_of(path))
    return publish_export(export, checkpoint, config, work_dir)
