"""The one export path on an image checkpoint: a dynamo export that disagrees with torch is
replaced by the legacy exporter's, as for text; when both disagree nothing is published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import numpy_helper
from torch import nn

from onyx.train.config import AugmentConfig, ImageTrainConfig
from onyx.train.engine.loop import fit
from onyx.train.export import ExportConfig, ParityError, export_checkpoint
from onyx.train.export import onnx as export_onnx
from onyx.train.tasks.registry import task_for


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.train.conftest import write_shapes

    root = tmp_path_factory.mktemp("image")
    data = write_shapes(root / "data", 6, classes=("a", "b"))
    config = ImageTrainConfig(data=data, out_dir=root / "run", image_size=16, epochs=1,
                              max_steps=1, augment=AugmentConfig.off(), plots=False)  # fmt: skip
    return fit(task_for(config)).best_checkpoint


def scale_first_weight(path: Path) -> None:
    """An exporter bug in miniature: one weight off by 50%."""
    model = onnx.load(str(path))
    tensor = next(t for t in model.graph.initializer if t.dims and len(t.dims) > 1)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 1.5, tensor.name))
    onnx.save(model, str(path))


def corrupt(monkeypatch: pytest.MonkeyPatch, exporters: tuple[str, ...]) -> None:
    real_write = export_onnx.write_onnx

    def write(model: nn.Module, example: Any, path: Path, opset: int, exporter: str,
              *args: Any) -> None:  # fmt: skip
        real_write(model, example, path, opset, exporter, *args)
        if exporter in exporters:
            scale_first_weight(path)

    monkeypatch.setattr(export_onnx, "write_onnx", write)


def test_image_export_falls_back_when_dynamo_disagrees(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt(monkeypatch, ("dynamo",))
    config = ExportConfig(checkpoint=checkpoint, name="shapes", repository=tmp_path / "models")
    result = export_checkpoint(config, tmp_path)
    assert result.config.export.exporter == "torchscript"
    assert result.max_abs_diff < 1e-4
    assert not list(result.model_path.parent.glob("*.data"))  # no stale dynamo side file


def test_image_export_publishes_nothing_when_every_exporter_disagrees(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt(monkeypatch, ("dynamo", "torchscript"))
    config = ExportConfig(checkpoint=checkpoint, name="shapes", repository=tmp_path / "models")
    with pytest.raises(ParityError, match="no exporter produced a model that agrees"):
        export_checkpoint(config, tmp_path)
    assert not (tmp_path / "models" / "shapes").exists()
