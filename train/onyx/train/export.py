"""Export a checkpoint to ONNX, prove ONNX Runtime agrees with torch, publish into the repository.

    onyx export runs/digits/best.pt --name digits --repository models

Export uses torch's dynamo exporter (falling back to the TorchScript one if it fails) with a
dynamic batch axis, runs `onnx.checker`, then compares ONNX Runtime against torch over several
batch sizes. A model that disagrees beyond the tolerance is never published.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train import checkpoint as ckpt
from onyx.train.config import save_json
from onyx.train.models import get_model
from onyx.train.publish import publish

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PARITY_BATCH_SIZES = (1, 2, 7)


class ParityError(RuntimeError):
    """ONNX Runtime's outputs differ from torch's beyond the tolerance."""


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


@dataclass(frozen=True)
class ExportResult:
    version: int
    model_path: Path
    config: pb.ModelConfig
    max_abs_diff: float


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of an image checkpoint written by `onyx train`, in eval mode on CPU."""
    checkpoint = ckpt.load_raw(path)
    return image_model_of(checkpoint), checkpoint


def image_model_of(checkpoint: dict[str, Any]) -> nn.Module:
    spec = ckpt.preprocessing_of(checkpoint)
    in_channels = 1 if spec.color_mode == pb.COLOR_MODE_GRAYSCALE else 3
    model = get_model(checkpoint["config"]["model"], len(checkpoint["labels"]), in_channels)
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def example_input(spec: pb.ImagePreprocessing, batch: int, seed: int = 0) -> torch.Tensor:
    channels = 1 if spec.color_mode == pb.COLOR_MODE_GRAYSCALE else 3
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, spec.crop_height, spec.crop_width, generator=generator)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> str:
    """Write `model` to `path` with a dynamic batch axis; return the exporter that worked."""
    try:
        write_onnx(model, example, path, opset, "dynamo")
        exporter = "dynamo"
    except Exception as exc:  # the new exporter still misses some models; the old one is proven
        log.warning("dynamo exporter failed (%s); falling back to the TorchScript exporter", exc)
        write_onnx(model, example, path, opset, "torchscript")
        exporter = "torchscript"
    onnx.checker.check_model(str(path), full_check=True)
    return exporter


# Upper bounds of the dynamic axes for the dynamo exporter.
DYNAMIC_AXIS_MAX = {"batch": 4096, "time": 65536}


def write_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int,
    exporter: str,
    time_axis: bool = False,
    external_data: bool = True,
) -> None:
    """One `torch.onnx.export` with `exporter` ("dynamo" or "torchscript"): a dynamic batch axis,
    and a dynamic time axis (axis 1) for sequences."""
    axes = {0: "batch", 1: "time"} if time_axis else {0: "batch"}
    with _quiet():
        if exporter == "dynamo":
            dims = {i: torch.export.Dim(n, min=1, max=DYNAMIC_AXIS_MAX[n]) for i, n in axes.items()}
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=(dims,),
                dynamo=True,
                external_data=external_data,
                opset_version=opset,
            )
        else:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: {0: "batch"}},
                dynamo=False,
                opset_version=opset,
            )


@contextlib.contextmanager
def _quiet() -> Any:
    # The exporters print progress and warn about their own internals; our log says what matters.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def check_parity(
    model: nn.Module, path: Path, inputs: Sequence[torch.Tensor], atol: float, rtol: float
) -> float:
    """Largest |ORT - torch| over `inputs`; raises ParityError past atol + rtol * |torch|."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in inputs:
        with torch.no_grad():
            expected = model(batch).numpy()
        (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})
        if actual.shape != expected.shape:  # broadcasting would let a wrong shape compare "close"
            raise ParityError(
                f"ONNX Runtime gave shape {actual.shape} for input {tuple(batch.shape)}"
            )
        diff = np.abs(actual - expected)
        worst = max(worst, float(diff.max()))
        if not np.allclose(actual, expected, atol=atol, rtol=rtol):
            raise ParityError(
                f"ONNX Runtime disagrees with torch on a batch of shape {tuple(batch.shape)}: "
                f"max |diff| {diff.max():.3g} > atol {atol} + rtol {rtol} * |torch|; not published"
            )
    return worst


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


def build_model_config(
    export: ExportConfig,
    checkpoint: dict[str, Any],
    exporter: str,
    diff: float,
    ir_version: int,
) -> pb.ModelConfig:
    spec = ckpt.preprocessing_of(checkpoint)
    channels = 1 if spec.color_mode == pb.COLOR_MODE_GRAYSCALE else 3
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
        description=f"{train['model']} trained on {train['data_dir']}",
    )


def export_checkpoint(export: ExportConfig, work_dir: Path) -> ExportResult:
    """Export, verify and publish; `work_dir` holds the file until it is published."""
    checkpoint = ckpt.load_raw(export.checkpoint)  # read once: it holds the optimizer state too
    if checkpoint.get("task", "image") == "text":
        from onyx.train.text_export import export_text_checkpoint

        return export_text_checkpoint(export, work_dir, checkpoint)
    model = image_model_of(checkpoint)
    spec = ckpt.preprocessing_of(checkpoint)
    onnx_path = work_dir / "model.onnx"
    exporter = export_onnx(model, example_input(spec, 2), onnx_path, export.opset)
    inputs = [example_input(spec, b, seed=b) for b in PARITY_BATCH_SIZES]
    diff = check_parity(model, onnx_path, inputs, export.atol, export.rtol)
    config = build_model_config(export, checkpoint, exporter, diff, ir_version_of(onnx_path))
    return publish_export(export, checkpoint, config, work_dir)


def ir_version_of(path: Path) -> int:
    return int(onnx.load(str(path), load_external_data=False).ir_version)


def publish_export(
    export: ExportConfig, checkpoint: dict[str, Any], config: pb.ModelConfig, work_dir: Path
) -> ExportResult:
    """Record provenance beside the verified file, then publish it as the next version."""
    info = config.export
    log.info(
        "exported with the %s exporter; ONNX Runtime vs torch max |diff| %.2g",
        info.exporter, info.parity_max_abs_diff,
    )  # fmt: skip
    provenance = {
        "export": {k: str(v) for k, v in asdict(export).items()},
        "train": checkpoint["config"],
        "train_metrics": checkpoint.get("metrics", {}),
    }
    save_json(provenance, work_dir / "export.json")
    version, model_path = publish(export.repository, config, work_dir)
    return ExportResult(version, model_path, config, info.parity_max_abs_diff)
