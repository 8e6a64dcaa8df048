"""The one verify-and-fall-back export path, on a text model: dynamic batch and time axes,
ORT-vs-torch parity that catches exporter bugs, fall back to the legacy exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
import torch

from onyx.train.export import ParityError, check_parity
from onyx.train.export import onnx as export_onnx
from onyx.train.export.text import example_ids, parity_inputs
from onyx.train.tasks.text.models import TextClassifier, TextModelConfig

MAX_LENGTH = 80


def tiny_gru() -> TextClassifier:
    torch.manual_seed(0)
    config = TextModelConfig(
        vocab_size=40,
        num_classes=3,
        cell="gru",
        embed_dim=8,
        hidden=8,
        bidirectional=True,
        pooling="last",
    )
    return TextClassifier(config).eval()


def export_verified(
    model: TextClassifier,
    path: Path,
    opset: int,
    inputs: list[torch.Tensor],
    atol: float,
    rtol: float,
) -> tuple[str, float]:
    """The shared path with the text model's example and axes, as `onyx export` calls it."""
    return export_onnx.export_verified(
        model, path, opset, inputs, atol, rtol, example=example_ids(40), time_axis=True,
        external_data=False,
    )  # fmt: skip


def write_text_onnx(model: TextClassifier, path: Path, exporter: str) -> None:
    export_onnx.write_onnx(model, example_ids(40), path, 18, exporter, time_axis=True,
                           external_data=False)  # fmt: skip


def flip_linear_before_reset(source: Path, target: Path) -> None:
    """Reproduce pytorch #189225: a GRU exported with the wrong `linear_before_reset`."""
    model = onnx.load(str(source))
    flipped = 0
    for node in model.graph.node:
        for attribute in node.attribute:
            if node.op_type == "GRU" and attribute.name == "linear_before_reset":
                attribute.i = 1 - attribute.i
                flipped += 1
    assert flipped, "no GRU node to corrupt"
    onnx.save(model, str(target))


def test_parity_inputs_cover_batches_lengths_and_padding() -> None:
    inputs = parity_inputs(vocab_size=40, max_length=MAX_LENGTH)
    shapes = {tuple(ids.shape) for ids in inputs}
    assert shapes == {(b, t) for b in (1, 2, 7) for t in (1, 5, 64, MAX_LENGTH)}
    assert any((ids == 0).any() for ids in inputs)  # padded rows are part of the check


def test_export_has_dynamic_batch_and_time_axes_and_agrees(tmp_path: Path) -> None:
    model = tiny_gru()
    path = tmp_path / "model.onnx"
    exporter, diff = export_verified(model, path, 18, parity_inputs(40, MAX_LENGTH), 1e-4, 1e-3)
    assert exporter in ("dynamo", "torchscript")
    assert diff < 1e-4
    graph = onnx.load(str(path)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, True]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_parity_check_catches_a_wrong_gru_export(tmp_path: Path) -> None:
    model = tiny_gru()
    write_text_onnx(model, tmp_path / "good.onnx", "torchscript")
    flip_linear_before_reset(tmp_path / "good.onnx", tmp_path / "bad.onnx")
    with pytest.raises(ParityError, match="disagrees with torch"):
        check_parity(model, tmp_path / "bad.onnx", parity_inputs(40, MAX_LENGTH), 1e-4, 1e-3)


def test_a_disagreeing_dynamo_export_falls_back_to_torchscript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = export_onnx.write_onnx

    def buggy_dynamo(model: TextClassifier, path: Path, *args: Any) -> None:
        real_write(model, path, *args)
        if args[2] == "dynamo":
            flip_linear_before_reset(path, path)

    monkeypatch.setattr(export_onnx, "write_onnx", buggy_dynamo)
    inputs = parity_inputs(40, MAX_LENGTH)
    exporter, diff = export_verified(tiny_gru(), tmp_path / "m.onnx", 18, inputs, 1e-4, 1e-3)
    assert (exporter, diff < 1e-4) == ("torchscript", True)


def test_nothing_is_returned_when_every_exporter_disagrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = export_onnx.write_onnx

    def always_buggy(model: TextClassifier, path: Path, *args: Any) -> None:
        real_write(model, path, *args)
        flip_linear_before_reset(path, path)

    monkeypatch.setattr(export_onnx, "write_onnx", always_buggy)
    with pytest.raises(ParityError, match="no exporter produced a model that agrees"):
        export_verified(
            tiny_gru(), tmp_path / "m.onnx", 18, parity_inputs(40, MAX_LENGTH), 1e-4, 1e-3
        )
