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
from google.protobuf import text_format
from torch import nn

from onyx.proto.v1 import model_config_pb2 as pb
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
    """Rebuild the model of a checkpoint written by `onyx train`, in eval mode on CPU."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    train_config = checkpoint["config"]
    spec = text_format.Parse(checkpoint["preprocessing"], pb.ImagePreprocessing())
    in_channels = 1 if spec.color_mode == pb.COLOR_MODE_GRAYSCALE else 3
    model = get_model(train_config["model"], len(checkpoint["labels"]), in_channels)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint


def checkpoint_task(path: Path) -> str:
    """The task of a checkpoint written by `onyx train` ("image" or "text"): picks the exporter."""
    task: str = torch.load(path, map_location="cpu", weights_only=True).get("task", "image")
    return task


def example_input(spec: pb.ImagePreprocessing, batch: int, seed: int = 0) -> torch.Tensor:
    channels = 1 if spec.color_mode == pb.COLOR_MODE_GRAYSCALE else 3
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, spec.crop_height, spec.crop_width, generator=generator)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> str:
    """Write `model` to `path` with a dynamic batch axis; return the exporter that worked."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with _quiet():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                opset_version=opset,
                verbose=False,
            )
        exporter = "dynamo"
    except Exception as exc:  # the new exporter still misses some models; the old one is proven
        log.warning("dynamo exporter failed (%s); falling back to the TorchScript exporter", exc)
        with _quiet():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                dynamo=False,
                opset_version=opset,
            )
        exporter = "torchscript"
    onnx.checker.check_model(str(path), full_check=True)
    return exporter


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
        diff = np.abs(actual - expected)
        worst = max(worst, float(diff.max()))
        if not np.allclose(actual, expected, atol=atol, rtol=rtol):
            raise ParityError(
                f"ONNX Runtime disagrees with torch on a batch of shape {tuple(batch.shape)}: "
                f"max |diff| {diff.max():.3g} > atol {atol} + rtol {rtol} * |torch|; not published"
            )
    return worst


def build_model_config(
    export: ExportConfig,
    checkpoint: dict[str, Any],
    opset: int,
    exporter: str,
    diff: float,
    ir_version: int,
) -> pb.ModelConfig:
    spec = text_format.Parse(checkpoint["preprocessing"], pb.ImagePreprocessing())
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
        batching=pb.Batching(
            max_batch_size=export.max_batch_size, max_queue_delay_us=export.max_queue_delay_us
        ),
        export=pb.ExportInfo(
            opset=opset,
            ir_version=ir_version,
            onnxruntime_version=ort.__version__,
            torch_version=torch.__version__,
            exporter=exporter,
            parity_max_abs_diff=diff,
        ),
        description=f"{train['model']} trained on {train['data_dir']}",
    )


def export_checkpoint(export: ExportConfig, work_dir: Path) -> ExportResult:
    """Export, verify and publish; `work_dir` holds the file until it is published."""
    if checkpoint_task(export.checkpoint) == "text":
        from onyx.train.text_export import export_text_checkpoint

        return export_text_checkpoint(export, work_dir)
    model, checkpoint = load_checkpoint(export.checkpoint)
    spec = text_format.Parse(checkpoint["preprocessing"], pb.ImagePreprocessing())
    onnx_path = work_dir / "model.onnx"
    exporter = export_onnx(model, example_input(spec, 2), onnx_path, export.opset)
    inputs = [example_input(spec, b, seed=b) for b in PARITY_BATCH_SIZES]
    diff = check_parity(model, onnx_path, inputs, export.atol, export.rtol)
    ir_version = onnx.load(str(onnx_path), load_external_data=False).ir_version
    config = build_model_config(export, checkpoint, export.opset, exporter, diff, ir_version)
    log.info("exported with the %s exporter; ONNX Runtime vs torch max |diff| %.2g", exporter, diff)
    provenance = {
        "export": {k: str(v) for k, v in asdict(export).items()},
        "train": checkpoint["config"],
        "train_metrics": checkpoint.get("metrics", {}),
    }
    save_json(provenance, work_dir / "export.json")
    version, model_path = publish(export.repository, config, work_dir)
    return ExportResult(version, model_path, config, diff)
