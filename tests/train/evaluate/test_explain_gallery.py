"""`onyx evaluate --explain N`: the gallery of confident hits and mistakes with their maps, and
the first-layer filters, for a checkpoint and for its exported model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from onyx.cli import main
from onyx.train.config import AugmentConfig, ImageTrainConfig
from onyx.train.engine.loop import fit
from onyx.train.evaluate.gallery import pick_examples
from onyx.train.evaluate.scoring import Evaluation
from onyx.train.export import ExportConfig, export_checkpoint
from onyx.train.tasks.registry import task_for
from tests.train.conftest import write_shapes


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(checkpoint, exported model dir, held-out data) for a small circle-vs-square model."""
    root = tmp_path_factory.mktemp("gallery")
    data = write_shapes(root / "data", 12, classes=("circle", "square"))
    heldout = write_shapes(root / "heldout", 6, classes=("circle", "square"), seed=1)
    config = ImageTrainConfig(
        data=str(data), out_dir=str(root / "run"), epochs=1, image_size=24, batch_size=16,
        lr=5e-3, augment=AugmentConfig.off(), plots=False,
    )  # fmt: skip
    result = fit(task_for(config))
    work = root / "export"
    work.mkdir()
    export_checkpoint(ExportConfig(result.best_checkpoint, "shapes", root / "models"), work)
    return result.best_checkpoint, root / "models" / "shapes", heldout


@pytest.mark.parametrize("kind", ["checkpoint", "model"])
def test_evaluate_explain_writes_the_gallery_and_the_filters(
    trained: tuple[Path, Path, Path], tmp_path: Path, kind: str
) -> None:
    checkpoint, model_dir, heldout = trained
    model = checkpoint if kind == "checkpoint" else model_dir
    args = ["evaluate", str(model), str(heldout), "--out", str(tmp_path), "--explain", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in ("gallery.png", "filters.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.format == "PNG" and picture.width > 100, name
    assert "gallery.png" in result.output


def test_the_gallery_picks_the_most_confident_hits_and_mistakes_per_class() -> None:
    scores = np.asarray(
        [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.45, 0.55], [0.95, 0.05], [0.1, 0.9]]
    )
    targets = np.asarray([0, 0, 0, 0, 1, 1, 1])
    files = [Path(f"{i}.png") for i in range(7)]
    evaluation = Evaluation({}, scores, targets, [str(f) for f in files], list(files))
    assert pick_examples(evaluation, 1) == [(0, [0], [2]), (1, [6], [5])]
    assert pick_examples(evaluation, 2) == [(0, [0, 1], [2, 3]), (1, [6, 4], [5])]
