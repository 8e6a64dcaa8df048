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
    output_names: Sequence[str] = (OUTPUT_NAME,),
) -> None:
    """One `torch.onnx.export` with `exporter` ("dynamo" or "torchscript"): a dynamic batch axis,
    and a dynamic time axis (axis 1) for sequences. Outputs after the logits (an image model's
    feature map, for explanations) get a dynamic batch axis too."""
    axes = {0: "batch", 1: "time"} if time_axis else {0: "batch"}
    with _quiet():
        if exporter == "dynamo":
            dims = {i: torch.export.Dim(n, min=1, max=DYNAMIC_AXIS_MAX[n]) for i, n in axes.items()}
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(output_names),
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
                output_names=list(output_names),
                dynamic_axes={INPUT_NAME: axes, **{name: {0: "batch"} for name in output_names}},
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
    """Largest |ORT - torch| over `inputs`; raises ParityError past atol + rtol * |torch|.

    A model returning a tuple is compared output by output (the graph's outputs in order)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in inputs:
        with torch.no_grad():
            result = model(batch)
        expected_all = result if isinstance(result, tuple) else (result,)
        actual_all = session.run(None, {INPUT_NAME: batch.numpy()})
        if len(actual_all) != len(expected_all):
            raise ParityError(f"the graph has {len(actual_all)} outputs, torch {len(expected_all)}")
        for expected_t, actual in zip(expected_all, actual_all, strict=True):
            worst = max(worst, _compare(expected_t.numpy(), np.asarray(actual), batch, atol, rtol))
    return worst


def _compare(
    expected: np.ndarray, actual: np.ndarray, batch: torch.Tensor, atol: float, rtol: float
) -> float:
    if actual.shape != expected.shape:  # broadcasting would let a wrong shape compare "close"
        raise ParityError(f"ONNX Runtime gave shape {actual.shape} for input {tuple(batch.shape)}")
    diff = np.abs(actual - expected)
    if not np.allclose(actual, expected, atol=atol, rtol=rtol):
        raise ParityError(
            f"ONNX Runtime disagrees with torch on a batch of shape {tuple(batch.shape)}: "
            f"max |diff| {diff.max():.3g} > atol {atol} + rtol {rtol} * |torch|; not published"
        )
    return float(diff.max())


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
    output_names: Sequence[str] = (OUTPUT_NAME,),
) -> tuple[str, float]:
    """Try each exporter until one passes parity; (exporter, max diff). Raises ParityError.

    `example` traces the model: no axis of size 1 (dynamo would specialise it)."""
    failures = []
    for exporter in EXPORTERS:
        _remove_outputs(path)  # a failed attempt's external data must not be published
        try:
            write_onnx(
                model, example, path, opset, exporter, time_axis, external_data, output_names
            )
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
