"""Writing ONNX and proving ONNX Runtime agrees with torch: the one verify-and-fall-back path.

    exporter, diff = export_verified(model, path, opset, inputs, atol, rtol, example=example)

`export_verified` tries torch's dynamo exporter first and the TorchScript ("legacy") exporter
second. Each file must pass `onnx.checker` and agree with torch on every parity input (several
batch sizes, and for sequences several lengths): |ort - torch| <= atol + rtol * |torch|, with the
output shape checked first. An exporter that crashes or disagrees hands over to the next; if
none agrees, `ParityError` says why and nothing may be published.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PARITY_BATCH_SIZES = (1, 2, 7)
EXPORTERS = ("dynamo", "torchscript")


class ParityError(RuntimeError):
    """ONNX Runtime's outputs differ from torch's beyond the tolerance."""


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> str:
    """Write `model` with a dynamic batch axis, unverified; for callers that check parity
    themselves (bench/make_models.py). Returns the exporter that worked."""
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


def export_verified(
    model: nn.Module,
    path: Path,
    opset: int,
    inputs: Sequence[torch.Tensor],
    atol: float,
    rtol: float,
    *,
    example: torch.Tensor,
    time_axis: bool = False,
    external_data: bool = True,
) -> tuple[str, float]:
    """Try each exporter until one passes parity; (exporter, max diff). Raises ParityError.

    `example` traces the model: no axis of size 1 (dynamo would specialise it)."""
    failures = []
    for exporter in EXPORTERS:
        _remove_outputs(path)  # a failed attempt's external data must not be published
        try:
            write_onnx(model, example, path, opset, exporter, time_axis, external_data)
            onnx.checker.check_model(str(path), full_check=True)
            return exporter, check_parity(model, path, inputs, atol, rtol)
        except ParityError as exc:
            failures.append(f"{exporter}: {exc}")
        except Exception as exc:  # an exporter crash: try the next one
            failures.append(f"{exporter} export failed: {exc}")
        log.warning("%s", failures[-1])
    raise ParityError(
        "no exporter produced a model that agrees with torch; not published: "
        + " | ".join(failures)
    )


def _remove_outputs(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".data").unlink(missing_ok=True)


def ir_version_of(path: Path) -> int:
    return int(onnx.load(str(path), load_external_data=False).ir_version)
